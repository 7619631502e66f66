//! [`response_channel`]: a bounded channel whose receiving half is a streaming handler's
//! response stream, so a handler can send messages from another task (or from a loop
//! after it returned) without any extra crate.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::request::BoxStream;
use crate::status::Status;

/// The sending half of [`response_channel`]: each message goes out in order; an error ends
/// the call with that status. Dropping every sender ends the stream (the call ends OK).
#[derive(Debug)]
pub struct ResponseSender<T> {
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T> Clone for ResponseSender<T> {
    fn clone(&self) -> Self {
        ResponseSender {
            tx: self.tx.clone(),
        }
    }
}

impl<T> ResponseSender<T> {
    /// Sends one message, waiting while the channel is full (the client reads slowly).
    /// `Err` gives the message back when the call is over (the client went away or
    /// the stream was dropped).
    pub async fn send(&self, message: T) -> Result<(), T> {
        match self.tx.send(Ok(message)).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Ok(m))) => Err(m),
            // Not possible: this sent an Ok.
            Err(mpsc::error::SendError(Err(_))) => Ok(()),
        }
    }

    /// Ends the call with `status` (after the messages sent before it). `Err` when the
    /// call is already over.
    pub async fn error(self, status: Status) -> Result<(), Status> {
        self.tx
            .send(Err(status))
            .await
            .map_err(|e| e.0.err().unwrap_or_else(|| Status::cancelled("call over")))
    }

    /// Whether the call is over (the response stream was dropped).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until the call is over (the client cancelled, the deadline passed, or the
    /// stream ended), e.g. to stop producing.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A response stream fed through a channel of `buffer` messages (at least 1): return
/// the stream from a server-streaming or bidi handler and send on the sender, from any
/// task.
///
/// ```
/// use grpc_runtime::{response_channel, BoxStream, Request, Response, Status};
///
/// # #[derive(Clone, PartialEq, prost::Message)] struct Tick { #[prost(uint32, tag = "1")] n: u32 }
/// async fn ticks(_req: Request<()>) -> Result<Response<BoxStream<Tick>>, Status> {
///     let (tx, stream) = response_channel(4);
///     tokio::spawn(async move {
///         for n in 0..3 {
///             if tx.send(Tick { n }).await.is_err() {
///                 return; // the client went away
///             }
///         }
///     });
///     Ok(Response::new(stream))
/// }
/// ```
pub fn response_channel<T: Send + 'static>(buffer: usize) -> (ResponseSender<T>, BoxStream<T>) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    (ResponseSender { tx }, Box::pin(ReceiverStream(rx)))
}

struct ReceiverStream<T>(mpsc::Receiver<Result<T, Status>>);

impl<T> Stream for ReceiverStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn messages_then_error_then_end() {
        let (tx, mut s) = response_channel::<u32>(1);
        let t = tx.clone();
        tokio::spawn(async move {
            t.send(1).await.unwrap();
            t.send(2).await.unwrap();
            t.error(Status::aborted("stop")).await.unwrap();
        });
        drop(tx);
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
        assert_eq!(s.next().await.unwrap().unwrap(), 2);
        assert_eq!(
            s.next().await.unwrap().unwrap_err().code(),
            crate::Code::Aborted
        );
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_stream_gives_the_message_back() {
        let (tx, s) = response_channel::<u32>(1);
        drop(s);
        assert!(tx.is_closed());
        assert_eq!(tx.send(7).await, Err(7));
        tx.closed().await;
    }
}
