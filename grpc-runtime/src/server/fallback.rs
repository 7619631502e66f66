//! The fallback service (cargo feature `tower`): a tower `Service`, such as an axum
//! `Router`, that answers the requests of the server's port which are not gRPC (nor
//! gRPC-Web when that is on), over HTTP/2 and over HTTP/1.1. This module owns which
//! requests go there ([`wants`]), the request body handed to it ([`RequestBody`]), its
//! type erasure, and writing its responses to an h2 stream (HTTP/1.1 responses go
//! through hyper's server, `super::http`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::http_conn::{box_body, write_h2, BoxBody, BoxError};
use super::tls::PeerCertificates;
use super::Shared;
use crate::latch::Latch;
use crate::request::BoxFuture;

/// The body of a request handed to the fallback service
/// ([`ServerBuilder::fallback_service`](super::ServerBuilder::fallback_service)): the
/// request's DATA over HTTP/2 (flow-control capacity is released as each chunk is
/// taken, so a handler that reads slowly slows the client down rather than making the
/// server buffer) or its body over HTTP/1.1, then its trailers if any.
///
/// It implements [`http_body::Body`], so axum's extractors (`String`, `Bytes`, `Json`),
/// `http_body_util::BodyExt` and tower-http's layers take it as they take hyper's
/// `Incoming`.
///
/// ```
/// use http_body::Body as _;
///
/// let body = grpc_runtime::server::RequestBody::empty();
/// assert!(body.is_end_stream());
/// ```
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    Empty,
    /// An HTTP/2 stream of the native connection; `data_done` once its DATA ended (the
    /// trailers, if any, come next).
    H2 {
        stream: h2::RecvStream,
        data_done: bool,
    },
    Http1(hyper::body::Incoming),
}

impl RequestBody {
    /// A body with nothing in it (for tests and for requests built by hand).
    pub fn empty() -> RequestBody {
        RequestBody { kind: Kind::Empty }
    }

    pub(crate) fn h2(stream: h2::RecvStream) -> RequestBody {
        RequestBody {
            kind: Kind::H2 {
                stream,
                data_done: false,
            },
        }
    }

    pub(crate) fn http1(body: hyper::body::Incoming) -> RequestBody {
        RequestBody {
            kind: Kind::Http1(body),
        }
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::empty()
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Empty => "empty",
            Kind::H2 { .. } => "HTTP/2",
            Kind::Http1(_) => "HTTP/1.1",
        };
        f.debug_struct("RequestBody").field("kind", &kind).finish()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Http1(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Kind::H2 { stream, data_done } => {
                if !*data_done {
                    match stream.poll_data(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(data))) => {
                            if let Err(e) = stream.flow_control().release_capacity(data.len()) {
                                tracing::debug!("release_capacity failed: {e}");
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                        Poll::Ready(None) => *data_done = true,
                    }
                }
                match stream.poll_trailers(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                    Poll::Ready(Ok(None)) => Poll::Ready(None),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::H2 { stream, .. } => stream.is_end_stream(),
            Kind::Http1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::H2 { stream, .. } if stream.is_end_stream() => SizeHint::with_exact(0),
            Kind::H2 { .. } => SizeHint::default(),
            Kind::Http1(body) => body.size_hint(),
        }
    }
}

/// The fallback service with its types erased: what `Shared` holds.
pub(crate) type Fallback = Arc<dyn ErasedService>;

/// A fallback service of any type, cloned per request (tower's contract: `poll_ready`
/// then `call` on the same clone).
pub(crate) trait ErasedService: Send + Sync + 'static {
    fn call(
        &self,
        req: http::Request<RequestBody>,
    ) -> BoxFuture<Result<http::Response<BoxBody>, BoxError>>;
}

/// Wraps a tower service as an [`ErasedService`].
pub(crate) struct Erase<S>(pub(crate) S);

impl<S, B> ErasedService for Erase<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn call(
        &self,
        req: http::Request<RequestBody>,
    ) -> BoxFuture<Result<http::Response<BoxBody>, BoxError>> {
        let mut service = self.0.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let response = service.call(req).await.map_err(Into::into)?;
            Ok(response.map(box_body))
        })
    }
}

/// Whether a request of the server's port goes to the fallback service: its
/// content-type is not gRPC's, and it is neither a gRPC-Web call nor a gRPC-Web CORS
/// preflight when gRPC-Web is on.
pub(crate) fn wants<B>(req: &http::Request<B>, shared: &Shared) -> bool {
    let ct = req.headers().get(header::CONTENT_TYPE);
    if crate::metadata::is_grpc_content_type(ct) {
        return false;
    }
    #[cfg(feature = "grpc-web")]
    if shared.web.is_some() {
        if req.method() == http::Method::OPTIONS {
            return !is_grpc_web_preflight(req.headers());
        }
        if super::web::is_web_request(req) {
            return false;
        }
    }
    let _ = shared;
    true
}

