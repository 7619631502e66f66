//! Writing request bodies onto an h2 stream while honouring HTTP/2 flow control.

use std::future::poll_fn;

use bytes::Bytes;
use h2::SendStream;

/// Writes `data` on `stream`, waiting for send capacity (so a slow peer stalls us with
/// bounded memory), and ends the stream when `end_of_stream` is set (with an empty DATA
/// frame if `data` is empty).
pub(crate) async fn send_data(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end_of_stream: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        if end_of_stream {
            stream.send_data(Bytes::new(), true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => {
                // The stream can no longer send (reset or closed): surface the reset reason.
                return match poll_fn(|cx| stream.poll_reset(cx)).await {
                    Ok(reason) => Err(h2::Error::from(reason)),
                    Err(e) => Err(e),
                };
            }
        };
        if granted == 0 {
            continue;
        }
        // Taking all of `data` keeps it one unshared buffer (split_to would share it).
        let chunk = if granted >= data.len() {
            std::mem::take(&mut data)
        } else {
            data.split_to(granted)
        };
        stream.send_data(chunk, end_of_stream && data.is_empty())?;
    }
    Ok(())
}
