//! gRPC-Web (gRPC's PROTOCOL-WEB.md) on the server's own port: browsers' protocol,
//! over HTTP/1.1 (hyper's server, after sniffing the HTTP/2 preface) and over HTTP/2
//! (a stream of the native h2 connection whose content-type is `application/grpc-web*`).
//!
//! This module owns the translation only. A gRPC-Web request is validated and routed by
//! the same code as a native one (`dispatch::route`), runs through the same interceptors,
//! deadline, cancellation and call adapters (`dispatch::run_call`), and reads its request
//! from a [`ChunkSource`] (base64-decoded in text mode). The call writes its response
//! to a [`WebSink`] (the `ResponseState::Web` of its context) instead of an h2 stream;
//! the [`WebBody`] at the other end of that queue turns it into gRPC-Web: the same
//! length-prefixed messages, the status and trailers as a last frame with flag `0x80`
//! (or, for a Trailers-Only answer, in the HTTP headers), every chunk base64-encoded on
//! its own in text mode so a browser can decode what it has so far. CORS is answered
//! here too. With tower layers (`ServerBuilder::layer`), gRPC-Web requests reach this
//! translation through them, inside `GrpcRoutes` (`start_layered`). Nothing here runs
//! for native gRPC requests, except the response queue that layered native calls share.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::dispatch::{self, AcceptedCall, Rejected, Routed};
use super::tls::PeerCertificates;
use super::wire::{self, ResponseState};
use super::{CallBody, Shared};
use crate::context::{MethodPath, ServerContext};
use crate::latch::Latch;
use crate::status::Status;
use crate::streaming::ChunkSource;

/// Default `access-control-max-age` of preflight answers: how long a browser may cache
/// them (24 hours, as tonic-web; browsers cap it lower: Chromium at 2 hours).
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Default bound on what an HTTP/1.1 connection buffers: the request line and headers
/// (a larger head is answered with HTTP 431) plus body bytes read ahead. hyper's
/// minimum is 8 KiB.
pub const DEFAULT_HTTP1_MAX_BUF_SIZE: usize = super::http_conn::HTTP1_MAX_BUF_SIZE;

/// Default bound on the number of header fields of an HTTP/1.1 request (more: HTTP 431).
pub const DEFAULT_HTTP1_MAX_HEADERS: usize = super::http_conn::HTTP1_MAX_HEADERS;

/// Response bytes a gRPC-Web call may queue before its handler waits for the client to
/// read (the gRPC-Web counterpart of HTTP/2 flow control: a slow reader makes the
/// handler wait rather than the server buffer).
const WEB_QUEUE_LIMIT: usize = 64 * 1024;

/// Header names a preflight always allows (the request's
/// `access-control-request-headers`, which carry user metadata, are allowed as well).
const DEFAULT_ALLOW_HEADERS: &str =
    "content-type, x-grpc-web, x-user-agent, grpc-timeout, grpc-encoding, grpc-accept-encoding, authorization";

/// Response headers browsers may always read.
const DEFAULT_EXPOSE_HEADERS: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// Which origins may call the server from a browser (CORS).
#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    /// Every origin.
    Any,
    /// Only these origins (compared without regard to case), e.g. `https://app.example`.
    List(Vec<HeaderValue>),
}

/// gRPC-Web settings: CORS and the limits of HTTP/1.1 connections. Turn gRPC-Web on with
/// [`ServerBuilder::grpc_web`](super::ServerBuilder::grpc_web).
///
/// Defaults: any origin may call (answered `access-control-allow-origin: *`), without
/// credentials; preflights cached for [`DEFAULT_CORS_MAX_AGE`]; HTTP/1.1 heads within
/// [`DEFAULT_HTTP1_MAX_BUF_SIZE`] and [`DEFAULT_HTTP1_MAX_HEADERS`].
///
/// ```
/// use grpc_runtime::server::{GrpcWebConfig, Server};
///
/// let web = GrpcWebConfig::new()
///     .allow_origins(["https://app.example", "http://localhost:8080"])
///     .allow_credentials(true)
///     .expose_headers(["x-request-id"]);
/// let builder = Server::builder().grpc_web(web);
/// # drop(builder);
/// ```
#[derive(Debug, Clone)]
pub struct GrpcWebConfig {
    origins: AllowedOrigins,
    allow_credentials: bool,
    max_age: Option<Duration>,
    expose_headers: Vec<HeaderName>,
    pub(crate) http1_max_buf_size: usize,
    pub(crate) http1_max_headers: usize,
}

impl Default for GrpcWebConfig {
    fn default() -> Self {
        GrpcWebConfig {
            origins: AllowedOrigins::Any,
            allow_credentials: false,
            max_age: Some(DEFAULT_CORS_MAX_AGE),
            expose_headers: Vec::new(),
            http1_max_buf_size: DEFAULT_HTTP1_MAX_BUF_SIZE,
            http1_max_headers: DEFAULT_HTTP1_MAX_HEADERS,
        }
    }
}

