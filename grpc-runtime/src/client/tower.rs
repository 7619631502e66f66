//! The client side of the `tower` feature: [`Channel`] as a `tower_service::Service` of
//! raw `http::Request`s (answering with a [`ResponseBody`]), and generated clients over
//! any such service ([`GrpcService`] for tower services: gRPC framing, `grpc-timeout`,
//! compression and `grpc-status` trailers done here, around the service).
//!
//! A `Channel` used as a service:
//! - sends each request through the channel's name resolution and load balancing: one
//!   pick per request, waiting for a READY subchannel (wait-for-ready) for as long as the
//!   request's `grpc-timeout` header allows (without one, until the channel has one or
//!   shuts down);
//! - sends the request as given (the caller writes the gRPC headers), only completing its
//!   URI with the channel's scheme and `:authority`; the body is streamed with HTTP/2 flow
//!   control (the peer's window bounds what is buffered), and the response body releases
//!   flow-control capacity as it is read;
//! - applies the channel's call credentials (then a call's own) to every request, per
//!   attempt once the connection is picked, as the typed path does (so their security
//!   level is checked against the connection);
//! - for the calls of generated clients (a [`GrpcService`] over a stack that ends in the
//!   channel) also runs the channel's interceptors when the request reaches the channel
//!   (inside the stack's layers: a layer sees the request before they change its
//!   metadata or timeout; `finish_call` sees the status the response's trailers carry),
//!   and compresses with the channel's default compression when the call chose none and
//!   the server accepts it. A request written by hand gets neither: it carries no call
//!   kind for the interceptors, and its body is framed already;
//! - does not apply the channel's retry policy (a stack may retry with its own layers;
//!   tonic's channel has none either);
//! - `poll_ready` is ready at once while the channel is not shut down (an IDLE channel
//!   starts connecting), and fails with UNAVAILABLE after [`Channel::shutdown`]: the
//!   channel queues calls itself until a subchannel is READY, so readiness is not
//!   capacity, as with grpc-go's ClientConn.
//!
//! Errors are [`Status`]es (UNAVAILABLE when no connection could be picked or the
//! connection failed, DEADLINE_EXCEEDED when `grpc-timeout` passed while picking,
//! the RST_STREAM mapping of the gRPC spec for a reset stream).

use std::any::Any;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::future::Either;
use http::HeaderValue;
use http_body::{Body, Frame};
use tracing::debug;

use super::call::{
    classify_head, remote_addr, response_error, single_message, single_response, with_deadline,
    AbortOnDrop, ActiveCall, Head,
};
use super::channel::Channel;
use super::connectivity::ConnectivityState;
use super::credentials::{self, CallCredentials, RequestInfo};
use super::grpc_service::GrpcService;
use super::interceptor::{CallInfo, CallKind, ClientCallContext, Interceptors};
use super::lb::OnDone;
use crate::codec::{encode_message, DEFAULT_MAX_RECV_MESSAGE_SIZE};
use crate::compression::{
    CompressionEncoding, EncodingSet, GRPC_ACCEPT_ENCODING_NAME, GRPC_ENCODING_NAME,
};
use crate::metadata::MetadataMap;
use crate::request::{CancelHandle, MessageCompressionSlot};
use crate::status::Status;
use crate::streaming::Streaming;
use crate::timeout::GRPC_TIMEOUT_NAME;
use crate::timeout::{current_deadline, decode_timeout, encode_timeout, Deadline};
use crate::transport::frame_tap::CallGuard;
use crate::{Request, Response};

/// The error type tower middleware passes around: anything that is an error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The boxed future of [`Channel`]'s `Service::call`.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, Status>> + Send>>;

