//! [`ServerCall`]: one incoming call handed to a [`Service`](super::Service),
//! and the four adapters (unary, server streaming, client streaming, bidi)
//! that decode requests, run the typed handler, and write headers, framed
//! responses (respecting flow control) and the final status.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};

use super::wire::{
    add_status_headers, check_response_head, lock_state, response_head, trailers_only,
    ResponseState,
};
use super::CallBody;
use crate::codec::{encode_message, next_batch, BatchEnd, FrameDecoder};
use crate::compression::CompressionEncoding;
use crate::context::ServerContext;
use crate::metadata::MetadataMap;
use crate::request::{BoxFuture, BoxStream, Request, Response};
use crate::status::{Code, Status};
use crate::streaming::Streaming;
use crate::transport::send::{Outgoing, SendError};

/// Per-server settings the call adapters need.
#[derive(Debug, Clone)]
pub(crate) struct CallConfig {
    pub(crate) max_recv: usize,
    pub(crate) max_send: usize,
}

/// One incoming call, not yet typed; consumed by one of the adapters.
pub struct ServerCall {
    pub(crate) metadata: MetadataMap,
    pub(crate) extensions: http::Extensions,
    pub(crate) body: CallBody,
    pub(crate) ctx: ServerContext,
    pub(crate) config: Arc<CallConfig>,
    pub(crate) request_encoding: Option<CompressionEncoding>,
}

