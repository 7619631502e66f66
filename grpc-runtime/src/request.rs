//! The call envelope types shared by client, server and generated code:
//! [`Request`], [`Response`], [`IntoRequest`], [`IntoStreamingRequest`],
//! [`MethodDescriptor`], [`BoxStream`], [`BoxFuture`], the per-message send
//! options of streaming requests ([`OutboundMessage`], [`OutboundStream`]) and
//! [`CancelHandle`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;

use crate::compression::CompressionEncoding;
use crate::context::ContextSlot;
use crate::metadata::MetadataMap;
use crate::status::Status;

/// A boxed stream of messages or a status, as server-streaming and bidi
/// handlers return.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A boxed `Send` future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Static description of one method, emitted by the generator per method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MethodDescriptor {
    /// Method name as declared in the proto, e.g. `"SayHello"`.
    pub name: &'static str,
    /// Full path, e.g. `"/helloworld.Greeter/SayHello"`.
    pub full_path: &'static str,
    /// True if the client sends a stream of messages.
    pub client_streaming: bool,
    /// True if the server sends a stream of messages.
    pub server_streaming: bool,
}

/// A request: a message (or a stream of messages) plus metadata and call
/// options (client side) or the call context (server side).
#[derive(Debug)]
pub struct Request<T> {
    message: T,
    metadata: MetadataMap,
    timeout: Option<Duration>,
    compression: Option<CompressionEncoding>,
    /// Client side: [`Request::disable_compression`] was called (explicit identity).
    compression_disabled: bool,
    wait_for_ready: Option<bool>,
    /// Server side: the call this request belongs to (opaque here; see `context.rs`).
    context: ContextSlot,
    /// Server side: whether the single request message had the compressed flag.
    message_compressed: Option<bool>,
    extensions: http::Extensions,
}

impl<T> Request<T> {
    /// Wraps a message with empty metadata and no options.
    pub fn new(message: T) -> Request<T> {
        Request {
            message,
            metadata: MetadataMap::new(),
            timeout: None,
            compression: None,
            compression_disabled: false,
            wait_for_ready: None,
            context: ContextSlot::default(),
            message_compressed: None,
            extensions: http::Extensions::new(),
        }
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Consumes the request, returning the message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Request metadata (headers): set by the client, read by the server.
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// Mutable request metadata.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// Client side: the call's timeout, sent as `grpc-timeout`. Overrides a
    /// deadline inherited from the server call being handled.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// The timeout set with [`Request::set_timeout`]; on the server side, the
    /// time that remained when the call arrived.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Client side: compress this call's request messages with `encoding`.
    /// `None` clears the per-call choice, so the channel default
    /// ([`crate::Endpoint::send_compressed`]) applies; to send this call
    /// uncompressed whatever the channel default, use
    /// [`Request::disable_compression`]. Either way the call is only compressed
    /// in an encoding the server accepts.
    pub fn set_compression(&mut self, encoding: Option<CompressionEncoding>) {
        self.compression = encoding;
        self.compression_disabled = false;
    }

    /// Client side: send this call's request messages uncompressed (identity: no
    /// `grpc-encoding` header, compressed flag 0), overriding the channel default.
    /// Undone by a later [`Request::set_compression`].
    pub fn disable_compression(&mut self) {
        self.compression = None;
        self.compression_disabled = true;
    }

    /// True when [`Request::disable_compression`] chose identity for this call.
    pub fn compression_disabled(&self) -> bool {
        self.compression_disabled
    }

    /// The per-call compression (`None`: not set, or disabled, see
    /// [`Request::compression_disabled`]); on the server side the request's
    /// encoding (`None` = identity).
    pub fn compression(&self) -> Option<CompressionEncoding> {
        self.compression
    }

    /// Client side: wait for the channel to become ready instead of failing
    /// fast with UNAVAILABLE (`None` = channel default).
    pub fn set_wait_for_ready(&mut self, wait: bool) {
        self.wait_for_ready = Some(wait);
    }

    /// The wait-for-ready option, if set.
    pub fn wait_for_ready(&self) -> Option<bool> {
        self.wait_for_ready
    }

    /// The server call this request belongs to (empty on client-built requests).
    pub(crate) fn context_slot(&self) -> &ContextSlot {
        &self.context
    }

    /// Server side, single-message requests (unary and server-streaming methods):
    /// whether the request message arrived compressed (its frame's compressed flag was
    /// 1). `None` when not known, e.g. on a client-built request; for streaming requests
    /// see [`crate::Streaming::last_message_compressed`].
    pub fn message_compressed(&self) -> Option<bool> {
        self.message_compressed
    }

    /// Records whether the single received message had the compressed flag.
    pub(crate) fn set_message_compressed(&mut self, compressed: bool) {
        self.message_compressed = Some(compressed);
    }

    /// Client side: a handle that cancels this call when [`CancelHandle::cancel`] is
    /// called (from any task): the call future (or the response [`crate::Streaming`])
    /// then ends with CANCELLED and the stream is reset with RST_STREAM(CANCEL). Calling
    /// it again returns a handle to the same cancellation.
    pub fn cancel_handle(&mut self) -> CancelHandle {
        if let Some(h) = self.extensions.get::<CancelHandle>() {
            return h.clone();
        }
        let h = CancelHandle::new();
        self.extensions.insert(h.clone());
        h
    }

    /// Extensions: typed values attached by interceptors or the runtime.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Mutable extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Maps the message, keeping metadata, options and context.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Request<U> {
        Request {
            message: f(self.message),
            metadata: self.metadata,
            timeout: self.timeout,
            compression: self.compression,
            compression_disabled: self.compression_disabled,
            wait_for_ready: self.wait_for_ready,
            context: self.context,
            message_compressed: self.message_compressed,
            extensions: self.extensions,
        }
    }