/// The response body of a request sent with [`Channel`] as a tower service: the data
/// frames as they arrive, then the trailers (`grpc-status` for a gRPC call). Reading it
/// releases HTTP/2 flow-control capacity, so a slow reader slows the server down; dropping
/// it before the end resets the stream with CANCEL.
///
/// ```
/// async fn read(body: grpc_runtime::client::tower::ResponseBody) -> Result<(), grpc_runtime::Status> {
///     use std::future::poll_fn;
///     use std::pin::pin;
///     use http_body::Body;
///     let mut body = pin!(body);
///     while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
///         match frame?.into_data() {
///             Ok(data) => println!("{} bytes", data.len()),
///             Err(trailers) => println!("trailers: {:?}", trailers.trailers_ref()),
///         }
///     }
///     Ok(())
/// }
/// ```
pub struct ResponseBody {
    /// `None` once the trailers (or an error) were returned.
    recv: Option<h2::RecvStream>,
    data_done: bool,
    /// The LB policy's callback for the final status, and the idleness count.
    done: Option<CallEnd>,
    /// The channel's interceptors, told how the call ended (generated clients' calls).
    intercepted: Option<Intercepted>,
    /// The task sending the request body; aborted (the stream reset) when this is dropped.
    _sender: Option<AbortOnDrop>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("ended", &self.recv.is_none())
            .finish()
    }
}

/// The end of one call on the channel: tells the LB policy how it ended (once) and
/// stops counting the call as in flight.
struct CallEnd {
    on_done: Option<OnDone>,
    _active: ActiveCall,
    /// Counts the call open on its connection once its stream is opened.
    conn_call: Option<CallGuard>,
}

impl CallEnd {
    fn finish(mut self, status: &Status) {
        if let Some(f) = self.on_done.take() {
            f(status);
        }
    }
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(&Status::cancelled("response dropped before it ended"));
        }
    }
}

impl ResponseBody {
    fn end(&mut self, status: &Status) {
        self.recv = None;
        if let Some(d) = self.done.take() {
            d.finish(status);
        }
        if let Some(i) = self.intercepted.take() {
            i.finish(status);
        }
    }
}

/// A call the channel's interceptors started: their `finish_call` runs once, with the
/// call's status (CANCELLED if its response is dropped before it ended).
struct Intercepted {
    interceptors: Interceptors,
    info: Option<CallInfo>,
}

impl Intercepted {
    fn finish(mut self, status: &Status) {
        if let Some(info) = self.info.take() {
            self.interceptors.finish(&info, status);
        }
    }
}

impl Drop for Intercepted {
    fn drop(&mut self) {
        if let Some(info) = self.info.take() {
            self.interceptors.finish(
                &info,
                &Status::cancelled("response dropped before it ended"),
            );
        }
    }
}

/// What a call made through [`GrpcService`] for tower services tells the channel at the
/// bottom of the stack (a request extension): its method and kind for the channel's
/// interceptors, its own call credentials, and, when it chose no compression, the
/// choice the channel makes for it.
#[derive(Clone)]
struct GrpcCall {
    path: &'static str,
    kind: CallKind,
    credentials: Arc<[Arc<dyn CallCredentials>]>,
    encoding: Option<Arc<EncodingChoice>>,
}

/// The encoding of a call whose request did not choose one: decided once, by the
/// channel (its default compression, if the server accepts it) or, if the body is read
/// before that (by a layer, or a service that is not a channel), identity.
#[derive(Debug, Default)]
struct EncodingChoice(std::sync::Mutex<Option<Option<CompressionEncoding>>>);

