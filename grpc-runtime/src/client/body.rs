//! Writing request bodies onto an h2 stream while honouring HTTP/2 flow control (the
//! loop is `transport::send`, shared with the server); a failed write surfaces the
//! peer's reset reason.

use std::future::poll_fn;

use bytes::Bytes;
use h2::SendStream;

use crate::transport::send::{Outgoing, SendError};

/// Writes `data` on `stream`, waiting for send capacity (so a slow peer stalls us with
/// bounded memory), and ends the stream when `end_of_stream` is set (with an empty DATA
/// frame if `data` is empty).
pub(crate) async fn send_data(
    stream: &mut SendStream<Bytes>,
    data: Bytes,
    end_of_stream: bool,
) -> Result<(), h2::Error> {
    let mut out = Outgoing::new(data, end_of_stream);
    match poll_fn(|cx| out.poll_send(stream, cx)).await {
        Ok(()) => Ok(()),
        Err(SendError::H2(e)) => Err(e),
        // The stream can no longer send (reset or closed): surface the reset reason.
        Err(SendError::Closed) => match poll_fn(|cx| stream.poll_reset(cx)).await {
            Ok(reason) => Err(h2::Error::from(reason)),
            Err(e) => Err(e),
        },
    }
}