impl std::fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCall")
            .field("method", &self.ctx.method())
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl ServerCall {
    /// The full method path, e.g. `/helloworld.Greeter/SayHello`.
    pub fn method(&self) -> &str {
        self.ctx.method()
    }

    /// The request metadata.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The call context.
    pub fn context(&self) -> &ServerContext {
        &self.ctx
    }

    fn into_streaming<Req>(self) -> (Request<Streaming<Req>>, ServerContext, Arc<CallConfig>) {
        let mut decoder = FrameDecoder::new(self.config.max_recv, self.request_encoding);
        if let Some(stats) = self.ctx.stats() {
            decoder.set_counter(std::sync::Arc::clone(&stats.bytes));
        }
        let mut stream = Streaming::new_request(self.body, decoder);
        stream.set_eos_flag(self.ctx.inner.clone());
        let mut req = Request::from_parts(self.metadata, self.extensions, stream);
        req.set_context(self.ctx.clone());
        if let Some(t) = self.ctx.time_remaining() {
            req.set_timeout(t);
        }
        req.set_compression(self.request_encoding);
        (req, self.ctx, self.config)
    }

    /// Unary: exactly one request message, one response message.
    pub fn unary<Req, Resp, F, Fut>(self, handler: F) -> BoxFuture<()>
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: FnOnce(Request<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
    {
        let (mut req, ctx, config) = self.into_streaming::<Req>();
        // One flat future (no nested async blocks that would each hold their own copy of
        // the request): the message is read in place, then the request handed over.
        Box::pin(async move {
            let result = match read_single(req.get_mut()).await {
                Err(e) => Err(e),
                Ok(read) => match handler(with_message(req, read)).await {
                    Err(e) => Err(e),
                    Ok(resp) => send_unary_response(&ctx, &config, resp).await,
                },
            };
            finish_call(&ctx, result.err().unwrap_or_else(ok_status));
        })
    }

    /// Server streaming: one request message, a stream of responses.
    pub fn server_streaming<Req, Resp, F, Fut>(self, handler: F) -> BoxFuture<()>
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: FnOnce(Request<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response<BoxStream<Resp>>, Status>> + Send + 'static,
    {
        let (mut req, ctx, config) = self.into_streaming::<Req>();
        Box::pin(async move {
            let result = match read_single(req.get_mut()).await {
                Err(e) => Err(e),
                Ok(read) => match handler(with_message(req, read)).await {
                    Err(e) => Err(e),
                    Ok(resp) => send_stream(&ctx, &config, resp).await,
                },
            };
            finish_call(&ctx, result.err().unwrap_or_else(ok_status));
        })
    }

    /// Client streaming: a stream of requests, one response.
    pub fn client_streaming<Req, Resp, F, Fut>(self, handler: F) -> BoxFuture<()>
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: FnOnce(Request<Streaming<Req>>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
    {
        let (req, ctx, config) = self.into_streaming::<Req>();
        Box::pin(async move {
            let result = match handler(req).await {
                Err(e) => Err(e),
                Ok(resp) => send_unary_response(&ctx, &config, resp).await,
            };
            finish_call(&ctx, result.err().unwrap_or_else(ok_status));
        })
    }

    /// Bidi streaming: streams both ways, fully duplex.
    pub fn bidi_streaming<Req, Resp, F, Fut>(self, handler: F) -> BoxFuture<()>
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
        F: FnOnce(Request<Streaming<Req>>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response<BoxStream<Resp>>, Status>> + Send + 'static,
    {
        let (req, ctx, config) = self.into_streaming::<Req>();
        Box::pin(async move {
            let result = async {
                let resp = handler(req).await?;
                send_stream(&ctx, &config, resp).await
            }
            .await;
            finish_call(&ctx, result.err().unwrap_or_else(ok_status));
        })
    }

    /// Answers UNIMPLEMENTED (Trailers-Only) for a method the service lacks.
    pub fn unimplemented(self) -> BoxFuture<()> {
        let ctx = self.ctx;
        let method = ctx.method().rsplit('/').next().unwrap_or("").to_string();
        drop(self.body);
        Box::pin(async move {
            finish_call(
                &ctx,
                Status::unimplemented(format!("method {method} not implemented")),
            );
        })
    }
}

fn ok_status() -> Status {
    Status::new(Code::Ok, "")
}

/// Reads exactly one request message (then END_STREAM) for unary and
/// server-streaming methods. Zero or two messages are a cardinality
/// violation: UNIMPLEMENTED, as the gRPC status-code spec
/// (statuscodes.md) prescribes for the server side (grpc-node does the
/// same; grpc-go answers INTERNAL).
/// Reads the one request message of a unary or server-streaming call (and checks that no
/// second one follows); returns it with its compressed flag.
async fn read_single<Req: prost::Message + Default>(
    stream: &mut Streaming<Req>,
) -> Result<(Req, Option<bool>), Status> {
    let Some(first) = stream.message().await? else {
        return Err(Status::unimplemented(
            "cardinality violation: expected exactly one request message for a unary request, got none",
        ));
    };
    let compressed = stream.last_message_compressed();
    if stream.message().await?.is_some() {
        return Err(Status::unimplemented(
            "cardinality violation: expected exactly one request message for a unary request, got more than one",
        ));
    }
    Ok((first, compressed))
}

/// The request the handler gets: the head of `req` with the message [`read_single`] read.
fn with_message<Req>(
    req: Request<Streaming<Req>>,
    (message, compressed): (Req, Option<bool>),
) -> Request<Req> {
    let mut out = req.map(|_| message);
    if let Some(c) = compressed {
        out.set_message_compressed(c);
    }
    out
}

/// Sends a unary handler's response: its metadata, trailers and the one message.
async fn send_unary_response<Resp: prost::Message>(
    ctx: &ServerContext,
    config: &CallConfig,
    resp: Response<Resp>,
) -> Result<(), Status> {
    let (md, msg, trailers) = resp.into_parts();
    if let Some(t) = trailers {
        ctx.add_trailers(t);
    }
    open_response(ctx, md)?;
    send_message(ctx, config, &msg).await
}

async fn send_stream<Resp: prost::Message>(
    ctx: &ServerContext,
    config: &CallConfig,
    resp: Response<BoxStream<Resp>>,
) -> Result<(), Status> {
    let (md, mut stream, trailers) = resp.into_parts();
    if let Some(t) = trailers {
        ctx.add_trailers(t);
    }
    // The response headers go out lazily, with the first message (as grpc-go, grpc C++,
    // Node and tonic servers do), unless the handler sent them early
    // (`ServerContext::send_headers`): a stream that ends or fails before its first
    // message is one Trailers-Only frame, and a client waiting for headers before it
    // sends learns nothing it could deadlock on.
    let mut md = Some(md);
    // Messages the handler has ready at once share one write (see codec::next_batch).
    let mut buf = BytesMut::new();
    let result = loop {
        let batch = next_batch(&mut stream, &mut buf, |item, buf| {
            let encoding = if ctx.message_compression() {
                ctx.compression()
            } else {
                None
            };
            let before = buf.len();
            encode_message(&item?, encoding, config.max_send, buf)?;
            ctx.add_sent_message_bytes(buf.len() - before - crate::codec::HEADER_LEN);
            Ok(())
        })
        .await;
        if !buf.is_empty() {
            if let Some(md) = md.take() {
                open_response(ctx, md)?;
            }
            write_bytes(ctx, buf.split().freeze()).await?;
        }
        match batch {
            Err(e) => break Err(e),
            Ok(BatchEnd::StreamEnded) => break Ok(()),
            Ok(_) => {}
        }
    };
    // No message went out: metadata the handler set still needs headers of its own
    // (grpc-go does the same); without any, the status goes out Trailers-Only.
    if let Some(md) = md.filter(|md| !md.is_empty()) {
        open_response(ctx, md)?;
    }
    result
}

/// Sends the response headers with `metadata` unless they went out early
/// (then `metadata` is merged into nothing and logged). Fails when the call
/// is already over.
pub(crate) fn open_response(ctx: &ServerContext, metadata: MetadataMap) -> Result<(), Status> {
    let mut st = lock_state(ctx);
    match std::mem::replace(&mut *st, ResponseState::Closed) {
        ResponseState::Pending(mut respond) => {
            let head = response_head(ctx, &metadata);
            if let Err(e) = check_response_head(&head) {
                *st = ResponseState::Pending(respond);
                return Err(e);
            }
            match respond.send_response(head, false) {
                Ok(stream) => {
                    *st = ResponseState::Open(stream);
                    Ok(())
                }
                Err(e) => Err(Status::from_h2_error(&e)),
            }
        }
        ResponseState::Open(s) => {
            if !metadata.is_empty() {
                tracing::debug!("response metadata ignored: headers were already sent early");
            }
            *st = ResponseState::Open(s);
            Ok(())
        }
        ResponseState::Closed => Err(Status::cancelled("call already finished")),
        ResponseState::Detached => {
            *st = ResponseState::Detached;
            Err(Status::internal("not a server call"))
        }
        #[cfg(feature = "grpc-web")]
        ResponseState::Web(sink) => {
            let result = if sink.head_sent() {
                if !metadata.is_empty() {
                    tracing::debug!("response metadata ignored: headers were already sent early");
                }
                Ok(())
            } else {
                let head = response_head(ctx, &metadata);
                check_response_head(&head).and_then(|()| sink.send_head(head))
            };
            *st = ResponseState::Web(sink);
            result
        }
    }
}

/// Encodes and writes one response message, waiting for flow-control
/// capacity so memory stays bounded when the client reads slowly.
pub(crate) async fn send_message<M: prost::Message>(
    ctx: &ServerContext,
    config: &CallConfig,
    msg: &M,
) -> Result<(), Status> {
    let encoding = if ctx.message_compression() {
        ctx.compression()
    } else {
        None
    };
    let mut buf = BytesMut::new();
    encode_message(msg, encoding, config.max_send, &mut buf)?;
    ctx.add_sent_message_bytes(buf.len() - crate::codec::HEADER_LEN);
    write_bytes(ctx, buf.freeze()).await
}

/// Writes `data` (one message or a batch) within flow control (`transport::send`), or to
/// the gRPC-Web response queue; a stream that cannot send any more is CANCELLED for the
/// handler, an h2 error becomes its status.
async fn write_bytes(ctx: &ServerContext, data: Bytes) -> Result<(), Status> {
    const CLOSED: &str = "stream closed before the response was written";
    let mut out = Outgoing::new(data, false);
    std::future::poll_fn(|cx| {
        let mut st = lock_state(ctx);
        match &mut *st {
            ResponseState::Open(stream) => out.poll_send(stream, cx).map_err(|e| match e {
                SendError::Closed => Status::cancelled(CLOSED),
                SendError::H2(e) => Status::from_h2_error(&e),
            }),
            // gRPC-Web: the whole batch goes to the response queue at once, once the
            // queue has room (its bound stands in for flow control).
            #[cfg(feature = "grpc-web")]
            ResponseState::Web(sink) => sink.poll_write(cx, out.data_mut()),
            _ => Poll::Ready(Err(Status::cancelled(CLOSED))),
        }
    })
    .await
}

/// Ends the call with `status`: trailers after headers, or Trailers-Only
/// if no headers went out. User trailers (from the context and the
/// status) ride along. Does nothing if the call already ended. Dropping the
/// send half lets h2 send RST_STREAM(NO_ERROR) when the client is still
/// sending.
pub(crate) fn finish_call(ctx: &ServerContext, status: Status) {
    let trailers = ctx.take_trailers();
    let mut st = lock_state(ctx);
    let prev = std::mem::replace(&mut *st, ResponseState::Closed);
    drop(st);
    match prev {
        ResponseState::Pending(mut respond) => {
            if let Err(e) = respond.send_response(trailers_only(&status, &trailers), true) {
                tracing::debug!("failed to send Trailers-Only response: {e}");
            }
        }
        ResponseState::Open(mut stream) => {
            let mut h = http::HeaderMap::new();
            add_status_headers(&mut h, &status, &trailers);
            if let Err(e) = stream.send_trailers(h) {
                tracing::debug!("failed to send trailers: {e}");
            }
        }
        #[cfg(feature = "grpc-web")]
        ResponseState::Web(sink) => {
            if sink.head_sent() {
                let mut h = http::HeaderMap::new();
                add_status_headers(&mut h, &status, &trailers);
                sink.finish(h);
            } else {
                sink.finish_trailers_only(trailers_only(&status, &trailers));
            }
        }
        ResponseState::Closed | ResponseState::Detached => return,
    }
    if !ctx.inner.recv_done.load(Ordering::SeqCst) {
        tracing::trace!("call finished while the client was still sending");
    }
    if let Some(stats) = ctx.stats() {
        stats.end(&status);
    }
    ctx.set_final_status(status);
}

/// Resets the stream (e.g. at forced shutdown) instead of sending a status.
pub(crate) fn reset_call(ctx: &ServerContext, reason: h2::Reason) {
    if let Some(stats) = ctx.stats() {
        // Ends nothing if the call already ended with a status.
        let code = ctx.cancel_code().unwrap_or(crate::status::Code::Cancelled);
        stats.end(&Status::new(code, "call reset"));
    }
    let mut st = lock_state(ctx);
    match std::mem::replace(&mut *st, ResponseState::Closed) {
        ResponseState::Pending(mut r) => r.send_reset(reason),
        ResponseState::Open(mut s) => s.send_reset(reason),
        #[cfg(feature = "grpc-web")]
        ResponseState::Web(sink) => sink.abort(),
        other => *st = other,
    }
}

/// Polls for a RST_STREAM from the client; pending once the call is over.
pub(crate) fn poll_client_reset(
    ctx: &ServerContext,
    cx: &mut std::task::Context<'_>,
) -> Poll<h2::Reason> {
    let mut st = lock_state(ctx);
    let r = match &mut *st {
        ResponseState::Pending(r) => r.poll_reset(cx),
        ResponseState::Open(s) => s.poll_reset(cx),
        #[cfg(feature = "grpc-web")]
        ResponseState::Web(sink) => return sink.poll_gone(cx).map(|()| h2::Reason::CANCEL),
        _ => return Poll::Pending,
    };
    match r {
        Poll::Ready(Ok(reason)) => Poll::Ready(reason),
        Poll::Ready(Err(_)) => Poll::Ready(h2::Reason::CANCEL),
        Poll::Pending => Poll::Pending,
    }
}
