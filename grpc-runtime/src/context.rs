//! [`ServerContext`]: the per-call handle a server handler (and server
//! interceptors) use to read the deadline, peer address and cancellation,
//! send response headers early, choose response compression and set
//! trailers. It is cheap to clone and can be moved into tasks spawned by the
//! handler.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::latch::Latch;

use crate::compression::{CompressionEncoding, EncodingSet};
use crate::metadata::MetadataMap;
use crate::request::Request;
use crate::server::wire::ResponseState;
use crate::status::{Code, Status};
use crate::streaming::EndOfStream;
use crate::timeout::Deadline;

/// The method path of a call: the request's `:path`, shared with the request head.
pub(crate) enum MethodPath {
    /// From the request (a clone of the received bytes, no copy).
    Received(http::uri::PathAndQuery),
    /// A fixed name (detached contexts and tests).
    Static(&'static str),
}

impl MethodPath {
    fn as_str(&self) -> &str {
        match self {
            MethodPath::Received(p) => p.path(),
            MethodPath::Static(s) => s,
        }
    }
}

pub(crate) struct CtxInner {
    pub(crate) method: MethodPath,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) deadline: Option<Deadline>,
    /// How the call ended, first reason wins: `Some(Code::Ok)` when it finished
    /// normally (the handler returned and the status went out), `Some(CANCELLED |
    /// DEADLINE_EXCEEDED)` for a real cancellation.
    /// The code as a `u8`, set once.
    cancel: Latch,
    pub(crate) response: Mutex<ResponseState>,
    pub(crate) trailers: Mutex<MetadataMap>,
    /// Encoding for response messages (negotiated; may be changed before
    /// headers are sent).
    pub(crate) encoding: Mutex<Option<CompressionEncoding>>,
    pub(crate) client_accepts: EncodingSet,
    /// Encodings the server decodes (advertised in `grpc-accept-encoding`).
    pub(crate) server_accepts: EncodingSet,
    pub(crate) message_compression: AtomicBool,
    /// The client finished sending (END_STREAM seen).
    pub(crate) recv_done: AtomicBool,
    /// The status the call ended with, once sent.
    final_status: Mutex<Option<Status>>,
    /// Set on TLS connections: the certificates the client presented (leaf
    /// first; empty when it presented none).
    peer_certs: OnceLock<Arc<crate::server::TlsInfo>>,
    /// Stats (OpenTelemetry) of this call, when the server has a plugin.
    pub(crate) stats: OnceLock<crate::stats::ServerCallStats>,
}

/// Handle to the server side of one call. Clones share state.
#[derive(Clone)]
pub struct ServerContext {
    pub(crate) inner: Arc<CtxInner>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("method", &self.inner.method.as_str())
            .field("peer", &self.inner.peer)
            .field("deadline", &self.inner.deadline)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServerContext {
    /// A call context whose response goes to `response` (`ResponseState::Detached`
    /// for a context that is not a server call).
    pub(crate) fn new(
        method: MethodPath,
        peer: Option<SocketAddr>,
        deadline: Option<Deadline>,
        response: ResponseState,
        encoding: Option<CompressionEncoding>,
        client_accepts: EncodingSet,
        server_accepts: EncodingSet,
    ) -> ServerContext {
        ServerContext {
            inner: Arc::new(CtxInner {
                method,
                peer,
                deadline,
                cancel: Latch::default(),
                response: Mutex::new(response),
                trailers: Mutex::new(MetadataMap::new()),
                encoding: Mutex::new(encoding),
                client_accepts,
                server_accepts,
                message_compression: AtomicBool::new(true),
                recv_done: AtomicBool::new(false),
                final_status: Mutex::new(None),
                peer_certs: OnceLock::new(),
                stats: OnceLock::new(),
            }),
        }
    }

    /// The shared detached context of client-built requests.
    pub(crate) fn detached() -> &'static ServerContext {
        static DETACHED: OnceLock<ServerContext> = OnceLock::new();
        DETACHED.get_or_init(|| {
            ServerContext::new(
                MethodPath::Static(""),
                None,
                None,
                ResponseState::Detached,
                None,
                EncodingSet::none(),
                EncodingSet::none(),
            )
        })
    }

    /// The full method path, e.g. `/helloworld.Greeter/SayHello`.
    pub fn method(&self) -> &str {
        self.inner.method.as_str()
    }

