//! The feature examples, one module each, all on the Echo service (`proto/echo/echo.proto`,
//! the same service grpc-go's feature examples use). Every module's `run` starts its
//! server(s) on `127.0.0.1:0`, runs the client side against them over real HTTP/2, reports
//! both sides in a [`crate::Transcript`], checks what came back and shuts down.

pub mod cancellation;
pub mod compression;
pub mod deadlines;
pub mod errors;
pub mod interceptors;
pub mod metadata;
pub mod multiplexing;

use futures_util::stream;
use grpc_runtime::{BoxStream, Status, Streaming};

use crate::pb::echo::{EchoRequest, EchoResponse};

/// Answers every incoming request with `reply(message)`, in order, as the response stream
/// is polled; an incoming error ends the stream with that error.
pub fn echo_each(
    incoming: Streaming<EchoRequest>,
    reply: impl Fn(String) -> String + Send + Sync + 'static,
) -> BoxStream<EchoResponse> {
    let reply = std::sync::Arc::new(reply);
    Box::pin(stream::unfold(Some(incoming), move |state| {
        let reply = reply.clone();
        async move {
            let mut incoming = state?;
            match incoming.message().await {
                Ok(Some(req)) => Some((Ok(EchoResponse { message: reply(req.message) }), Some(incoming))),
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        }
    }))
}

/// A stream of `n` replies `"<message> #i"`.
pub fn repeat_reply(message: &str, n: usize) -> BoxStream<EchoResponse> {
    let items: Vec<Result<EchoResponse, Status>> =
        (1..=n).map(|i| Ok(EchoResponse { message: format!("{message} #{i}") })).collect();
    Box::pin(stream::iter(items))
}

/// Builds an `EchoRequest`.
pub fn echo(message: &str) -> EchoRequest {
    EchoRequest { message: message.to_string() }
}