    /// Builds a request from parts (used by the server and interceptors).
    pub fn from_parts(
        metadata: MetadataMap,
        extensions: http::Extensions,
        message: T,
    ) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata = metadata;
        r.extensions = extensions;
        r
    }

    /// Splits into metadata, extensions and message.
    pub fn into_parts(self) -> (MetadataMap, http::Extensions, T) {
        (self.metadata, self.extensions, self.message)
    }

    /// Takes the message out, keeping everything else.
    fn split_message(self) -> (T, Request<()>) {
        let rest = Request {
            message: (),
            metadata: self.metadata,
            timeout: self.timeout,
            compression: self.compression,
            compression_disabled: self.compression_disabled,
            wait_for_ready: self.wait_for_ready,
            context: self.context,
            message_compressed: self.message_compressed,
            extensions: self.extensions,
        };
        (self.message, rest)
    }

    /// Attaches the request to its server call.
    pub(crate) fn set_context_slot(&mut self, slot: ContextSlot) {
        self.context = slot;
    }
}

/// A response: a message (or stream) plus header metadata and, on the
/// client, trailers once known.
#[derive(Debug)]
pub struct Response<T> {
    message: T,
    metadata: MetadataMap,
    trailers: Option<MetadataMap>,
    /// Client side: whether the single response message had the compressed flag.
    message_compressed: Option<bool>,
    extensions: http::Extensions,
}

impl<T> Response<T> {
    /// Wraps a message with empty metadata.
    pub fn new(message: T) -> Response<T> {
        Response {
            message,
            metadata: MetadataMap::new(),
            trailers: None,
            message_compressed: None,
            extensions: http::Extensions::new(),
        }
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Consumes the response, returning the message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Response header metadata (sent by the server before the first message).
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// Mutable header metadata.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// Trailing metadata: on the client, set for unary and client-streaming
    /// calls (for streaming responses read them from the `Streaming`); on the
    /// server, extra trailers to send after the response.
    pub fn trailers(&self) -> Option<&MetadataMap> {
        self.trailers.as_ref()
    }

    /// Sets the trailing metadata.
    pub fn set_trailers(&mut self, trailers: MetadataMap) {
        self.trailers = Some(trailers);
    }

    /// Takes the trailing metadata out.
    pub fn take_trailers(&mut self) -> Option<MetadataMap> {
        self.trailers.take()
    }

    /// Client side, single-message responses (unary and client-streaming calls):
    /// whether the response message arrived compressed (its frame's compressed flag was
    /// 1). `None` when not known (e.g. a server-built response); for streaming responses
    /// see [`crate::Streaming::last_message_compressed`].
    pub fn message_compressed(&self) -> Option<bool> {
        self.message_compressed
    }

    /// Records whether the single received message had the compressed flag.
    pub(crate) fn set_message_compressed(&mut self, compressed: bool) {
        self.message_compressed = Some(compressed);
    }

    /// Client side: the encoding the response messages arrived in, from the response's
    /// `grpc-encoding` header (the header itself is not in [`Response::metadata`]).
    /// `None` for identity (no header), for an encoding this runtime does not implement
    /// (a compressed message in it fails the call), for a Trailers-Only response, and on
    /// a server-built response. Also on the response stream: [`crate::Streaming::encoding`].
    /// Each message may still arrive uncompressed: see [`Response::message_compressed`].
    pub fn encoding(&self) -> Option<CompressionEncoding> {
        self.extensions.get::<ResponseEncoding>().map(|e| e.0)
    }

    /// Client side: the address of the server this call went to (the connection's peer);
    /// `None` for unix sockets or a server-built response.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.extensions.get::<RemoteAddr>().map(|a| a.0)
    }