/// Whether a CORS preflight is for a gRPC-Web call: the headers the browser asks to
/// send include `x-grpc-web`, `x-user-agent` or a `grpc-` one (gRPC-Web clients send
/// `x-grpc-web`; a REST route's preflight names none of them).
#[cfg_attr(not(feature = "grpc-web"), allow(dead_code))]
fn is_grpc_web_preflight(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .any(|name| name == "x-grpc-web" || name == "x-user-agent" || name.starts_with("grpc-"))
}

/// The answer when the fallback service fails (returns an error rather than a
/// response): HTTP 500 for that request alone.
pub(crate) fn internal_error(error: &BoxError) -> http::Response<BoxBody> {
    tracing::warn!("fallback service failed: {error}");
    let mut resp = http::Response::new(BoxBody::default());
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

/// Puts what the server knows about the connection into a request's extensions, for the
/// fallback service and tower layers: the peer's [`SocketAddr`] (what
/// [`ServerContext::peer_addr`](crate::ServerContext::peer_addr) tells a gRPC handler; not
/// for unix sockets) and, over TLS, the session as an `Arc<`[`TlsInfo`](super::TlsInfo)`>`
/// (what [`ServerContext::tls_info`](crate::ServerContext::tls_info) gives, the client's
/// certificates included).
pub(crate) fn add_connection_info(
    extensions: &mut http::Extensions,
    peer: Option<SocketAddr>,
    peer_certs: Option<&PeerCertificates>,
) {
    if let Some(peer) = peer {
        extensions.insert(peer);
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = peer_certs {
        extensions.insert(Arc::clone(tls));
    }
    #[cfg(not(feature = "tls"))]
    let _ = peer_certs;
}

/// Answers one request of an HTTP/1.1 connection with the fallback service.
pub(crate) fn serve_http1(
    fallback: &Fallback,
    mut req: http::Request<hyper::body::Incoming>,
    peer: Option<SocketAddr>,
    peer_certs: Option<&PeerCertificates>,
) -> impl Future<Output = http::Response<BoxBody>> + Send + 'static {
    add_connection_info(req.extensions_mut(), peer, peer_certs);
    let response = fallback.call(req.map(RequestBody::http1));
    async move { response.await.unwrap_or_else(|e| internal_error(&e)) }
}

/// Header fields HTTP/2 forbids (RFC 9113 8.2.2); h2 refuses a response carrying them.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Serves one request of the native h2 connection with the fallback service.
pub(crate) async fn serve_h2_stream(
    fallback: Fallback,
    mut req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    force: Arc<Latch>,
) {
    add_connection_info(req.extensions_mut(), peer, peer_certs.as_ref());
    drop(peer_certs);
    let response = fallback.call(req.map(RequestBody::h2));
    let response = async move { response.await.unwrap_or_else(|e| internal_error(&e)) };
    write_response(response, respond, peer, force).await;
}

/// Writes the response `response` resolves with to an h2 stream: the head, then the
/// body within flow control, then its trailers. The stream is reset if the client
/// resets it, the body fails, or the server's grace period ends (`force`).
pub(crate) async fn write_response(
    response: impl Future<Output = http::Response<BoxBody>>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    force: Arc<Latch>,
) {
    let response = tokio::select! {
        r = response => r,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
        _ = force.wait() => {
            respond.send_reset(h2::Reason::CANCEL);
            return;
        }
    };
    let (mut head, mut body) = response.into_parts();
    for name in CONNECTION_SPECIFIC {
        head.headers.remove(name);
    }
    if head
        .headers
        .get(header::TE)
        .is_some_and(|v| v != HeaderValue::from_static("trailers"))
    {
        head.headers.remove(header::TE);
    }
    let end = body.is_end_stream();
    let mut stream = match respond.send_response(http::Response::from_parts(head, ()), end) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(
                ?peer,
                "failed to send the fallback service's response head: {e}"
            );
            return;
        }
    };
    if end {
        return;
    }
    loop {
        let frame = tokio::select! {
            f = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => f,
            _ = std::future::poll_fn(|cx| stream.poll_reset(cx)) => return,
            _ = force.wait() => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
        };
        let frame = match frame {
            None => {
                if let Err(e) = stream.send_data(Bytes::new(), true) {
                    tracing::debug!(?peer, "response end failed: {e}");
                }
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(?peer, "response body failed: {e}");
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let sent = match frame.into_data() {
            Ok(data) => write_h2(&mut stream, data).await,
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    if let Err(e) = stream.send_trailers(trailers) {
                        tracing::debug!(?peer, "response trailers failed: {e}");
                    }
                    return;
                }
                // A frame kind newer than http-body 1's two: nothing to send.
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = sent {
            tracing::debug!(?peer, "response write failed: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_web_preflights_are_told_apart() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_static(v),
            );
            m
        };
        assert!(is_grpc_web_preflight(&h("content-type, x-grpc-web")));
        assert!(is_grpc_web_preflight(&h("X-User-Agent,content-type")));
        assert!(is_grpc_web_preflight(&h("grpc-timeout")));
        assert!(!is_grpc_web_preflight(&h("content-type, authorization")));
        assert!(!is_grpc_web_preflight(&HeaderMap::new()));
    }
}