    /// The peer's socket address (`None` for unix sockets or detached contexts).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer
    }

    /// The certificate chain (DER, leaf first) the client presented over
    /// TLS with client authentication; `None` without TLS or without a
    /// client certificate. Needs the `tls` feature.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.inner
            .peer_certs
            .get()
            .map(|c| c.peer_certificates())
            .filter(|c| !c.is_empty())
    }

    /// The TLS session the call arrived on (protocol version, cipher suite, ALPN, the
    /// client's certificates); `None` without TLS. Needs the `tls` feature.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_info(&self) -> Option<&crate::server::TlsInfo> {
        self.inner.peer_certs.get().map(|c| &**c)
    }

    /// Who the client is, as the authorization policy sees it: plaintext, TLS without a
    /// client certificate, or the names of its certificate (URI, DNS and IP SANs, the
    /// subject); [`crate::server::authz::CertificateIdentity::principal`] is the
    /// authenticated principal. Parses the leaf certificate on each call; `Err` if it is
    /// malformed.
    pub fn peer_identity(
        &self,
    ) -> Result<crate::server::authz::PeerIdentity, crate::server::authz::CertificateError> {
        crate::server::authz::PeerIdentity::from_context(self)
    }

    /// True when the call arrived over the server's built-in TLS (with or
    /// without a client certificate); false for plaintext TCP, Unix sockets
    /// and detached contexts.
    pub fn is_tls(&self) -> bool {
        self.inner.peer_certs.get().is_some()
    }

    pub(crate) fn set_peer_certificates(&self, certs: Arc<crate::server::TlsInfo>) {
        let _ = self.inner.peer_certs.set(certs);
    }

    /// The call's deadline, from the client's `grpc-timeout`.
    pub fn deadline(&self) -> Option<Deadline> {
        self.inner.deadline
    }

    /// Time left before the deadline (`None` without a deadline).
    pub fn time_remaining(&self) -> Option<Duration> {
        self.inner.deadline.map(|d| d.remaining())
    }

    /// True once the call is over for the handler: cancelled (client reset,
    /// deadline, server shutdown) or finished normally. The same moment
    /// [`ServerContext::cancelled`] resolves; [`ServerContext::cancellation`]
    /// tells the two apart.
    pub fn is_cancelled(&self) -> bool {
        self.cancel_code().is_some()
    }

    pub(crate) fn cancel_code(&self) -> Option<Code> {
        self.inner
            .cancel
            .get()
            .map(|c| Code::from_i32(i32::from(c)))
    }

    /// Resolves once the handler should stop working on the call, with a
    /// status to end it with:
    /// - DEADLINE_EXCEEDED when the deadline passed;
    /// - CANCELLED when the client reset the stream (or went away) or the
    ///   server shut down;
    /// - CANCELLED too once the call *finished normally* (the handler returned
    ///   and its status was sent), so tasks a handler spawned stop as well, as
    ///   grpc-go cancels a call's context when the handler returns.
    ///
    /// To tell a real cancellation from a normal end, look at
    /// [`ServerContext::cancellation`] (`Some` only for a real cancellation)
    /// or [`ServerContext::is_finished`] after this resolves.
    pub async fn cancelled(&self) -> Status {
        match Code::from_i32(i32::from(self.inner.cancel.wait().await)) {
            Code::DeadlineExceeded => Status::deadline_exceeded("deadline exceeded"),
            Code::Ok => Status::cancelled("call already finished"),
            _ => Status::cancelled("call cancelled"),
        }
    }

    /// Why the call was cancelled, if it really was: `Some(DEADLINE_EXCEEDED)`
    /// after the deadline passed, `Some(CANCELLED)` after the client reset the
    /// stream or the server shut down; `None` while the call runs and after it
    /// finished normally (whatever status the handler returned).
    pub fn cancellation(&self) -> Option<Status> {
        match self.cancel_code() {
            None | Some(Code::Ok) => None,
            Some(Code::DeadlineExceeded) => Some(Status::deadline_exceeded("deadline exceeded")),
            Some(_) => Some(Status::cancelled("call cancelled")),
        }
    }

    /// True once the call finished normally: the handler (and the server
    /// interceptors) returned and the call's status was sent, without a
    /// cancellation first. False while it runs and after a cancellation.
    pub fn is_finished(&self) -> bool {
        self.cancel_code() == Some(Code::Ok)
    }

    /// Marks the call finished normally (unless it was cancelled first), which
    /// also wakes [`ServerContext::cancelled`] for tasks spawned by the handler.
    pub(crate) fn mark_finished(&self) {
        self.cancel(Code::Ok);
    }

    /// Marks the call cancelled (first reason wins).
    pub(crate) fn cancel(&self, code: Code) {
        // codes are 0..=16
        self.inner
            .cancel
            .set(u8::try_from(code.as_i32()).unwrap_or(Code::Cancelled as u8));
    }

    /// Sends the response headers now, with `metadata`, before the first
    /// message. Fails if headers were already sent, the call ended, or this
    /// is not a server call.
    pub fn send_headers(&self, metadata: MetadataMap) -> Result<(), Status> {
        crate::server::wire::send_headers(self, metadata)
    }

    /// True once response headers went out.
    pub fn headers_sent(&self) -> bool {
        crate::server::wire::headers_sent(self)
    }

    /// Replaces the trailing metadata sent with the final status.
    pub fn set_trailers(&self, trailers: MetadataMap) {
        *lock(&self.inner.trailers) = trailers;
    }

    /// Adds trailing metadata (kept with earlier additions).
    pub fn add_trailers(&self, trailers: MetadataMap) {
        lock(&self.inner.trailers).merge(trailers);
    }

    /// Chooses the response compression for this call. Takes effect only
    /// before headers are sent and only if the client advertised the
    /// encoding in `grpc-accept-encoding`; returns whether it was applied.
    /// `None` turns compression off.
    pub fn set_compression(&self, encoding: Option<CompressionEncoding>) -> bool {
        if self.headers_sent() {
            return false;
        }
        if let Some(e) = encoding {
            if !self.inner.client_accepts.contains(e) {
                return false;
            }
        }
        *lock(&self.inner.encoding) = encoding;
        true
    }

    /// The encoding of response messages (`None` = identity).
    pub fn compression(&self) -> Option<CompressionEncoding> {
        *lock(&self.inner.encoding)
    }

    /// Per-message switch: with `false`, the following response messages are
    /// sent uncompressed (flag 0) even though the call has an encoding.
    pub fn set_message_compression(&self, enabled: bool) {
        self.inner
            .message_compression
            .store(enabled, Ordering::SeqCst);
    }

    pub(crate) fn message_compression(&self) -> bool {
        self.inner.message_compression.load(Ordering::SeqCst)
    }

    /// The call's stats, when the server has a stats plugin.
    pub(crate) fn stats(&self) -> Option<&crate::stats::ServerCallStats> {
        self.inner.stats.get()
    }

    /// Counts a response message of `n` bytes on the wire (prefix excluded) for stats.
    pub(crate) fn add_sent_message_bytes(&self, n: usize) {
        if let Some(s) = self.inner.stats.get() {
            s.bytes.add_sent(n);
        }
    }

    pub(crate) fn set_final_status(&self, status: Status) {
        *lock(&self.inner.final_status) = Some(status);
    }

    /// The status the call ended with, once it was sent (for interceptors
    /// and logging).
    pub fn final_status(&self) -> Option<Status> {
        lock(&self.inner.final_status).clone()
    }

    pub(crate) fn take_trailers(&self) -> MetadataMap {
        std::mem::take(&mut *lock(&self.inner.trailers))
    }
}