    /// Extensions.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Mutable extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Maps the message, keeping metadata and trailers.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            message: f(self.message),
            metadata: self.metadata,
            trailers: self.trailers,
            message_compressed: self.message_compressed,
            extensions: self.extensions,
        }
    }

    /// Builds a response from header metadata, message and trailers.
    pub fn from_parts(
        metadata: MetadataMap,
        message: T,
        trailers: Option<MetadataMap>,
    ) -> Response<T> {
        Response {
            message,
            metadata,
            trailers,
            message_compressed: None,
            extensions: http::Extensions::new(),
        }
    }

    /// Splits into header metadata, message and trailers.
    pub fn into_parts(self) -> (MetadataMap, T, Option<MetadataMap>) {
        (self.metadata, self.message, self.trailers)
    }
}

/// Conversion into a [`Request`], for a bare message or a `Request`.
pub trait IntoRequest<T>: sealed::Sealed {
    /// Wraps or passes through.
    fn into_request(self) -> Request<T>;
}

impl<T> IntoRequest<T> for T {
    fn into_request(self) -> Request<T> {
        Request::new(self)
    }
}

impl<T> IntoRequest<T> for Request<T> {
    fn into_request(self) -> Request<T> {
        self
    }
}

/// Conversion into a streaming [`Request`], for a `Stream` or a
/// `Request<Stream>` of messages, or an [`OutboundStream`] (or
/// `Request<OutboundStream>`) of [`OutboundMessage`]s with per-message options:
///
/// ```ignore
/// use grpc_runtime::{OutboundMessage, OutboundStream, Request};
/// let mut request = Request::new(OutboundStream::new(futures_util::stream::iter(vec![
///     OutboundMessage::new(first),                  // compressed with the call's encoding
///     OutboundMessage::new(second).compress(false), // sent with compressed flag 0
/// ])));
/// request.set_compression(Some(grpc_runtime::CompressionEncoding::Gzip));
/// client.streaming_input_call(request).await?;
/// ```
pub trait IntoStreamingRequest: sealed::Sealed {
    /// The stream of request messages.
    type Stream: Stream<Item = Self::Message> + Send + 'static;
    /// The message type.
    type Message;
    /// Wraps or passes through.
    fn into_streaming_request(self) -> Request<Self::Stream>;
}

impl<S> IntoStreamingRequest for S
where
    S: Stream + Send + 'static,
{
    type Stream = S;
    type Message = S::Item;
    fn into_streaming_request(self) -> Request<S> {
        Request::new(self)
    }
}

impl<S> IntoStreamingRequest for Request<S>
where
    S: Stream + Send + 'static,
{
    type Stream = S;
    type Message = S::Item;
    fn into_streaming_request(self) -> Request<S> {
        self
    }
}

/// One outgoing message of a streaming request with per-message send options;
/// send a stream of them wrapped in an [`OutboundStream`].
///
/// By default a message is compressed with the call's encoding (the request's
/// [`Request::set_compression`] or the channel default); `.compress(false)` sends
/// this one message uncompressed (compressed flag 0) while the others stay
/// compressed, as grpc's per-message "no compression" write option.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundMessage<T> {
    message: T,
    compress: bool,
}

impl<T> OutboundMessage<T> {
    /// Wraps `message` with the default options (compressed when the call has an encoding).
    pub fn new(message: T) -> OutboundMessage<T> {
        OutboundMessage {
            message,
            compress: true,
        }
    }