impl EncodingChoice {
    /// The encoding: `offer` if nothing was decided yet, else what was.
    fn decide(&self, offer: Option<CompressionEncoding>) -> Option<CompressionEncoding> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot.get_or_insert(offer)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    if let Err(e) = recv.flow_control().release_capacity(data.len()) {
                        debug!("release_capacity failed: {e}");
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    let status = Status::from_h2_error(&e);
                    this.end(&status);
                    return Poll::Ready(Some(Err(status)));
                }
                None => this.data_done = true,
            }
        }
        match ready!(recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => {
                let status = Status::from_header_map(&trailers)
                    .unwrap_or_else(|| Status::unknown("trailers without grpc-status"));
                this.end(&status);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Ok(None) => {
                this.end(&Status::internal(
                    "server closed the stream without sending trailers",
                ));
                Poll::Ready(None)
            }
            Err(e) => {
                let status = Status::from_h2_error(&e);
                this.end(&status);
                Poll::Ready(Some(Err(status)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_none()
    }
}

/// `Channel` as a tower service of raw HTTP/2 requests; see the [module
/// docs](crate::client::tower) for what it does with them.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use bytes::Bytes;
/// use tower_service::Service;
///
/// let mut channel = grpc_runtime::Channel::builder("http://127.0.0.1:50051").connect_lazy()?;
/// // An empty grpc.health.v1.HealthCheckRequest, framed: flag 0, length 0.
/// type Body = http_body_util::Full<Bytes>;
/// let body = Body::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
/// let request = http::Request::post("/grpc.health.v1.Health/Check")
///     .header("content-type", "application/grpc")
///     .header("te", "trailers")
///     .body(body)?;
/// // `poll_ready` does not know the body type: name it.
/// std::future::poll_fn(|cx| Service::<http::Request<Body>>::poll_ready(&mut channel, cx)).await?;
/// let response = channel.call(request).await?;
/// println!("{:?}", response.headers());
/// # Ok(()) }
/// ```
impl<B> tower_service::Service<http::Request<B>> for Channel
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        match self.get_state(true) {
            ConnectivityState::Shutdown => {
                Poll::Ready(Err(Status::unavailable("channel is shut down")))
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<B>) -> ResponseFuture {
        let channel = self.clone();
        Box::pin(async move { channel.http_call(request).await })
    }
}

impl Channel {
    /// One raw request: pick (wait-for-ready, bounded by `grpc-timeout`), open the
    /// stream, stream the body, await the response head.
    async fn http_call<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, Status>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        tokio::task::coop::consume_budget().await;
        let active = ActiveCall::new(&self.inner.shared);
        let (mut parts, body) = request.into_parts();
        let mut deadline = parts
            .headers
            .get(&GRPC_TIMEOUT_NAME)
            .and_then(|v| decode_timeout(v.as_bytes()).ok())
            .map(Deadline::after);
        let grpc_call = parts.extensions.remove::<GrpcCall>();
        let cfg = &self.inner.config;
        let mut intercepted = match &grpc_call {
            Some(call) if !cfg.interceptors.is_empty() => Some(
                self.intercept(call, &mut parts.headers, &mut deadline)
                    .await?,
            ),
            _ => None,
        };
        let result = self
            .http_send(parts, body, deadline, grpc_call, &mut intercepted, active)
            .await;
        if let (Err(status), Some(i)) = (&result, intercepted) {
            i.finish(status);
        }
        result
    }

    /// Runs the channel's interceptors on a generated client's call: they see its
    /// metadata and timeout, and what they change goes into the request head.
    async fn intercept(
        &self,
        call: &GrpcCall,
        headers: &mut http::HeaderMap,
        deadline: &mut Option<Deadline>,
    ) -> Result<Intercepted, Status> {
        let interceptors = &self.inner.config.interceptors;
        let metadata = MetadataMap::from_headers(headers).unwrap_or_default();
        let timeout = deadline.map(|d| d.remaining());
        let mut ctx = ClientCallContext::new(call.path, call.kind, metadata.clone(), timeout);
        // A rejection was reported to the interceptors that ran.
        interceptors.start(&mut ctx).await?;
        if ctx.timeout != timeout {
            *deadline = ctx.timeout.map(Deadline::after);
            headers.remove(&GRPC_TIMEOUT_NAME);
            if let Some(t) = ctx.timeout {
                if let Ok(v) = HeaderValue::from_str(&encode_timeout(t)) {
                    headers.insert(GRPC_TIMEOUT_NAME, v);
                }
            }
        }
        for key in metadata.keys() {
            headers.remove(key);
        }
        ctx.metadata.add_to_headers(headers);
        Ok(Intercepted {
            interceptors: interceptors.clone(),
            info: Some(ctx.take_info()),
        })
    }

    /// [`Channel::http_call`] once the interceptors ran: pick, open the stream (with the
    /// call credentials' metadata and the encoding decided for the connection), stream
    /// the body, await the response head.
    async fn http_send<B>(
        &self,
        mut parts: http::request::Parts,
        body: B,
        deadline: Option<Deadline>,
        grpc_call: Option<GrpcCall>,
        intercepted: &mut Option<Intercepted>,
        active: ActiveCall,
    ) -> Result<http::Response<ResponseBody>, Status>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let cfg = &self.inner.config;
        let own_credentials = grpc_call.as_ref().map_or(&[][..], |c| &c.credentials[..]);
        let credentials: Vec<Arc<dyn CallCredentials>> = cfg
            .call_credentials
            .iter()
            .chain(own_credentials)
            .cloned()
            .collect();
        let encoding = grpc_call.and_then(|c| c.encoding);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = http::Uri::builder()
            .scheme(self.inner.scheme.clone())
            .authority(self.inner.authority.as_str())
            .path_and_query(path.as_str())
            .build()
            .map_err(|e| Status::internal(format!("invalid request path {path:?}: {e}")))?;
        parts.version = http::Version::HTTP_2;
        let metadata = MetadataMap::from_headers(&parts.headers).unwrap_or_default();
        let method = parts.uri.path().to_string();
        let end_of_stream = body.is_end_stream();
        let open = async {
            let snapshot = self.resolved_snapshot(deadline, None).await?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let (sub, conn, on_done) =
                    self.pick_from(&snapshot, &method, &metadata, true).await?;
                let mut end = CallEnd {
                    on_done,
                    _active: ActiveCall::new(&self.inner.shared),
                    conn_call: None,
                };
                let mut ready = match conn.send_request().ready().await {
                    Ok(r) => r,
                    Err(e) => {
                        sub.drop_connection_if(
                            conn.id(),
                            "connection failed before the stream was opened",
                        );
                        if attempt < 2 {
                            end.finish(&Status::unavailable("connection lost before the stream"));
                            continue;
                        }
                        let status = Status::unavailable(format!("connection unusable: {e}"));
                        end.finish(&status);
                        return Err(status);
                    }
                };
                let mut head = http::Request::from_parts(parts.clone(), ());
                if !credentials.is_empty() {
                    let info = RequestInfo::new(
                        &method,
                        &self.inner.authority,
                        self.security_level(&conn),
                    );
                    match credentials::request_metadata(&credentials, &info).await {
                        Ok(md) => md.add_to_headers(head.headers_mut()),
                        Err(status) => {
                            end.finish(&status);
                            return Err(status);
                        }
                    }
                }
                if let Some(choice) = &encoding {
                    // The channel's default, if the server accepts it on this connection
                    // (before it said, if assumed to), as on the typed path.
                    let accepted = conn
                        .peer_accept_encoding()
                        .map(|v| EncodingSet::parse_header(v.as_bytes()))
                        .unwrap_or(cfg.assumed_server_accept);
                    let offer = cfg.send_compression.filter(|e| accepted.contains(*e));
                    if let Some(e) = choice.decide(offer) {
                        head.headers_mut()
                            .insert(GRPC_ENCODING_NAME, HeaderValue::from_static(e.as_str()));
                    }
                }
                match ready.send_request(head, end_of_stream) {
                    Ok((response, send)) => {
                        end.conn_call = Some(conn.call_started());
                        return Ok((sub, conn, end, response, send));
                    }
                    Err(e) if (e.is_go_away() || e.is_io()) && attempt < 2 => {
                        sub.drop_connection_if(conn.id(), "send_request failed");
                        end.finish(&Status::unavailable("connection lost before the stream"));
                    }
                    Err(e) => {
                        let status = Status::from_h2_error(&e);
                        end.finish(&status);
                        return Err(status);
                    }
                }
            }
        };
        let (sub, conn, end, response, send) = with_deadline(deadline, None, open).await?;
        drop(active);
        if let Some(Intercepted {
            info: Some(info), ..
        }) = intercepted.as_mut()
        {
            info.peer = remote_addr(&conn);
        }
        let sender = if end_of_stream {
            None
        } else {
            Some(AbortOnDrop(tokio::spawn(send_body(send, body))))
        };
        let response = match with_deadline(deadline, None, async {
            response.await.map_err(|e| response_error(&sub, &conn, e))
        })
        .await
        {
            Ok(r) => r,
            Err(status) => {
                end.finish(&status);
                return Err(status);
            }
        };
        let (parts, recv) = response.into_parts();
        let mut body = ResponseBody {
            recv: Some(recv),
            data_done: false,
            done: Some(end),
            intercepted: intercepted.take(),
            _sender: sender,
        };
        if body.recv.as_ref().is_some_and(|r| r.is_end_stream()) {
            // Trailers-Only: the status is in the head.
            let status = Status::from_header_map(&parts.headers)
                .unwrap_or_else(|| Status::from_http_status(parts.status));
            body.end(&status);
        }
        Ok(http::Response::from_parts(parts, body))
    }
}

