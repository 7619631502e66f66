//! The flow-controlled write loop both sides share: pushing encoded bytes (one framed
//! message, or a batch of them, possibly larger than the peer's window) into an h2
//! [`SendStream`] without ever holding more than the granted capacity in h2's buffers.
//!
//! Used by the client's request bodies (`client/body.rs`), the server's responses
//! (`server/call.rs`) and the server's HTTP-level writes (`server/http_conn.rs`). Each
//! caller maps a [`SendError`] to its own error (a client surfaces the peer's reset
//! reason, the server answers with its `Status`); nothing here knows about gRPC.
//!
//! The loop, per chunk: reserve capacity for everything left (once), wait in
//! `poll_capacity` until some is assigned, hand that much to `send_data`. A slow reader
//! therefore stalls the writer with at most the stream's window buffered. The capacity
//! `poll_capacity` reports never exceeds what was reserved and is always used whole, so
//! capacity the stream holds is always announced by `poll_capacity` (h2 flags every
//! increase), which is why it is not read separately.
//!
//! Cancellation: progress lives in the [`Outgoing`] (what is left to send), so dropping
//! the future between polls leaves the bytes already handed to h2 to go out and drops the
//! rest; the stream itself is untouched (still open, its reservation still requested)
//! and its owner decides what follows (the server resets or ends the call, a retrying
//! client drops the attempt's stream). Nothing is batched or held back here: batching of
//! messages happens before (`codec::next_batch`), and flushing is h2's (it flushes when it
//! has nothing more to write).

use std::task::{Context, Poll};

use bytes::Bytes;
use h2::SendStream;

/// Why [`Outgoing::poll_send`] stopped before all its bytes were handed to h2.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The stream can no longer send (h2's `poll_capacity` gave `None`): reset by the peer
    /// or by us, or its send half already closed. `SendStream::poll_reset` tells a reset's
    /// reason.
    Closed,
    /// h2 refused the DATA frame (a stream or connection error).
    H2(h2::Error),
}

/// One write in progress: the bytes not yet handed to h2 (one framed message or a batch
/// of them), whether END_STREAM goes with the last, and whether capacity for them is
/// already reserved.
#[derive(Debug)]
pub(crate) struct Outgoing {
    data: Bytes,
    end_of_stream: bool,
    reserved: bool,
}

impl Outgoing {
    /// A write of `data`, ending the stream after it when `end_of_stream` is set.
    pub(crate) fn new(data: Bytes, end_of_stream: bool) -> Self {
        Outgoing {
            data,
            end_of_stream,
            reserved: false,
        }
    }

    /// The bytes not yet handed to h2 (for a writer that does not use h2, such as the
    /// gRPC-Web response queue).
    #[cfg(feature = "grpc-web")]
    pub(crate) fn data_mut(&mut self) -> &mut Bytes {
        &mut self.data
    }

