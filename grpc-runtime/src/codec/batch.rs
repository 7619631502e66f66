//! Coalescing of outgoing messages: every message a stream has ready at once goes into
//! one buffer, so one HTTP/2 DATA write carries many small messages.
//!
//! h2 writes a DATA frame larger than a few hundred bytes with its own (vectored) write
//! call; one frame per 1 KiB message means one syscall per message. Encoding every
//! message that is already available into the same buffer, up to [`BATCH_BYTES`], and
//! handing that to h2 as one chunk gives few, large frames. Nothing waits for a batch to
//! fill: a message that is the only one ready goes out alone and at once.

use std::future::poll_fn;
use std::task::Poll;

use bytes::BytesMut;
use futures_core::Stream;
use futures_util::StreamExt;

/// A batch stops taking messages once it holds this many bytes (h2 splits it into
/// frames of the peer's maximum frame size). It bounds what a stream with ready messages
/// holds beyond flow control. 64 KiB gave 15-25% more 1 KiB messages per second than
/// 32 KiB on the server-streaming benchmark (fewer, larger writes).
pub const BATCH_BYTES: usize = 64 * 1024;

/// How a call to [`next_batch`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEnd {
    /// The stream may have more messages.
    More,
    /// The stream ended; `buf` holds its last messages (possibly none).
    StreamEnded,
}

/// Waits for the next item of `stream`, encodes it into `buf` with `encode`, then keeps
/// taking the items that are ready without waiting while `buf` holds fewer than
/// [`BATCH_BYTES`].
///
/// An error from `encode` is returned as soon as it happens; `buf` then still holds the
/// messages encoded before it, which the caller should send first (the stream's order is
/// kept).
pub async fn next_batch<S, E>(
    stream: &mut S,
    buf: &mut BytesMut,
    mut encode: impl FnMut(S::Item, &mut BytesMut) -> Result<(), E>,
) -> Result<BatchEnd, E>
where
    S: Stream + Unpin,
{
    let Some(first) = stream.next().await else {
        return Ok(BatchEnd::StreamEnded);
    };
    encode(first, buf)?;
    while buf.len() < BATCH_BYTES {
        match poll_fn(|cx| Poll::Ready(stream.poll_next_unpin(cx))).await {
            Poll::Ready(Some(item)) => encode(item, buf)?,
            Poll::Ready(None) => return Ok(BatchEnd::StreamEnded),
            Poll::Pending => break,
        }
    }
    Ok(BatchEnd::More)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn put(n: u8, buf: &mut BytesMut) -> Result<(), u8> {
        if n == 0 {
            return Err(0);
        }
        buf.put_bytes(n, 1000);
        Ok(())
    }

    #[tokio::test]
    async fn ready_items_coalesce_up_to_the_limit() {
        let mut s = futures_util::stream::iter(vec![1u8; 100]);
        let mut buf = BytesMut::new();
        let mut batches = Vec::new();
        loop {
            let end = next_batch(&mut s, &mut buf, put).await;
            // each batch stops at the first message that reaches the limit
            batches.push((buf.len() / 1000, end.clone()));
            buf.clear();
            if end != Ok(BatchEnd::More) {
                break;
            }
        }
        let full = BATCH_BYTES.div_ceil(1000);
        let mut want = Vec::new();
        let mut left = 100;
        while left > full {
            want.push((full, Ok(BatchEnd::More)));
            left -= full;
        }
        want.push((left, Ok(BatchEnd::StreamEnded)));
        assert!(want.len() >= 2);
        assert_eq!(batches, want);
    }

    #[tokio::test]
    async fn a_lone_item_goes_out_alone_and_errors_keep_what_came_before() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(8);
        let mut s = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        tx.send(2).await.unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(next_batch(&mut s, &mut buf, put).await, Ok(BatchEnd::More));
        assert_eq!(buf.len(), 1000);
        buf.clear();
        tx.send(3).await.unwrap();
        tx.send(0).await.unwrap();
        assert_eq!(next_batch(&mut s, &mut buf, put).await, Err(0));
        assert_eq!(&buf[..], &[3u8; 1000][..]);
        buf.clear();
        drop(tx);
        assert_eq!(
            next_batch(&mut s, &mut buf, put).await,
            Ok(BatchEnd::StreamEnded)
        );
        assert!(buf.is_empty());
    }
}