/// Streams `body` onto `send` (waiting for flow-control capacity), then its trailers or
/// END_STREAM; stops when the peer resets the stream. A body error resets it (CANCEL).
async fn send_body<B>(mut send: h2::SendStream<Bytes>, body: B)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    loop {
        let next = poll_fn(|cx| {
            if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                // Nothing of `B::Error` (maybe not `Send`) is held across an await.
                return Poll::Ready(Some(frame.map(|f| f.map_err(Into::<BoxError>::into))));
            }
            // The server may end or reset the stream while we wait for the body.
            match send.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(frame) = next else { return };
        match frame {
            None => {
                if let Err(e) = send.send_data(Bytes::new(), true) {
                    debug!(error = %e, "ending the request body failed");
                }
                return;
            }
            Some(Err(e)) => {
                debug!(error = %e, "request body failed; resetting the stream");
                send.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if let Err(e) = super::body::send_data(&mut send, data, end).await {
                        debug!(error = %e, "request stream closed while sending");
                        return;
                    }
                    if end {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if let Err(e) = send.send_trailers(trailers) {
                            debug!(error = %e, "sending request trailers failed");
                        }
                        return;
                    }
                }
            },
        }
    }
}

/// The request body of a gRPC call made through a tower service ([`GrpcService`] for
/// tower services): framed messages (length-prefixed, compressed as the call asked).
pub struct RequestBody {
    kind: RequestKind,
}