impl GrpcWebConfig {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these origins may call from a browser (`scheme://host[:port]`, as browsers send
    /// in `Origin`). A request or preflight from another origin is answered HTTP 403.
    /// Requests without an `Origin` header (not from a browser: `buf curl`, servers) are
    /// not subject to CORS and always served. Invalid values are skipped with a warning.
    ///
    /// ```
    /// let web = grpc_runtime::server::GrpcWebConfig::new().allow_origins(["https://app.example"]);
    /// # drop(web);
    /// ```
    pub fn allow_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .filter_map(
                |o| match HeaderValue::from_str(o.as_ref().trim_end_matches('/')) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        tracing::warn!(origin = o.as_ref(), "invalid CORS origin skipped");
                        None
                    }
                },
            )
            .collect();
        self.origins = AllowedOrigins::List(list);
        self
    }

    /// Every origin may call (the default).
    pub fn allow_any_origin(mut self) -> Self {
        self.origins = AllowedOrigins::Any;
        self
    }

    /// Lets browsers send credentials (cookies, HTTP authentication) with calls
    /// (`access-control-allow-credentials: true`; default off). The allowed origin is then
    /// echoed rather than answered `*`, as CORS requires; with [`AllowedOrigins::Any`] that
    /// means every site may make credentialed calls, so use an origin list with it.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.allow_credentials = allow;
        self
    }

    /// How long browsers may cache a preflight answer (`access-control-max-age`; default
    /// [`DEFAULT_CORS_MAX_AGE`]; `None` sends none).
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// More response headers browsers may read (`access-control-expose-headers`). The gRPC
    /// status headers and the names of the metadata a call's response headers carry are
    /// exposed anyway; list here headers added by something else (a proxy). Invalid names
    /// are skipped with a warning.
    pub fn expose_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for n in names {
            match HeaderName::from_bytes(n.as_ref().as_bytes()) {
                Ok(name) => self.expose_headers.push(name),
                Err(_) => tracing::warn!(name = n.as_ref(), "invalid header name skipped"),
            }
        }
        self
    }

    /// The most an HTTP/1.1 connection buffers (default [`DEFAULT_HTTP1_MAX_BUF_SIZE`],
    /// at least 8 KiB): request line and headers must fit (a larger head is answered with
    /// HTTP 431 and the connection closed), and request bytes are read ahead no further.
    pub fn http1_max_buf_size(mut self, bytes: usize) -> Self {
        self.http1_max_buf_size = bytes.max(8 * 1024);
        self
    }

    /// The most header fields an HTTP/1.1 request may have (default
    /// [`DEFAULT_HTTP1_MAX_HEADERS`]; more: HTTP 431).
    pub fn http1_max_headers(mut self, n: usize) -> Self {
        self.http1_max_headers = n;
        self
    }

    /// The `access-control-allow-origin` value for a request from `origin`: `Ok(None)`
    /// without an `Origin` (no CORS), `Err` for an origin not allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Result<Option<HeaderValue>, ()> {
        let Some(origin) = origin else {
            return Ok(None);
        };
        match &self.origins {
            AllowedOrigins::Any if !self.allow_credentials => {
                Ok(Some(HeaderValue::from_static("*")))
            }
            AllowedOrigins::Any => Ok(Some(origin.clone())),
            AllowedOrigins::List(list) => {
                if list
                    .iter()
                    .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
                {
                    Ok(Some(origin.clone()))
                } else {
                    Err(())
                }
            }
        }
    }
}

/// Binary (`application/grpc-web`, `+proto`) or text (`application/grpc-web-text`,
/// `+proto`: base64 both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Binary,
    Text,
    /// Native gRPC through tower layers (`super::layer`): the queue carries an ordinary
    /// gRPC response, its status as HTTP/2 trailers.
    #[cfg(feature = "tower")]
    Native,
}

impl Mode {
    fn content_type(self) -> HeaderValue {
        match self {
            Mode::Binary => HeaderValue::from_static("application/grpc-web+proto"),
            Mode::Text => HeaderValue::from_static("application/grpc-web-text+proto"),
            #[cfg(feature = "tower")]
            Mode::Native => HeaderValue::from_static("application/grpc"),
        }
    }
}

/// The gRPC-Web mode of a content-type; `None` for anything else (also for subtypes
/// other than proto: the server's messages are protobuf).
fn web_mode(ct: Option<&HeaderValue>) -> Option<Mode> {
    let ct = ct?.to_str().ok()?;
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "application/grpc-web" | "application/grpc-web+proto" => Some(Mode::Binary),
        "application/grpc-web-text" | "application/grpc-web-text+proto" => Some(Mode::Text),
        _ => None,
    }
}

/// Whether a request on an HTTP/2 connection is for gRPC-Web: a gRPC-Web content-type,
/// or a CORS preflight (`OPTIONS`).
pub(crate) fn is_web_request<B>(req: &http::Request<B>) -> bool {
    req.method() == Method::OPTIONS
        || req.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes().len() >= 20
                && v.as_bytes()[..20].eq_ignore_ascii_case(b"application/grpc-web")
        })
}

// ---------------------------------------------------------------------------------------
// Request bodies

/// Decodes base64 that arrives in pieces split anywhere, including between the groups of
/// separately padded segments (`QQ==Qg==`), as grpc-web and Connect clients may send.
#[derive(Debug, Default)]
struct Base64Decoder {
    /// Bytes of an incomplete 4-character group.
    pending: [u8; 4],
    len: usize,
    /// Characters decoded so far (for error messages).
    offset: usize,
}