/// The server call a [`Request`] belongs to, carried by the request envelope without
/// its knowing what is inside: empty on client-built requests.
#[derive(Default)]
pub(crate) struct ContextSlot(Option<ServerContext>);

impl std::fmt::Debug for ContextSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> Request<T> {
    /// Server side: the call context (deadline, peer, cancellation, early
    /// headers, trailers). On a client-built request this is a detached
    /// context: no deadline, no peer, never cancelled, headers/trailers refused.
    pub fn context(&self) -> &ServerContext {
        match &self.context_slot().0 {
            Some(c) => c,
            None => ServerContext::detached(),
        }
    }

    /// Server side shortcut for `context().peer_addr()`.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.context().peer_addr()
    }

    /// Server side: attaches the request to its call.
    pub(crate) fn set_context(&mut self, ctx: ServerContext) {
        self.set_context_slot(ContextSlot(Some(ctx)));
    }
}

/// Server side: the request stream tells its call when END_STREAM arrives.
impl EndOfStream for CtxInner {
    fn end_of_stream(&self) {
        self.recv_done.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detached_and_cancel() {
        let d = ServerContext::detached();
        assert!(!d.is_cancelled());
        assert!(d.send_headers(MetadataMap::new()).is_err());
        let c = ServerContext::new(
            MethodPath::Static("/a.B/C"),
            None,
            None,
            ResponseState::Detached,
            None,
            EncodingSet::none(),
            EncodingSet::none(),
        );
        let c2 = c.clone();
        let w = tokio::spawn(async move { c2.cancelled().await });
        tokio::task::yield_now().await;
        c.cancel(Code::DeadlineExceeded);
        c.cancel(Code::Cancelled);
        assert_eq!(w.await.unwrap().code(), Code::DeadlineExceeded);
        assert!(c.is_cancelled());
        assert_eq!(c.cancelled().await.code(), Code::DeadlineExceeded);
        assert_eq!(c.cancellation().unwrap().code(), Code::DeadlineExceeded);
        c.mark_finished();
        assert!(!c.is_finished());

        let f = ServerContext::new(
            MethodPath::Static("/a.B/C"),
            None,
            None,
            ResponseState::Detached,
            None,
            EncodingSet::none(),
            EncodingSet::none(),
        );
        assert!(f.cancellation().is_none() && !f.is_finished() && !f.is_cancelled());
        f.mark_finished();
        f.cancel(Code::Cancelled);
        assert!(f.is_finished() && f.is_cancelled() && f.cancellation().is_none());
        assert_eq!(f.cancelled().await.code(), Code::Cancelled);
        assert!(d.cancellation().is_none() && !d.is_finished());
    }
}