enum RequestKind {
    Once(Option<Bytes>),
    /// One message, framed when first read (its encoding decided then).
    Lazy(Option<Box<dyn FnOnce() -> Result<Bytes, Status> + Send>>),
    Stream(Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            RequestKind::Once(_) | RequestKind::Lazy(_) => "once",
            RequestKind::Stream(_) => "stream",
        };
        f.debug_struct("RequestBody").field("kind", &kind).finish()
    }
}

impl RequestBody {
    /// A body of one framed message (or of any bytes).
    pub fn once(data: Bytes) -> RequestBody {
        RequestBody {
            kind: RequestKind::Once(Some(data)),
        }
    }

    /// A body of the chunks `stream` yields; an `Err` ends it (the stream is reset).
    pub fn stream(
        stream: impl Stream<Item = Result<Bytes, Status>> + Send + 'static,
    ) -> RequestBody {
        RequestBody {
            kind: RequestKind::Stream(Box::pin(stream)),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match &mut self.get_mut().kind {
            RequestKind::Once(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestKind::Lazy(encode) => Poll::Ready(encode.take().map(|f| f().map(Frame::data))),
            RequestKind::Stream(s) => match ready!(s.as_mut().poll_next(cx)) {
                Some(Ok(d)) => Poll::Ready(Some(Ok(Frame::data(d)))),
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, RequestKind::Once(None) | RequestKind::Lazy(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            RequestKind::Once(d) => {
                http_body::SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestKind::Lazy(_) | RequestKind::Stream(_) => http_body::SizeHint::default(),
        }
    }
}

/// The status for an error a tower service returned: a [`Status`] (or one in its
/// `source` chain) as it is; an h2 error by the gRPC spec's mapping; an I/O error
/// UNAVAILABLE; tower's `timeout` middleware firing DEADLINE_EXCEEDED; anything else
/// UNKNOWN with the error's text.
pub fn status_from_error(error: BoxError) -> Status {
    let error = match error.downcast::<Status>() {
        Ok(status) => return *status,
        Err(e) => e,
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(e) = source {
        if let Some(s) = e.downcast_ref::<Status>() {
            return s.clone();
        }
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            return Status::from_h2_error(e);
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            return Status::unavailable(format!("connection error: {e}"));
        }
        source = e.source();
    }
    // tower::timeout::error::Elapsed (tower is not a dependency of the runtime): its
    // Debug is the type name, its Display this text.
    if format!("{error:?}").starts_with("Elapsed") && error.to_string() == "request timed out" {
        return Status::deadline_exceeded("request timed out (tower timeout)");
    }
    Status::unknown(error.to_string())
}

/// The parts of a call made through a tower service decided before it is sent.
struct HttpCall {
    head: http::Request<()>,
    deadline: Option<Deadline>,
    cancel: Option<CancelHandle>,
    encoding: CallEncoding,
    /// For a channel at the bottom of the stack (a request extension).
    grpc_call: GrpcCall,
}

/// The encoding of a call's messages.
#[derive(Clone)]
enum CallEncoding {
    /// Chosen by the call (`None`: compression disabled for it).
    Fixed(Option<CompressionEncoding>),
    /// Left to the channel's default (identity if nothing decides before the body is read).
    Deferred(Arc<EncodingChoice>),
}

impl CallEncoding {
    fn get(&self) -> Option<CompressionEncoding> {
        match self {
            CallEncoding::Fixed(e) => *e,
            CallEncoding::Deferred(choice) => choice.decide(None),
        }
    }
}

impl HttpCall {
    /// The request head of a call on `path`: the gRPC headers, `grpc-timeout` for the
    /// call's deadline (its own timeout, else the deadline of the server call being
    /// handled), `grpc-encoding` for its compression, and its metadata; takes the
    /// request's own call credentials for the channel.
    fn new<T>(
        path: &'static str,
        kind: CallKind,
        request: &mut Request<T>,
    ) -> Result<HttpCall, Status> {
        let deadline =
            Deadline::earliest(request.timeout().map(Deadline::after), current_deadline());
        let encoding = if request.compression_disabled() {
            CallEncoding::Fixed(None)
        } else if let Some(e) = request.compression() {
            CallEncoding::Fixed(Some(e))
        } else {
            CallEncoding::Deferred(Arc::default())
        };
        let mut head = http::Request::post(path)
            .version(http::Version::HTTP_2)
            .body(())
            .map_err(|e| Status::internal(format!("invalid method path {path:?}: {e}")))?;
        let h = head.headers_mut();
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(crate::USER_AGENT),
        );
        if let Some(d) = deadline {
            if let Ok(v) = HeaderValue::from_str(&encode_timeout(d.remaining())) {
                h.insert(GRPC_TIMEOUT_NAME, v);
            }
        }
        if let CallEncoding::Fixed(Some(e)) = encoding {
            h.insert(GRPC_ENCODING_NAME, HeaderValue::from_static(e.as_str()));
        }
        if let Ok(v) = HeaderValue::try_from(EncodingSet::all().to_header_value()) {
            h.insert(GRPC_ACCEPT_ENCODING_NAME, v);
        }
        request.metadata().add_to_headers(h);
        let grpc_call = GrpcCall {
            path,
            kind,
            credentials: request.take_call_credentials().into(),
            encoding: match &encoding {
                CallEncoding::Deferred(choice) => Some(Arc::clone(choice)),
                CallEncoding::Fixed(_) => None,
            },
        };
        Ok(HttpCall {
            head,
            deadline,
            cancel: request.extensions().get::<CancelHandle>().cloned(),
            encoding,
            grpc_call,
        })
    }

    fn request(&self, body: RequestBody) -> http::Request<RequestBody> {
        let mut req = http::Request::new(body);
        *req.method_mut() = self.head.method().clone();
        *req.uri_mut() = self.head.uri().clone();
        *req.version_mut() = self.head.version();
        *req.headers_mut() = self.head.headers().clone();
        req.extensions_mut().insert(self.grpc_call.clone());
        req
    }

    /// The single framed message of a unary or server-streaming request (framed when
    /// the body is first read if the channel may still choose its encoding).
    fn once<M: prost::Message + Send + 'static>(&self, message: M) -> Result<RequestBody, Status> {
        let encode = move |encoding| {
            let mut buf = BytesMut::new();
            encode_message(&message, encoding, usize::MAX, &mut buf)?;
            Ok(buf.freeze())
        };
        match &self.encoding {
            CallEncoding::Fixed(e) => Ok(RequestBody::once(encode(*e)?)),
            CallEncoding::Deferred(choice) => {
                let choice = Arc::clone(choice);
                Ok(RequestBody {
                    kind: RequestKind::Lazy(Some(Box::new(move || encode(choice.decide(None))))),
                })
            }
        }
    }

    /// The framed messages of a streaming request (per message `compress(false)` of an
    /// [`crate::OutboundStream`] honoured).
    fn stream<S, M>(&self, request: Request<S>) -> RequestBody
    where
        S: Stream<Item = M> + Send + 'static,
        M: prost::Message + Send + 'static,
    {
        let slot = request
            .extensions()
            .get::<MessageCompressionSlot>()
            .map(|s| Arc::clone(&s.0));
        let encoding = self.encoding.clone();
        let messages = request.into_inner();
        RequestBody::stream(futures_util::StreamExt::map(messages, move |m| {
            let compress = slot
                .as_ref()
                .map_or(true, |s| s.swap(true, std::sync::atomic::Ordering::SeqCst));
            let mut buf = BytesMut::new();
            let encoding = encoding.get().filter(|_| compress);
            encode_message(&m, encoding, usize::MAX, &mut buf)?;
            Ok(buf.freeze())
        }))
    }
}

/// Sends `request` on `service` once it is ready; the response head classified.
async fn send<S, B, T>(
    mut service: S,
    request: http::Request<RequestBody>,
) -> Result<(MetadataMap, Streaming<T>), Status>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(|e| status_from_error(e.into()))?;
    let response = service
        .call(request)
        .await
        .map_err(|e| status_from_error(e.into()))?;
    let (parts, body) = response.into_parts();
    // Trailers-Only: the head ended the stream, or (a body that cannot tell) it carries
    // the status.
    let end_stream = body.is_end_stream() || parts.headers.contains_key("grpc-status");
    match classify_head(&parts, end_stream, DEFAULT_MAX_RECV_MESSAGE_SIZE)? {
        Head::Done(status) => Ok((MetadataMap::new(), Streaming::from_status(status))),
        Head::Messages(headers, decoder) => {
            let chunks: Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>> =
                Box::pin(BodyChunks { body: Some(body) });
            Ok((
                headers,
                Streaming::from_chunks(std::sync::Mutex::new(chunks), decoder),
            ))
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body as the chunks `Streaming` reads: the data, then the trailers'
    /// status as an `Err` (OK included).
    struct BodyChunks<B> {
        #[pin]
        body: Option<B>,
    }
}

impl<B> Stream for BodyChunks<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let Some(body) = this.body.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            let status = match ready!(body.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => Status::from_header_map(&trailers)
                            .unwrap_or_else(|| Status::unknown("trailers without grpc-status")),
                        Err(_) => continue,
                    },
                },
                Some(Err(e)) => status_from_error(e.into()),
                None => Status::internal("server closed the stream without sending trailers"),
            };
            this.body.set(None);
            return Poll::Ready(Some(Err(status)));
        }
    }
}