impl Base64Decoder {
    fn decode(&mut self, mut input: &[u8]) -> Result<Bytes, Status> {
        let mut out = BytesMut::with_capacity((self.len + input.len()) / 4 * 3 + 3);
        // Complete the pending group first.
        if self.len > 0 {
            let take = (4 - self.len).min(input.len());
            self.pending[self.len..self.len + take].copy_from_slice(&input[..take]);
            self.len += take;
            input = &input[take..];
            if self.len < 4 {
                return Ok(out.freeze());
            }
            let group = self.pending;
            self.len = 0;
            self.decode_groups(&group, &mut out)?;
        }
        let whole = input.len() / 4 * 4;
        self.decode_groups(&input[..whole], &mut out)?;
        let rest = &input[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
        Ok(out.freeze())
    }

    /// Decodes whole groups; a padded group ends a segment and another may follow.
    fn decode_groups(&mut self, mut groups: &[u8], out: &mut BytesMut) -> Result<(), Status> {
        while !groups.is_empty() {
            // Up to and including the first group that ends in padding.
            let end = groups
                .chunks(4)
                .position(|g| g[3] == b'=')
                .map_or(groups.len(), |i| (i + 1) * 4);
            let (segment, rest) = groups.split_at(end);
            let start = out.len();
            out.resize(start + segment.len() / 4 * 3, 0);
            match base64::engine::general_purpose::STANDARD.decode_slice(segment, &mut out[start..])
            {
                Ok(n) => out.truncate(start + n),
                Err(e) => {
                    return Err(Status::internal(format!(
                        "malformed gRPC-Web text request: invalid base64 after {} characters: {e}",
                        self.offset
                    )))
                }
            }
            self.offset += segment.len();
            groups = rest;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), Status> {
        if self.len == 0 {
            Ok(())
        } else {
            Err(Status::internal(format!(
                "malformed gRPC-Web text request: base64 ends with an incomplete group ({} characters over a multiple of 4)",
                self.len
            )))
        }
    }
}

/// Turns a stream of raw body chunks into the call's request bytes (decoding base64 in
/// text mode).
fn chunk_source<S>(raw: S, mode: Mode) -> ChunkSource
where
    S: futures_core::Stream<Item = Result<Bytes, Status>> + Send + 'static,
{
    use futures_util::StreamExt;
    match mode {
        #[cfg(feature = "tower")]
        Mode::Native => Mutex::new(Box::pin(raw)),
        Mode::Binary => Mutex::new(Box::pin(raw)),
        Mode::Text => {
            let mut dec = Base64Decoder::default();
            let mut ended = false;
            let decoded = raw
                .map(Some)
                .chain(futures_util::stream::iter([None]))
                .filter_map(move |item| {
                    let out = match item {
                        _ if ended => None,
                        Some(Ok(chunk)) => match dec.decode(&chunk) {
                            Ok(b) if b.is_empty() => None,
                            other => Some(other),
                        },
                        Some(Err(e)) => Some(Err(e)),
                        None => dec.finish().err().map(Err),
                    };
                    if matches!(out, Some(Err(_))) {
                        ended = true;
                    }
                    std::future::ready(out)
                });
            Mutex::new(Box::pin(decoded))
        }
    }
}

/// The body chunks of a request stream of the h2 connection (releasing flow-control
/// capacity as they are taken).
fn h2_chunks(
    body: h2::RecvStream,
) -> impl futures_core::Stream<Item = Result<Bytes, Status>> + Send {
    futures_util::stream::unfold(body, |mut body| async move {
        match std::future::poll_fn(|cx| body.poll_data(cx)).await? {
            Ok(data) => {
                if let Err(e) = body.flow_control().release_capacity(data.len()) {
                    tracing::debug!("release_capacity failed: {e}");
                }
                Some((Ok(data), body))
            }
            Err(e) => Some((Err(Status::from_h2_error(&e)), body)),
        }
    })
}

/// The body chunks of an HTTP/1.1 request (trailers, if any, are ignored).
fn http1_chunks(
    body: hyper::body::Incoming,
) -> impl futures_core::Stream<Item = Result<Bytes, Status>> + Send {
    use http_body::Body as _;
    futures_util::stream::unfold(Box::pin(body), |mut body| async move {
        loop {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some((Ok(data), body)),
                    Err(_trailers) => continue,
                },
                Err(e) => {
                    return Some((
                        Err(Status::unavailable(format!(
                            "reading the request body failed: {e}"
                        ))),
                        body,
                    ))
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// The response queue

#[derive(Debug)]
enum Head {
    NotSent,
    /// Ready for the body to take; `true`: Trailers-Only (the status is in it).
    Ready(http::Response<()>, bool),
    Taken,
}

#[derive(Debug)]
struct QueueState {
    head: Head,
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// The status and trailing metadata: the response is complete.
    trailers: Option<HeaderMap>,
    /// The status went out in the head (Trailers-Only): the body is empty.
    trailers_only: bool,
    /// The call ended without a status (reset, or dropped): the body fails.
    aborted: bool,
    /// The body was dropped: the client is gone (or the connection closed).
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    gone: Option<Waker>,
}

#[derive(Debug)]
struct Queue(Mutex<QueueState>);

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// The call's side of a gRPC-Web response: what `ResponseState::Web` holds.
#[derive(Debug)]
pub(crate) struct WebSink(Arc<Queue>);

impl WebSink {
    /// True once the response headers were handed over.
    pub(crate) fn head_sent(&self) -> bool {
        !matches!(self.0.lock().head, Head::NotSent)
    }

    /// Sends the response headers (`wire::response_head`: the body fixes the content-type
    /// and adds CORS).
    pub(crate) fn send_head(&self, head: http::Response<()>) -> Result<(), Status> {
        let mut q = self.0.lock();
        if q.reader_gone {
            return Err(Status::cancelled("client went away"));
        }
        if matches!(q.head, Head::NotSent) {
            q.head = Head::Ready(head, false);
            wake(&mut q.reader);
        }
        Ok(())
    }

    /// Queues `data` (all of it) once the queue has room; fails once the client is gone.
    pub(crate) fn poll_write(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<Result<(), Status>> {
        let mut q = self.0.lock();
        if q.reader_gone {
            return Poll::Ready(Err(Status::cancelled(
                "stream closed before the response was written",
            )));
        }
        if q.queued >= WEB_QUEUE_LIMIT {
            q.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let data = std::mem::take(data);
        q.queued += data.len();
        q.chunks.push_back(data);
        wake(&mut q.reader);
        Poll::Ready(Ok(()))
    }

    /// Ends the response with the status and trailers (sent as the last frame).
    pub(crate) fn finish(&self, trailers: HeaderMap) {
        let mut q = self.0.lock();
        q.trailers = Some(trailers);
        wake(&mut q.reader);
    }

    /// Ends the response Trailers-Only: `head` carries the status.
    pub(crate) fn finish_trailers_only(&self, head: http::Response<()>) {
        let mut q = self.0.lock();
        q.head = Head::Ready(head, true);
        q.trailers_only = true;
        wake(&mut q.reader);
    }

    /// Ends the response without a status: the body fails (HTTP/1.1: the connection is
    /// closed; HTTP/2: the stream is reset).
    pub(crate) fn abort(&self) {
        let mut q = self.0.lock();
        q.aborted = true;
        wake(&mut q.reader);
    }

    /// Ready once the client is gone (the body was dropped).
    pub(crate) fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.0.lock();
        if q.reader_gone {
            Poll::Ready(())
        } else {
            q.gone = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Drop for WebSink {
    fn drop(&mut self) {
        // The call's context is gone: whatever did not end the response never will.
        let mut q = self.0.lock();
        if q.trailers.is_none() && !q.trailers_only {
            q.aborted = true;
        }
        wake(&mut q.reader);
    }
}

/// The client's side of a gRPC-Web response: its head, then its body as gRPC-Web bytes.
/// Also an `http_body::Body` for hyper.
pub(crate) struct WebBody {
    queue: Option<Arc<Queue>>,
    mode: Mode,
    /// The value of `access-control-allow-origin` (None: not a CORS request).
    allow_origin: Option<HeaderValue>,
    shared: Option<Arc<Shared>>,
    done: bool,
}

impl WebBody {
    fn empty() -> WebBody {
        WebBody {
            queue: None,
            mode: Mode::Binary,
            allow_origin: None,
            shared: None,
            done: true,
        }
    }

    /// Waits for the response head and returns it ready to send (content-type, CORS).
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<http::Response<()>> {
        let Some(queue) = self.queue.as_ref() else {
            return Poll::Ready(http::Response::new(()));
        };
        let mut q = queue.lock();
        let (mut head, trailers_only) = match std::mem::replace(&mut q.head, Head::Taken) {
            Head::Ready(head, trailers_only) => (head, trailers_only),
            Head::NotSent if q.aborted => {
                // The call went away without any answer (a panic past the adapters,
                // a forced shutdown): say so rather than leave the client hanging.
                let status = Status::unavailable("call ended without a response");
                (wire::rejected(&status, None), true)
            }
            other => {
                q.head = other;
                q.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
        };
        drop(q);
        if trailers_only {
            self.done = true;
        }
        if let Some(shared) = &self.shared {
            decorate(&mut head, shared, self.mode, self.allow_origin.as_ref());
        }
        Poll::Ready(head)
    }

    /// The next chunk of the body: queued messages (base64 in text mode), then the
    /// trailer frame; an error if the call ended without a status.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.poll_next_frame(cx)
            .map(|f| f.map(|r| r.map(|f| f.into_data().unwrap_or_default())))
    }

    /// The next frame of the body: as [`WebBody::poll_chunk`], but in native mode the
    /// status ends the body as a trailers frame.
    fn poll_next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(queue) = self.queue.as_ref() else {
            return Poll::Ready(None);
        };
        let mut q = queue.lock();
        let mut out = if q.chunks.len() == 1 {
            q.chunks.pop_front().unwrap_or_default()
        } else if !q.chunks.is_empty() {
            let mut buf = BytesMut::with_capacity(q.queued);
            for c in q.chunks.drain(..) {
                buf.extend_from_slice(&c);
            }
            buf.freeze()
        } else {
            Bytes::new()
        };
        if !out.is_empty() {
            q.queued = 0;
            wake(&mut q.writer);
        } else if let Some(trailers) = q.trailers.take() {
            self.done = true;
            #[cfg(feature = "tower")]
            if self.mode == Mode::Native {
                return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
            }
            out = trailer_frame(&trailers);
        } else if q.aborted {
            self.done = true;
            return Poll::Ready(Some(Err(std::io::Error::other(
                "gRPC-Web call ended without a status",
            ))));
        } else if q.trailers_only {
            self.done = true;
            return Poll::Ready(None);
        } else {
            q.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        drop(q);
        Poll::Ready(Some(Ok(http_body::Frame::data(match self.mode {
            Mode::Binary => out,
            #[cfg(feature = "tower")]
            Mode::Native => out,
            // Each chunk on its own, padded: a browser decodes what it has so far.
            Mode::Text => Bytes::from(base64::engine::general_purpose::STANDARD.encode(&out)),
        }))))
    }
}

impl Drop for WebBody {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            let mut q = queue.lock();
            q.reader_gone = true;
            wake(&mut q.writer);
            wake(&mut q.gone);
        }
    }
}

impl http_body::Body for WebBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.get_mut().poll_next_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The status and trailers as gRPC-Web's last frame: flag `0x80`, length, then
/// `name: value\r\n` lines (names are lower-case already).
fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let len: usize = trailers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0x80);
    buf.put_u32(len as u32);
    for (k, v) in trailers {
        buf.extend_from_slice(k.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(v.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf.freeze()
}

/// Finishes a gRPC-Web response head: the gRPC-Web content-type and CORS headers.
fn decorate(
    head: &mut http::Response<()>,
    shared: &Shared,
    mode: Mode,
    allow_origin: Option<&HeaderValue>,
) {
    let h = head.headers_mut();
    h.insert(header::CONTENT_TYPE, mode.content_type());
    let Some(origin) = allow_origin else { return };
    let Some(cfg) = shared.web.as_deref() else {
        return;
    };
    // Everything the head carries besides the content-type (metadata, and the status of a
    // Trailers-Only answer) and the gRPC status headers.
    let mut expose: Vec<&str> = DEFAULT_EXPOSE_HEADERS.to_vec();
    for name in h.keys() {
        if name != header::CONTENT_TYPE && !expose.contains(&name.as_str()) {
            expose.push(name.as_str());
        }
    }
    for name in &cfg.expose_headers {
        if !expose.contains(&name.as_str()) {
            expose.push(name.as_str());
        }
    }
    let expose = HeaderValue::from_str(&expose.join(", ")).ok();
    add_cors(h, cfg, origin);
    if let Some(v) = expose {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

fn add_cors(h: &mut HeaderMap, cfg: &GrpcWebConfig, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cfg.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if origin != "*" {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// The answer to a gRPC-Web request: at once (errors, preflight), or from a call.
enum Answer {
    Now(http::Response<()>),
    Call(WebBody),
}

impl Answer {
    /// Waits for the head; returns it with the body.
    async fn resolve(self) -> (http::Response<()>, WebBody) {
        match self {
            Answer::Now(head) => (head, WebBody::empty()),
            Answer::Call(mut body) => {
                let head = std::future::poll_fn(|cx| body.poll_head(cx)).await;
                (head, body)
            }
        }
    }
}

/// A plain HTTP error answer (with the gRPC status too, as native errors carry it).
fn http_error(code: StatusCode, status: Status) -> http::Response<()> {
    let mut resp = wire::rejected(&status, None);
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Headers of an HTTP/1.1 request that are about the connection, not the call.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Validates, routes and starts a gRPC-Web call (or answers the request at once).
fn start(
    mut parts: http::request::Parts,
    body: impl FnOnce(Mode) -> ChunkSource,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Arc<Shared>,
    force: &Arc<Latch>,
) -> Answer {
    let Some(cfg) = shared.web.as_deref() else {
        return Answer::Now(http_error(
            StatusCode::NOT_FOUND,
            Status::unimplemented("gRPC-Web is not enabled"),
        ));
    };
    let allow_origin = match cfg.allow_origin(parts.headers.get(header::ORIGIN)) {
        Ok(a) => a,
        Err(()) => {
            tracing::debug!(origin = ?parts.headers.get(header::ORIGIN), "gRPC-Web request from an origin not allowed");
            return Answer::Now(http_error(
                StatusCode::FORBIDDEN,
                Status::permission_denied("origin not allowed (CORS)"),
            ));
        }
    };
    if parts.method == Method::OPTIONS {
        return Answer::Now(preflight(cfg, &parts.headers, allow_origin.as_ref()));
    }
    let finish_now = |mut resp: http::Response<()>, mode: Mode| {
        if let Some(origin) = &allow_origin {
            decorate(&mut resp, shared, mode, Some(origin));
        } else {
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, mode.content_type());
        }
        Answer::Now(resp)
    };
    if parts.method != Method::POST {
        let mut resp = http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            Status::internal(format!("gRPC-Web requires POST, got {}", parts.method)),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return Answer::Now(resp);
    }
    let ct = parts.headers.get(header::CONTENT_TYPE);
    let Some(mode) = web_mode(ct) else {
        let shown = ct
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        return Answer::Now(http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::internal(format!("invalid gRPC-Web request content-type {shown:?}")),
        ));
    };
    let trailers_only = |status: Status, extra: Option<(&'static str, String)>| {
        tracing::debug!(code = %status.code(), message = status.message(), "gRPC-Web call rejected before routing");
        wire::rejected(&status, extra)
    };
    if let Some(over) = parts.extensions.get::<h2::ext::OversizedHeaderList>() {
        let status = Status::resource_exhausted(format!(
            "request metadata size {} exceeds the limit of {} bytes",
            over.size(),
            shared.max_header_list_size
        ));
        return finish_now(trailers_only(status, None), mode);
    }
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let routed = match dispatch::route(&parts, shared) {
        Ok(r) => r,
        Err(Rejected { status, extra }) => return finish_now(trailers_only(status, extra), mode),
    };
    let Routed {
        path_and_query,
        service,
        deadline,
        request_encoding,
        metadata,
        client_accepts,
        response_encoding,
    } = routed;
    let method = path_and_query.path().rsplit('/').next().unwrap_or_default();
    if let Some(m) = service.methods().iter().find(|m| m.name == method) {
        if m.client_streaming {
            let kind = if m.server_streaming {
                "bidi-streaming"
            } else {
                "client-streaming"
            };
            let status = Status::unimplemented(format!(
                "{} is a {kind} method, which gRPC-Web cannot carry (a browser sends the whole request before it reads the response); call it with native gRPC",
                path_and_query.path()
            ));
            return finish_now(trailers_only(status, None), mode);
        }
    }
    let (ctx, queue) = queued_context(
        path_and_query,
        peer,
        deadline,
        response_encoding,
        client_accepts,
        peer_certs,
        shared,
    );
    let web_body = WebBody {
        queue: Some(queue),
        mode,
        allow_origin,
        shared: Some(Arc::clone(shared)),
        done: false,
    };
    if deadline.is_some_and(|d| d.is_expired()) {
        super::call::finish_call(
            &ctx,
            Status::deadline_exceeded("deadline exceeded before the call started"),
        );
        return Answer::Call(web_body);
    }
    let call = AcceptedCall {
        ctx,
        metadata,
        body: CallBody::Chunks(body(mode)),
        service,
        request_encoding,
        deadline,
    };
    tokio::spawn(dispatch::run_call(
        call,
        peer,
        Arc::clone(shared),
        Arc::clone(force),
    ));
    Answer::Call(web_body)
}

/// The context of a call whose response goes through a queue (gRPC-Web, and native
/// calls that came through tower layers), and that queue.
fn queued_context(
    path_and_query: http::uri::PathAndQuery,
    peer: Option<SocketAddr>,
    deadline: Option<crate::timeout::Deadline>,
    response_encoding: Option<crate::compression::CompressionEncoding>,
    client_accepts: crate::compression::EncodingSet,
    peer_certs: Option<PeerCertificates>,
    shared: &Shared,
) -> (ServerContext, Arc<Queue>) {
    let queue = new_queue();
    let ctx = ServerContext::new(
        MethodPath::Received(path_and_query),
        peer,
        deadline,
        ResponseState::Web(WebSink(Arc::clone(&queue))),
        response_encoding,
        client_accepts,
        shared.accept_encodings,
    );
    if let Some(certs) = peer_certs {
        ctx.set_peer_certificates(certs);
    }
    (ctx, queue)
}

/// An empty response queue.
fn new_queue() -> Arc<Queue> {
    Arc::new(Queue(Mutex::new(QueueState {
        head: Head::NotSent,
        chunks: VecDeque::new(),
        queued: 0,
        trailers: None,
        trailers_only: false,
        aborted: false,
        reader_gone: false,
        reader: None,
        writer: None,
        gone: None,
    })))
}

/// Validates, routes and starts a native gRPC call that came through tower layers
/// (`super::layer`): the checks of `dispatch::accept_call`, answered as an
/// `http::Response` rather than on the h2 stream; the call's response goes through the
/// same queue as gRPC-Web's, in native mode (its status as HTTP/2 trailers).
#[cfg(feature = "tower")]
pub(crate) async fn start_native(
    parts: http::request::Parts,
    body: ChunkSource,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Arc<Shared>,
    force: &Arc<Latch>,
) -> http::Response<WebBody> {
    let answer = start_native_call(parts, body, peer, peer_certs, shared, force);
    let (head, body) = answer.resolve().await;
    head.map(|()| body)
}

#[cfg(feature = "tower")]
fn start_native_call(
    parts: http::request::Parts,
    body: ChunkSource,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Arc<Shared>,
    force: &Arc<Latch>,
) -> Answer {
    let trailers_only = |status: Status, extra: Option<(&'static str, String)>| {
        tracing::debug!(code = %status.code(), message = status.message(), "call rejected before routing");
        Answer::Now(wire::rejected(&status, extra))
    };
    let http_error = |code: StatusCode, status: Status| {
        let mut resp = http_error(code, status);
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, Mode::Native.content_type());
        Answer::Now(resp)
    };
    if let Some(over) = parts.extensions.get::<h2::ext::OversizedHeaderList>() {
        return trailers_only(
            Status::resource_exhausted(format!(
                "request metadata size {} exceeds the limit of {} bytes",
                over.size(),
                shared.max_header_list_size
            )),
            None,
        );
    }
    if parts.method != Method::POST {
        return http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            Status::internal(format!("gRPC requires POST, got {}", parts.method)),
        );
    }
    let ct = parts.headers.get(header::CONTENT_TYPE);
    if !crate::metadata::is_grpc_content_type(ct) {
        let shown = ct
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::internal(format!("invalid gRPC request content-type {shown:?}")),
        );
    }
    let stats = shared.stats.as_ref().map(|h| {
        let path = parts.uri.path();
        let tracer = h.call_started(
            path,
            dispatch::is_registered(shared, path),
            &parts.headers,
            peer,
        );
        crate::stats::ServerCallStats::new(tracer, std::time::Instant::now())
    });
    let routed = match dispatch::route(&parts, shared) {
        Ok(r) => r,
        Err(Rejected { status, extra }) => {
            if let Some(s) = &stats {
                s.end(&status);
            }
            return trailers_only(status, extra);
        }
    };
    let Routed {
        path_and_query,
        service,
        deadline,
        request_encoding,
        metadata,
        client_accepts,
        response_encoding,
    } = routed;
    let (ctx, queue) = queued_context(
        path_and_query,
        peer,
        deadline,
        response_encoding,
        client_accepts,
        peer_certs,
        shared,
    );
    if let Some(s) = stats {
        let _ = ctx.inner.stats.set(s);
    }
    let body_out = WebBody {
        queue: Some(queue),
        mode: Mode::Native,
        allow_origin: None,
        shared: None,
        done: false,
    };
    if deadline.is_some_and(|d| d.is_expired()) {
        super::call::finish_call(
            &ctx,
            Status::deadline_exceeded("deadline exceeded before the call started"),
        );
        return Answer::Call(body_out);
    }
    let call = AcceptedCall {
        ctx,
        metadata,
        body: CallBody::Chunks(body),
        service,
        request_encoding,
        deadline,
    };
    tokio::spawn(dispatch::run_call(
        call,
        peer,
        Arc::clone(shared),
        Arc::clone(force),
    ));
    Answer::Call(body_out)
}

/// The request bytes of a native call that came through tower layers: the DATA of any
/// `http_body::Body` (trailers, which gRPC requests do not carry, are skipped).
#[cfg(feature = "tower")]
pub(crate) fn native_source<B>(body: B) -> ChunkSource
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<super::http_conn::BoxError>,
{
    chunk_source(body_chunks(body), Mode::Native)
}

/// Serves a gRPC-Web request (or CORS preflight) that came through tower layers
/// (`super::layer`): as [`serve_http1_request`] and [`serve_h2_stream`] do without
/// layers, reading the request from any `http_body::Body`.
#[cfg(feature = "tower")]
pub(crate) async fn start_layered<B>(
    parts: http::request::Parts,
    body: B,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Arc<Shared>,
    force: &Arc<Latch>,
) -> http::Response<WebBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<super::http_conn::BoxError>,
{
    let answer = start(
        parts,
        |mode| chunk_source(body_chunks(body), mode),
        peer,
        peer_certs,
        shared,
        force,
    );
    let (head, body) = answer.resolve().await;
    head.map(|()| body)
}

/// How a gRPC-Web request that went through tower layers is answered when a layer ends
/// it (an error, or an HTTP answer of its own): a gRPC-Web Trailers-Only response in the
/// request's mode, with CORS headers for an allowed origin, as the router's own errors.
#[cfg(feature = "tower")]
pub(crate) struct LayerErrorReply {
    mode: Mode,
    allow_origin: Option<HeaderValue>,
}

#[cfg(feature = "tower")]
impl LayerErrorReply {
    /// For a gRPC-Web request (or preflight) of a server with gRPC-Web on; `None`
    /// otherwise.
    pub(crate) fn of<B>(req: &http::Request<B>, shared: &Shared) -> Option<LayerErrorReply> {
        let cfg = shared.web.as_deref()?;
        if !is_web_request(req) {
            return None;
        }
        Some(LayerErrorReply {
            mode: web_mode(req.headers().get(header::CONTENT_TYPE)).unwrap_or(Mode::Binary),
            allow_origin: cfg
                .allow_origin(req.headers().get(header::ORIGIN))
                .ok()
                .flatten(),
        })
    }

    /// The Trailers-Only gRPC-Web response carrying `status`.
    pub(crate) fn trailers_only(&self, status: &Status, shared: &Shared) -> http::Response<()> {
        let mut head = wire::rejected(status, None);
        decorate(&mut head, shared, self.mode, self.allow_origin.as_ref());
        head
    }
}

/// The DATA of any `http_body::Body` as request chunks (trailers skipped; a body error
/// is the call's status: h2's by the spec's mapping, anything else UNAVAILABLE).
#[cfg(feature = "tower")]
fn body_chunks<B>(body: B) -> impl futures_core::Stream<Item = Result<Bytes, Status>> + Send
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<super::http_conn::BoxError>,
{
    futures_util::stream::unfold(Box::pin(body), |mut body| async move {
        loop {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some((Ok(data), body)),
                    Err(_trailers) => continue,
                },
                Err(e) => {
                    let e: super::http_conn::BoxError = e.into();
                    let status = match e.downcast_ref::<h2::Error>() {
                        Some(e) => Status::from_h2_error(e),
                        None => Status::unavailable(format!("reading the request failed: {e}")),
                    };
                    return Some((Err(status), body));
                }
            }
        }
    })
}

/// Answers a CORS preflight.
fn preflight(
    cfg: &GrpcWebConfig,
    req: &HeaderMap,
    allow_origin: Option<&HeaderValue>,
) -> http::Response<()> {
    let mut resp = http::Response::new(());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    let Some(origin) = allow_origin else {
        return resp;
    };
    add_cors(h, cfg, origin);
    h.append(
        header::VARY,
        HeaderValue::from_static("access-control-request-method"),
    );
    h.append(
        header::VARY,
        HeaderValue::from_static("access-control-request-headers"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    // The default set, and every (valid) name the browser asks for: user metadata.
    let mut allow = String::from(DEFAULT_ALLOW_HEADERS);
    for v in req.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        for name in v.to_str().unwrap_or("").split(',') {
            let name = name.trim();
            let name = name.to_ascii_lowercase();
            let known = allow.split(", ").any(|a| a == name);
            if !name.is_empty() && !known && HeaderName::from_bytes(name.as_bytes()).is_ok() {
                allow.push_str(", ");
                allow.push_str(&name);
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cfg.max_age {
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(age.as_secs()),
        );
    }
    resp
}

/// Answers one request of an HTTP/1.1 connection (hyper's server): a gRPC-Web call, a
/// preflight, or an error.
pub(crate) fn serve_http1_request(
    req: http::Request<hyper::body::Incoming>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Arc<Shared>,
    force: &Arc<Latch>,
) -> impl std::future::Future<Output = http::Response<WebBody>> {
    let (parts, body) = req.into_parts();
    let answer = start(
        parts,
        |mode| chunk_source(http1_chunks(body), mode),
        peer,
        peer_certs,
        shared,
        force,
    );
    async move {
        let (head, body) = answer.resolve().await;
        head.map(|()| body)
    }
}

// ---------------------------------------------------------------------------------------
// gRPC-Web over the HTTP/2 connection

/// Serves one gRPC-Web request (or preflight) that arrived on the native h2 connection.
pub(crate) async fn serve_h2_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    force: Arc<Latch>,
) {
    #[cfg(feature = "tower")]
    if let Some(layered) = &shared.layered {
        let layered = Arc::clone(layered);
        super::layer::serve_h2_stream(layered, req, respond, peer, peer_certs, shared, force).await;
        return;
    }
    let (parts, body) = req.into_parts();
    let answer = start(
        parts,
        |mode| chunk_source(h2_chunks(body), mode),
        peer,
        peer_certs,
        &shared,
        &force,
    );
    let (head, mut body) = tokio::select! {
        r = answer.resolve() => r,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let mut stream = match respond.send_response(head, body.done) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("failed to send gRPC-Web response headers: {e}");
            return;
        }
    };
    if body.done {
        return;
    }
    loop {
        let chunk = tokio::select! {
            c = std::future::poll_fn(|cx| body.poll_chunk(cx)) => c,
            _ = std::future::poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        match chunk {
            Some(Ok(data)) => {
                if let Err(e) = super::http_conn::write_h2(&mut stream, data).await {
                    tracing::debug!("gRPC-Web response write failed: {e}");
                    return;
                }
            }
            Some(Err(e)) => {
                tracing::debug!("gRPC-Web call ended without a status: {e}");
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            None => {
                if let Err(e) = stream.send_data(Bytes::new(), true) {
                    tracing::debug!("gRPC-Web response end failed: {e}");
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &str, cuts: &[usize]) -> Result<Vec<u8>, Status> {
        let mut dec = Base64Decoder::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            out.extend_from_slice(&dec.decode(&input.as_bytes()[last..c])?);
            last = c;
        }
        dec.finish()?;
        Ok(out)
    }

    #[test]
    fn base64_split_anywhere() {
        let data: Vec<u8> = (0u8..=200).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&data);
        for a in 0..text.len() {
            for b in a..text.len().min(a + 7) {
                assert_eq!(decode_split(&text, &[a, b]).unwrap(), data, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn base64_padded_segments_concatenated() {
        // Two separately encoded frames, each padded: "A" and "BC".
        assert_eq!(decode_split("QQ==QkM=", &[3]).unwrap(), b"ABC");
        assert_eq!(decode_split("QQ==QkM=", &[]).unwrap(), b"ABC");
    }

    #[test]
    fn base64_malformed() {
        assert!(decode_split("QQ*=", &[])
            .unwrap_err()
            .message()
            .contains("invalid base64"));
        assert!(decode_split("QQ=", &[])
            .unwrap_err()
            .message()
            .contains("incomplete group"));
    }

    #[test]
    fn modes() {
        let m = |s: &'static str| web_mode(Some(&HeaderValue::from_static(s)));
        assert_eq!(m("application/grpc-web"), Some(Mode::Binary));
        assert_eq!(m("application/grpc-web+proto"), Some(Mode::Binary));
        assert_eq!(m("application/grpc-web-text"), Some(Mode::Text));
        assert_eq!(
            m("application/grpc-web-text+proto; charset=utf-8"),
            Some(Mode::Text)
        );
        assert_eq!(m("application/grpc-web+json"), None);
        assert_eq!(m("application/grpc"), None);
    }

    #[test]
    fn trailers_frame_layout() {
        let mut h = HeaderMap::new();
        Status::new(crate::Code::NotFound, "nope").add_to_headers(&mut h);
        let f = trailer_frame(&h);
        assert_eq!(f[0], 0x80);
        let len = u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize;
        assert_eq!(len, f.len() - 5);
        assert_eq!(&f[5..], b"grpc-status: 5\r\ngrpc-message: nope\r\n");
    }
}
