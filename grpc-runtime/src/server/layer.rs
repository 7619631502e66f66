//! gRPC behind tower layers (cargo feature `tower`, [`ServerBuilder::layer`]): the
//! server's gRPC router as a tower `Service` ([`GrpcRoutes`]), the per-connection
//! facts a layered request carries to it, and how what the layers answer becomes a gRPC
//! response: a layer's error (load shed, tower's timeout) is a status for that call
//! alone, sent Trailers-Only. Calls of a server without layers never come here.
//!
//! [`ServerBuilder::layer`]: super::ServerBuilder::layer

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;

use super::fallback::{self, RequestBody};
use super::http_conn::{box_body, BoxBody, BoxError};
use super::tls::PeerCertificates;
use super::Shared;
use crate::latch::Latch;
use crate::request::BoxFuture;
use crate::status::{Code, Status};

/// The server's gRPC router as a tower `Service`: what the layers given to
/// [`ServerBuilder::layer`](super::ServerBuilder::layer) wrap. It routes a request to
/// the server's services and answers with the call's gRPC response (its body streams
/// the messages and ends with the status as trailers); every error is in that response,
/// so the service itself never fails.
///
/// It serves requests the server hands it (they carry the connection's details); called
/// by anything else it answers `INTERNAL`.
///
/// ```
/// fn takes_a_tower_service<S: tower_service::Service<http::Request<grpc_runtime::server::RequestBody>>>(_: S) {}
/// takes_a_tower_service(grpc_runtime::server::GrpcRoutes::default());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcRoutes {
    _private: (),
}

/// What a request handed to the layered service carries to [`GrpcRoutes`]: the server
/// and the connection it came on (a request extension, so layers pass it on).
#[derive(Clone)]
pub(crate) struct Origin {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    force: Arc<Latch>,
}

impl<B> tower_service::Service<http::Request<B>> for GrpcRoutes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<BoxBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let web = super::web::is_web_request(&req);
        let (mut parts, body) = req.into_parts();
        let Some(origin) = parts.extensions.remove::<Origin>() else {
            return Box::pin(std::future::ready(Ok(trailers_only(&Status::internal(
                "GrpcRoutes called outside the server that owns it",
            )))));
        };
        let Origin {
            shared,
            peer,
            peer_certs,
            force,
        } = origin;
        if web && shared.web.is_some() {
            // gRPC-Web (or its CORS preflight): translated here, inside the layers.
            return Box::pin(async move {
                let resp =
                    super::web::start_layered(parts, body, peer, peer_certs, &shared, &force).await;
                Ok(resp.map(box_body))
            });
        }
        let source = super::web::native_source(body);
        Box::pin(async move {
            let resp =
                super::web::start_native(parts, source, peer, peer_certs, &shared, &force).await;
            Ok(resp.map(box_body))
        })
    }
}

/// Serves one stream of the native h2 connection (a gRPC call, or a gRPC-Web one) through
/// the layered gRPC router.
pub(crate) async fn serve_h2_stream(
    layered: fallback::Fallback,
    req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    force: Arc<Latch>,
) {
    let response = call(
        &layered,
        req.map(RequestBody::h2),
        peer,
        peer_certs,
        shared,
        Arc::clone(&force),
    );
    fallback::write_response(response, respond, peer, force).await;
}

/// Hands a request of the server's port (native gRPC over HTTP/2, gRPC-Web over either
/// HTTP version) to the layered gRPC router; what the layers end it with (an error, an
/// HTTP answer of their own) becomes a gRPC status in the request's protocol.
pub(crate) fn call(
    layered: &fallback::Fallback,
    mut req: http::Request<RequestBody>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    force: Arc<Latch>,
) -> impl std::future::Future<Output = http::Response<BoxBody>> + Send + 'static {
    let web = super::web::LayerErrorReply::of(&req, &shared).map(|r| (r, Arc::clone(&shared)));
    super::fallback::add_connection_info(req.extensions_mut(), peer, peer_certs.as_ref());
    req.extensions_mut().insert(Origin {
        shared,
        peer,
        peer_certs,
        force,
    });
    let response = layered.call(req);
    async move {
        let result = response.await;
        if let Some((reply, shared)) = web {
            let status = match result {
                Ok(resp) => match layer_answer(&resp) {
                    None => return resp,
                    Some(status) => status,
                },
                Err(e) => status_of_error(&e),
            };
            tracing::debug!(code = %status.code(), message = status.message(), "gRPC-Web call ended by a layer");
            return reply
                .trailers_only(&status, &shared)
                .map(|()| BoxBody::default());
        }
        match result {
            Ok(resp) => resp_as_grpc(resp),
            Err(e) => trailers_only(&status_of_error(&e)),
        }
    }
}