/// Applies the call's deadline and cancel handle to a response stream.
fn streaming_response<T>(
    call: &HttpCall,
    headers: MetadataMap,
    mut stream: Streaming<T>,
) -> Response<Streaming<T>> {
    if !headers.is_empty() {
        stream.set_headers(headers.clone());
    }
    if let Some(d) = call.deadline {
        stream.set_deadline(d.instant());
    }
    if let Some(c) = &call.cancel {
        stream.set_cancel_handle(c.clone());
    }
    Response::from_parts(headers, stream, None)
}

async fn http_unary<S, B, Req, Resp>(
    service: S,
    path: &'static str,
    request: Request<Req>,
) -> Result<Response<Resp>, Status>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut request = request;
    let call = HttpCall::new(path, CallKind::Unary, &mut request)?;
    let body = call.once(request.into_inner())?;
    let fut = async {
        let (headers, mut stream) = send(service, call.request(body)).await?;
        let msg = single_message(&mut stream).await?;
        Ok(single_response(headers, msg, &stream))
    };
    with_deadline(call.deadline, call.cancel.as_ref(), fut).await
}

async fn http_server_streaming<S, B, Req, Resp>(
    service: S,
    path: &'static str,
    request: Request<Req>,
) -> Result<Response<Streaming<Resp>>, Status>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut request = request;
    let call = HttpCall::new(path, CallKind::ServerStreaming, &mut request)?;
    let body = call.once(request.into_inner())?;
    let fut = send(service, call.request(body));
    let (headers, stream) = with_deadline(call.deadline, call.cancel.as_ref(), fut).await?;
    Ok(streaming_response(&call, headers, stream))
}