    /// Whether this message may be compressed (`true`, the default: it is, when the
    /// call has an encoding) or must go uncompressed (`false`: compressed flag 0).
    pub fn compress(mut self, enabled: bool) -> OutboundMessage<T> {
        self.compress = enabled;
        self
    }

    /// The compression choice: see [`OutboundMessage::compress`].
    pub fn compression_enabled(&self) -> bool {
        self.compress
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// Consumes the wrapper, returning the message.
    pub fn into_inner(self) -> T {
        self.message
    }
}

impl<T> From<T> for OutboundMessage<T> {
    fn from(message: T) -> OutboundMessage<T> {
        OutboundMessage::new(message)
    }
}

/// A streaming request whose items are [`OutboundMessage`]s: pass it (or a
/// `Request<OutboundStream<S>>`) wherever a streaming request is taken, and each
/// message is sent with its own options.
#[derive(Debug)]
pub struct OutboundStream<S> {
    inner: S,
}

impl<S> OutboundStream<S> {
    /// Wraps a stream of [`OutboundMessage`]s.
    pub fn new(stream: S) -> OutboundStream<S> {
        OutboundStream { inner: stream }
    }
}

/// The message stream an [`OutboundStream`] becomes in a [`Request`]: yields the
/// messages and tells the call how to send each. Only meaningful inside the
/// request it was made for.
#[derive(Debug)]
pub struct OutboundMessages<S> {
    inner: S,
    compress_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S, T> Stream for OutboundMessages<S>
where
    S: Stream<Item = OutboundMessage<T>> + Unpin,
{
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            std::task::Poll::Ready(Some(m)) => {
                // Read by the sender right after it takes this item.
                self.compress_next
                    .store(m.compress, std::sync::atomic::Ordering::SeqCst);
                std::task::Poll::Ready(Some(m.message))
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// Request extension: where the current message's compression choice is published.
#[derive(Clone, Debug)]
pub(crate) struct MessageCompressionSlot(pub(crate) std::sync::Arc<std::sync::atomic::AtomicBool>);

fn outbound_request<S, T>(
    stream: OutboundStream<S>,
    mut request: Request<()>,
) -> Request<OutboundMessages<Pin<Box<S>>>>
where
    S: Stream<Item = OutboundMessage<T>>,
{
    let slot = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    request
        .extensions_mut()
        .insert(MessageCompressionSlot(slot.clone()));
    request.map(|()| OutboundMessages {
        inner: Box::pin(stream.inner),
        compress_next: slot,
    })
}

impl<S, T> IntoStreamingRequest for OutboundStream<S>
where
    S: Stream<Item = OutboundMessage<T>> + Send + 'static,
    T: Send + 'static,
{
    type Stream = OutboundMessages<Pin<Box<S>>>;
    type Message = T;
    fn into_streaming_request(self) -> Request<Self::Stream> {
        outbound_request(self, Request::new(()))
    }
}

impl<S, T> IntoStreamingRequest for Request<OutboundStream<S>>
where
    S: Stream<Item = OutboundMessage<T>> + Send + 'static,
    T: Send + 'static,
{
    type Stream = OutboundMessages<Pin<Box<S>>>;
    type Message = T;
    fn into_streaming_request(self) -> Request<Self::Stream> {
        let (stream, request) = self.split_message();
        outbound_request(stream, request)
    }
}

/// Cancels a client call from anywhere: obtained with [`Request::cancel_handle`]
/// before the call starts. Cheap to clone; clones cancel the same call.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle {
    inner: std::sync::Arc<crate::latch::Latch>,
}

impl CancelHandle {
    /// A handle not yet attached to a call.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Cancels the call: it ends with CANCELLED and its stream is reset with
    /// RST_STREAM(CANCEL). Idempotent; no effect on a call that already finished.
    pub fn cancel(&self) {
        self.inner.set(1);
    }

    /// True once [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.get().is_some()
    }

    /// Resolves once [`CancelHandle::cancel`] was called.
    pub async fn cancelled(&self) {
        self.inner.wait().await;
    }
}

/// Extension recording the `grpc-encoding` of a client call's response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResponseEncoding(pub(crate) CompressionEncoding);

/// Extension recording the peer address of a client call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RemoteAddr(pub(crate) SocketAddr);

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for T {}
}