/// A layer's error as the call's status, as grpc-go reports the same conditions:
/// load shed (tower's `Overloaded`) is `UNAVAILABLE` (grpc-go's answer when its server
/// cannot take a stream, and a code clients may retry); tower's `timeout` (`Elapsed`) is
/// `DEADLINE_EXCEEDED` (the server gave up on the call because time ran out, which
/// grpc-go reports for an expired context; `CANCELLED` would tell the client that someone
/// cancelled it); a [`Status`] is itself; anything else is `UNKNOWN` (grpc-go's code
/// for a handler or interceptor error that is not a status).
pub(crate) fn status_of_error(error: &BoxError) -> Status {
    if error.is::<tower::load_shed::error::Overloaded>() {
        Status::unavailable("server overloaded: call shed")
    } else if error.is::<tower::timeout::error::Elapsed>() {
        Status::deadline_exceeded("server timeout elapsed")
    } else if let Some(status) = error.downcast_ref::<Status>() {
        status.clone()
    } else {
        Status::unknown(error.to_string())
    }
}

/// A Trailers-Only gRPC response carrying `status` (built, and cut to size, by
/// [`super::wire::trailers_only`], as every Trailers-Only answer of the server).
fn trailers_only(status: &Status) -> http::Response<BoxBody> {
    tracing::debug!(code = %status.code(), message = status.message(), "layered call ended by a layer");
    super::wire::trailers_only(status, &crate::metadata::MetadataMap::new())
        .map(|()| BoxBody::default())
}

/// A response a layer made itself (an HTTP error without `grpc-status`, such as
/// tower-http's `TimeoutLayer` answering 408) becomes a Trailers-Only gRPC status: 408
/// is `DEADLINE_EXCEEDED` (see [`status_of_error`]), other codes as a gRPC client maps
/// an HTTP status. gRPC responses pass unchanged.
fn resp_as_grpc(resp: http::Response<BoxBody>) -> http::Response<BoxBody> {
    if resp.status() == StatusCode::OK || resp.headers().contains_key("grpc-status") {
        return resp;
    }
    trailers_only(&status_of_http(resp.status()))
}

/// The status of an answer a layer made itself to a gRPC-Web request: `None` for what
/// the router answers (a success, such as a preflight's 204, or anything carrying
/// `grpc-status`), else as [`resp_as_grpc`] maps it.
fn layer_answer(resp: &http::Response<BoxBody>) -> Option<Status> {
    if resp.status().is_success() || resp.headers().contains_key("grpc-status") {
        return None;
    }
    Some(status_of_http(resp.status()))
}

/// An HTTP status without `grpc-status`, as a gRPC status (see [`resp_as_grpc`]).
fn status_of_http(http: StatusCode) -> Status {
    let code = match http {
        StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::BAD_REQUEST | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Code::Internal,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("answered HTTP {http} by a layer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_errors_map_to_statuses() {
        let e: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
        assert_eq!(status_of_error(&e).code(), Code::Unavailable);
        let e: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(status_of_error(&e).code(), Code::DeadlineExceeded);
        let e: BoxError = Box::new(Status::resource_exhausted("x"));
        assert_eq!(status_of_error(&e).code(), Code::ResourceExhausted);
        let e: BoxError = "other".into();
        assert_eq!(status_of_error(&e).code(), Code::Unknown);
    }

    #[test]
    fn http_answers_of_layers_become_statuses() {
        let with = |code: StatusCode| {
            let mut r = http::Response::new(BoxBody::default());
            *r.status_mut() = code;
            resp_as_grpc(r)
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap_or("").to_string())
        };
        assert_eq!(with(StatusCode::REQUEST_TIMEOUT).as_deref(), Some("4"));
        assert_eq!(with(StatusCode::SERVICE_UNAVAILABLE).as_deref(), Some("14"));
        assert_eq!(with(StatusCode::IM_A_TEAPOT).as_deref(), Some("2"));
        assert_eq!(with(StatusCode::OK), None);
    }
}