async fn http_client_streaming<S, B, St, Req, Resp>(
    service: S,
    path: &'static str,
    request: Request<St>,
) -> Result<Response<Resp>, Status>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    St: Stream<Item = Req> + Send + 'static,
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut request = request;
    let call = HttpCall::new(path, CallKind::ClientStreaming, &mut request)?;
    let body = call.stream(request);
    let fut = async {
        let (headers, mut stream) = send(service, call.request(body)).await?;
        let msg = single_message(&mut stream).await?;
        Ok(single_response(headers, msg, &stream))
    };
    with_deadline(call.deadline, call.cancel.as_ref(), fut).await
}

/// A bidi call returns before its response head (a server may wait for a request
/// first): the service is driven by a task the response stream owns.
async fn http_bidi_streaming<S, B, St, Req, Resp>(
    service: S,
    path: &'static str,
    request: Request<St>,
) -> Result<Response<Streaming<Resp>>, Status>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    St: Stream<Item = Req> + Send + 'static,
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let mut request = request;
    let call = HttpCall::new(path, CallKind::BidiStreaming, &mut request)?;
    let body = call.stream(request);
    let http_request = call.request(body);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sender = AbortOnDrop(tokio::spawn(async move {
        let _ = tx.send(send::<S, B, ()>(service, http_request).await);
    }));
    let head: crate::streaming::HeadFuture = Box::pin(async move {
        let _sender = sender;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(Status::cancelled("call dropped before its response head")),
        }
    });
    let stream = Streaming::<Resp>::pending_head(head);
    Ok(streaming_response(&call, MetadataMap::new(), stream))
}