    /// How many bytes are not yet handed to h2.
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.data.len()
    }

    /// Hands the bytes to `stream` within flow control, as capacity is assigned; ends the
    /// stream with the last chunk when asked (with an empty DATA frame when there are no
    /// bytes, which needs no capacity).
    ///
    /// `Ready(Ok(()))` means everything went to h2, `Pending` that the rest waits for the
    /// peer's window. The last chunk is the remaining `Bytes` itself (not a split of it),
    /// so a message that fits the window reaches h2 as the caller's one unshared buffer.
    #[inline]
    pub(crate) fn poll_send(
        &mut self,
        stream: &mut SendStream<Bytes>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        if self.data.is_empty() {
            if self.end_of_stream {
                if let Err(e) = stream.send_data(Bytes::new(), true) {
                    return Poll::Ready(Err(SendError::H2(e)));
                }
            }
            return Poll::Ready(Ok(()));
        }
        loop {
            // Reserved once per chunk, not again on every poll while waiting (h2 keeps the
            // request; reserving it again costs a lock of the connection's stream state).
            if !self.reserved {
                stream.reserve_capacity(self.data.len());
                self.reserved = true;
            }
            let granted = match stream.poll_capacity(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Err(SendError::Closed)),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendError::H2(e))),
                Poll::Ready(Some(Ok(n))) => n,
            };
            // The next chunk reserves for what is left then.
            self.reserved = false;
            if granted == 0 {
                // h2 0.4 stays pending rather than report zero; ask again if it does.
                continue;
            }
            let last = granted >= self.data.len();
            let chunk = if last {
                std::mem::take(&mut self.data)
            } else {
                self.data.split_to(granted)
            };
            if let Err(e) = stream.send_data(chunk, self.end_of_stream && last) {
                return Poll::Ready(Err(SendError::H2(e)));
            }
            if last {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Over a real h2 connection (client and server on an in-memory duplex pipe): the
    //! client's request body is written with [`poll_send`], the server reads it with a
    //! 64 KiB window.

    use std::future::poll_fn;
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use h2::{Reason, RecvStream, SendStream};
    use tokio::sync::oneshot;

    use super::{Outgoing, SendError};

    /// The receiver's stream and connection windows (the HTTP/2 default).
    const WINDOW: usize = 65_535;

    /// A message four times the peer's window, every byte different from its neighbours.
    fn message() -> Bytes {
        (0..4 * WINDOW).map(|i| (i % 251) as u8).collect()
    }

    /// An open request stream: its send half and response (client), the server's request
    /// body and response handle. Both connections are driven by tasks of their own. (The
    /// client resets a stream once it holds neither half, so tests keep the response.)
    async fn open() -> (
        SendStream<Bytes>,
        h2::client::ResponseFuture,
        RecvStream,
        h2::server::SendResponse<Bytes>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let (got, request) = oneshot::channel();
        tokio::spawn(async move {
            let mut conn = h2::server::Builder::new()
                .initial_window_size(WINDOW as u32)
                .initial_connection_window_size(WINDOW as u32)
                .handshake::<_, Bytes>(server_io)
                .await
                .expect("server handshake");
            let mut got = Some(got);
            while let Some(r) = conn.accept().await {
                if let (Ok(r), Some(got)) = (r, got.take()) {
                    let _ = got.send(r);
                }
            }
        });
        let (send_request, conn) = h2::client::handshake(client_io)
            .await
            .expect("client handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut send_request = send_request.ready().await.expect("ready");
        let (response, send) = send_request
            .send_request(http::Request::new(()), false)
            .expect("send_request");
        let (req, respond) = request.await.expect("request accepted");
        (send, response, req.into_body(), respond)
    }

    /// Reads the body to its end, releasing capacity as it goes (as `Streaming` does).
    async fn read_all(body: &mut RecvStream) -> Bytes {
        let mut all = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body chunk");
            body.flow_control()
                .release_capacity(chunk.len())
                .expect("release");
            all.extend_from_slice(&chunk);
        }
        all.freeze()
    }

    #[tokio::test]
    async fn a_message_larger_than_the_window_waits_for_the_reader_and_arrives_whole() {
        let (mut send, _response, mut body, _respond) = open().await;
        let msg = message();
        let mut out = Outgoing::new(msg.clone(), true);
        let writer = tokio::spawn(async move {
            poll_fn(|cx| out.poll_send(&mut send, cx))
                .await
                .map_err(|e| format!("{e:?}"))
        });
        // Nobody reads: the writer stalls once the window is used, with at most the window
        // on the receiver's side.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!writer.is_finished(), "the writer ignored the window");
        let first = body.data().await.expect("data").expect("chunk");
        // Received and not yet released: everything that arrived so far.
        let received = body.flow_control().used_capacity();
        assert!(
            received >= first.len() && received <= WINDOW,
            "{received} bytes sent into a {WINDOW}-byte window"
        );
        body.flow_control().release_capacity(first.len()).unwrap();
        let mut all = BytesMut::from(&first[..]);
        all.extend_from_slice(&read_all(&mut body).await);
        assert_eq!(all.freeze(), msg);
        assert!(body.is_end_stream());
        writer.await.unwrap().expect("write completes once read");
    }

    #[tokio::test]
    async fn a_reset_mid_message_ends_the_write_with_closed_and_the_reason() {
        let (mut send, _response, mut body, mut respond) = open().await;
        let mut out = Outgoing::new(message(), true);
        let writer = tokio::spawn(async move {
            let result = poll_fn(|cx| out.poll_send(&mut send, cx)).await;
            let reason = poll_fn(|cx| send.poll_reset(cx)).await.ok();
            (result, reason, out.remaining())
        });
        let chunk = body.data().await.expect("data").expect("chunk");
        assert!(!chunk.is_empty());
        // The reader gives up after the first window: the writer, waiting for capacity,
        // learns the stream is gone.
        respond.send_reset(Reason::CANCEL);
        let (result, reason, left) = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("the reset wakes the writer")
            .unwrap();
        assert!(matches!(result, Err(SendError::Closed)), "{result:?}");
        assert_eq!(reason, Some(Reason::CANCEL));
        assert!(left > 0, "the rest of the message was not sent");
    }

    #[tokio::test]
    async fn a_dropped_write_leaves_what_was_sent_and_the_stream_usable() {
        let (mut send, _response, mut body, _respond) = open().await;
        let msg = message();
        let mut out = Outgoing::new(msg.clone(), true);
        let stalled = tokio::time::timeout(
            Duration::from_millis(100),
            poll_fn(|cx| out.poll_send(&mut send, cx)),
        )
        .await;
        assert!(stalled.is_err(), "the write should wait for the reader");
        // The future is gone mid-message: what it handed to h2 (a prefix of at most one
        // window) goes out, the rest stays with the caller. The stream still works.
        let sent = msg.len() - out.remaining();
        assert!(sent > 0 && sent <= WINDOW, "{sent} bytes sent");
        let mut tail = Outgoing::new(Bytes::from_static(b"tail"), true);
        let reader = tokio::spawn(async move { read_all(&mut body).await });
        poll_fn(|cx| tail.poll_send(&mut send, cx))
            .await
            .expect("the stream is still open");
        let all = reader.await.unwrap();
        assert_eq!(&all[..sent], &msg[..sent]);
        assert_eq!(&all[sent..], b"tail");
    }

    #[tokio::test]
    async fn an_empty_write_ends_the_stream_without_capacity() {
        let (mut send, _response, mut body, _respond) = open().await;
        let mut full = Outgoing::new(Bytes::from(vec![7u8; WINDOW]), false);
        poll_fn(|cx| full.poll_send(&mut send, cx))
            .await
            .expect("one window fits");
        // The window is used up and nobody reads yet: END_STREAM still goes out at once.
        let mut end = Outgoing::new(Bytes::new(), true);
        poll_fn(|cx| end.poll_send(&mut send, cx))
            .await
            .expect("END_STREAM needs no capacity");
        assert_eq!(read_all(&mut body).await.len(), WINDOW);
        assert!(body.is_end_stream());
    }
}