/// Every tower service of gRPC-framed HTTP requests is a [`GrpcService`]; a bare
/// [`Channel`] (a tower service itself) keeps its own typed call path.
impl<S, B> GrpcService for S
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn unary<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        match (self as &dyn Any).downcast_ref::<Channel>() {
            Some(channel) => Either::Left(channel.unary(path, request)),
            None => Either::Right(http_unary(self.clone(), path, request)),
        }
    }

    fn server_streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        match (self as &dyn Any).downcast_ref::<Channel>() {
            Some(channel) => Either::Left(channel.server_streaming(path, request)),
            None => Either::Right(http_server_streaming(self.clone(), path, request)),
        }
    }

    fn client_streaming<St, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<St>,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send
    where
        St: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        match (self as &dyn Any).downcast_ref::<Channel>() {
            Some(channel) => Either::Left(channel.client_streaming(path, request)),
            None => Either::Right(http_client_streaming(self.clone(), path, request)),
        }
    }

    fn bidi_streaming<St, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<St>,
    ) -> impl Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send
    where
        St: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        match (self as &dyn Any).downcast_ref::<Channel>() {
            Some(channel) => Either::Left(channel.bidi_streaming(path, request)),
            None => Either::Right(http_bidi_streaming(self.clone(), path, request)),
        }
    }
}
