//! One stream of a connection, in its own task: validate it (method, content-type, path,
//! grpc-timeout, grpc-encoding, metadata), route it, answer the ones refused
//! (Trailers-Only or an HTTP error), and drive the accepted call: interceptors + handler
//! under the deadline task-local, client resets, the deadline, forced shutdown, and
//! handler panics.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Method, StatusCode};
use tracing::Instrument;

use super::call::{finish_call, poll_client_reset, reset_call, ServerCall};
use super::interceptor::{CallHead, Next};
use super::tls::PeerCertificates;
use super::wire::{rejected, ResponseState};
use super::Shared;
use crate::compression::{
    encoding_from_headers, negotiate_response_encoding, EncodingSet, HeaderEncoding,
    GRPC_ACCEPT_ENCODING,
};
use crate::context::{MethodPath, ServerContext};
use crate::latch::Latch;
use crate::metadata::{is_grpc_content_type, MetadataMap};
use crate::status::{Code, Status};
use crate::timeout::{decode_timeout, scope_deadline, Deadline, GRPC_TIMEOUT_NAME};
use crate::transport::frame_tap::CallGuard;

/// Sends a non-200 HTTP response carrying a gRPC status too (as grpc-go does).
fn send_http_error(mut respond: h2::server::SendResponse<Bytes>, code: StatusCode, status: Status) {
    let mut resp = rejected(&status, None);
    *resp.status_mut() = code;
    if let Err(e) = respond.send_response(resp, true) {
        tracing::debug!("failed to send HTTP error response: {e}");
    }
}

/// Sends a Trailers-Only response before any call state exists.
fn send_trailers_only(
    mut respond: h2::server::SendResponse<Bytes>,
    status: Status,
    extra: Option<(&str, String)>,
) {
    let resp = rejected(&status, extra);
    tracing::debug!(code = %status.code(), message = status.message(), "call rejected before routing");
    if let Err(e) = respond.send_response(resp, true) {
        tracing::debug!("failed to send Trailers-Only response: {e}");
    }
}

pub(super) fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.rsplit_once('/')?;
    if service.is_empty() || method.is_empty() {
        return None;
    }
    Some((service, method))
}

/// A call that passed validation and routing: what driving it needs.
pub(super) struct AcceptedCall {
    pub(super) ctx: ServerContext,
    pub(super) metadata: MetadataMap,
    pub(super) body: super::CallBody,
    pub(super) service: Arc<dyn super::Service>,
    pub(super) request_encoding: Option<crate::compression::CompressionEncoding>,
    pub(super) deadline: Option<Deadline>,
}

/// Runs one stream in its own task: accept it ([`accept_call`]), then drive the call.
/// `_call` counts the call open on its connection until this task ends.
pub(super) async fn handle_stream(
    req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    force: Arc<Latch>,
    _call: CallGuard,
) {
    #[cfg(feature = "tower")]
    if let Some(fallback) = &shared.fallback {
        if super::fallback::wants(&req, &shared) {
            let fallback = Arc::clone(fallback);
            super::fallback::serve_h2_stream(fallback, req, respond, peer, peer_certs, force).await;
            return;
        }
    }
    #[cfg(feature = "grpc-web")]
    if shared.web.is_some() && super::web::is_web_request(&req) {
        super::web::serve_h2_stream(req, respond, peer, peer_certs, shared, force).await;
        return;
    }
    #[cfg(feature = "tower")]
    if let Some(layered) = &shared.layered {
        let layered = Arc::clone(layered);
        super::layer::serve_h2_stream(layered, req, respond, peer, peer_certs, shared, force).await;
        return;
    }
    // Synchronous, so the request head is gone before the first await and is not part of
    // this task's state.
    let Some(call) = accept_call(req, respond, peer, peer_certs, &shared) else {
        return;
    };
    run_call(call, peer, shared, force).await;
}

/// Drives an accepted call under its tracing span and logs how it ended.
pub(super) async fn run_call(
    call: AcceptedCall,
    peer: Option<SocketAddr>,
    shared: Arc<Shared>,
    force: Arc<Latch>,
) {
    let ctx = call.ctx.clone();
    let span = tracing::debug_span!("grpc_call", method = %ctx.method(), peer = ?peer, code = tracing::field::Empty);
    let started = StdInstant::now();
    drive_call(call, shared, force)
        .instrument(span.clone())
        .await;
    let code = ctx
        .final_status()
        .map(|s| s.code())
        .unwrap_or(Code::Cancelled);
    span.record("code", tracing::field::display(code));
    tracing::debug!(parent: &span, code = %code, elapsed_ms = started.elapsed().as_millis() as u64, "call finished");
}

/// Why a request head was refused after its method and content-type were accepted: the
/// status to answer with (Trailers-Only) and possibly one more header.
pub(super) struct Rejected {
    pub(super) status: Status,
    pub(super) extra: Option<(&'static str, String)>,
}

impl From<Status> for Rejected {
    fn from(status: Status) -> Self {
        Rejected {
            status,
            extra: None,
        }
    }
}

/// A request head that passed [`route`]: what the call context is built from.
pub(super) struct Routed {
    pub(super) path_and_query: http::uri::PathAndQuery,
    pub(super) service: Arc<dyn super::Service>,
    pub(super) deadline: Option<Deadline>,
    pub(super) request_encoding: Option<crate::compression::CompressionEncoding>,
    pub(super) metadata: MetadataMap,
    pub(super) client_accepts: EncodingSet,
    pub(super) response_encoding: Option<crate::compression::CompressionEncoding>,
}

/// Routes a request head and checks what native gRPC and gRPC-Web requests share:
/// path, service, method, grpc-timeout, grpc-encoding, metadata.
// `Rejected` carries a full Status; boxing it would cost an allocation per rejected call
// and buy nothing on the accepted path, whose `Routed` is as large.
#[allow(clippy::result_large_err)]
pub(super) fn route(parts: &http::request::Parts, shared: &Shared) -> Result<Routed, Rejected> {
    // The path is shared with the request head (no copy) and kept by the context.
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let path = path_and_query.path();
    let Some((service_name, method_name)) = split_path(path) else {
        return Err(Status::unimplemented(format!("malformed method name: {path:?}")).into());
    };
    let Some(service) = shared.services.get(service_name).cloned() else {
        return Err(Status::unimplemented(format!("unknown service {service_name}")).into());
    };
    if !service.methods().iter().any(|m| m.name == method_name) {
        return Err(Status::unimplemented(format!(
            "unknown method {method_name} for service {service_name}"
        ))
        .into());
    }
    let deadline = match parts.headers.get(&GRPC_TIMEOUT_NAME) {
        None => None,
        Some(v) => match decode_timeout(v.as_bytes()) {
            Ok(d) => Some(Deadline::after(d)),
            Err(e) => return Err(Status::internal(e.to_string()).into()),
        },
    };
    let request_encoding = match encoding_from_headers(&parts.headers) {
        HeaderEncoding::Identity => None,
        HeaderEncoding::Known(e) if shared.accept_encodings.contains(e) => Some(e),
        HeaderEncoding::Known(e) => {
            return Err(reject_encoding(e.as_str(), shared.accept_encodings))
        }
        HeaderEncoding::Unknown(name) => {
            return Err(reject_encoding(&name, shared.accept_encodings))
        }
    };
    let metadata = match MetadataMap::from_headers(&parts.headers) {
        Ok(m) => m,
        Err(e) => return Err(Status::internal(format!("invalid request metadata: {e}")).into()),
    };
    let client_accepts = EncodingSet::from_headers(&parts.headers);
    let response_encoding = negotiate_response_encoding(
        None,
        request_encoding,
        shared.default_compression,
        shared.send_encodings,
        client_accepts,
    );
    Ok(Routed {
        path_and_query,
        service,
        deadline,
        request_encoding,
        metadata,
        client_accepts,
        response_encoding,
    })
}

/// Validates a new stream (method, content-type, path, grpc-timeout, grpc-encoding,
/// metadata) and routes it; answers the ones it rejects itself.
fn accept_call(
    req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Shared,
) -> Option<AcceptedCall> {
    let (parts, body) = req.into_parts();
    if let Some(over) = parts.extensions.get::<h2::ext::OversizedHeaderList>() {
        // h2 removed the header fields (the head was over our SETTINGS_MAX_HEADER_LIST_SIZE):
        // this call alone ends, as grpc-go and C core end it.
        let limit = shared.max_header_list_size;
        let size = over.size();
        send_trailers_only(
            respond,
            Status::resource_exhausted(format!(
                "request metadata size {size} exceeds the limit of {limit} bytes"
            )),
            None,
        );
        return None;
    }
    if parts.method != Method::POST {
        send_http_error(
            respond,
            StatusCode::METHOD_NOT_ALLOWED,
            Status::internal(format!("gRPC requires POST, got {}", parts.method)),
        );
        return None;
    }
    let ct = parts.headers.get(http::header::CONTENT_TYPE);
    if !is_grpc_content_type(ct) {
        let shown = ct
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        send_http_error(
            respond,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::internal(format!("invalid gRPC request content-type {shown:?}")),
        );
        return None;
    }
    // Stats from here on: the request is a gRPC call (gRFC A66 counts calls to methods
    // the server lacks too, as method "other").
    let stats = shared.stats.as_ref().map(|h| {
        let path = parts.uri.path();
        let tracer = h.call_started(path, is_registered(shared, path), &parts.headers, peer);
        crate::stats::ServerCallStats::new(tracer, std::time::Instant::now())
    });
    let routed = match route(&parts, shared) {
        Ok(r) => r,
        Err(Rejected { status, extra }) => {
            if let Some(s) = &stats {
                s.end(&status);
            }
            send_trailers_only(
                respond,
                status,
                extra.as_ref().map(|(k, v)| (*k, v.clone())),
            );
            return None;
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
    let ctx = ServerContext::new(
        MethodPath::Received(path_and_query),
        peer,
        deadline,
        ResponseState::Pending(respond),
        response_encoding,
        client_accepts,
        shared.accept_encodings,
    );
    if let Some(certs) = peer_certs {
        ctx.set_peer_certificates(certs);
    }
    if let Some(s) = stats {
        let _ = ctx.inner.stats.set(s);
    }
    if deadline.is_some_and(|d| d.is_expired()) {
        // Already over (`grpc-timeout: 0n`, `1n`, `1u`...): the handler never runs
        // (grpc-go does the same).
        super::call::finish_call(
            &ctx,
            Status::deadline_exceeded("deadline exceeded before the call started"),
        );
        return None;
    }
    Some(AcceptedCall {
        ctx,
        metadata,
        body: super::CallBody::H2(body),
        service,
        request_encoding,
        deadline,
    })
}

/// What the service's handler needs besides the head (which interceptors may change).
struct Handler {
    service: Arc<dyn super::Service>,
    body: super::CallBody,
    config: Arc<super::call::CallConfig>,
    request_encoding: Option<crate::compression::CompressionEncoding>,
}

impl Handler {
    /// Starts the handler; the future resolves with the status it left on the call.
    fn start(
        self,
        ctx: ServerContext,
        metadata: MetadataMap,
        extensions: http::Extensions,
    ) -> crate::BoxFuture<Status> {
        let call = ServerCall {
            metadata,
            extensions,
            body: self.body,
            ctx: ctx.clone(),
            config: self.config,
            request_encoding: self.request_encoding,
        };
        // accept_call checked the path's shape: /service/method
        let fut = self
            .service
            .call(ctx.method().rsplit('/').next().unwrap_or_default(), call);
        Box::pin(async move {
            fut.await;
            ctx.final_status()
                .unwrap_or_else(|| Status::internal("handler returned without finishing the call"))
        })
    }
}

/// Whether `path` names a method of one of the server's services.
pub(super) fn is_registered(shared: &Shared, path: &str) -> bool {
    split_path(path).is_some_and(|(service, method)| {
        shared
            .services
            .get(service)
            .is_some_and(|s| s.methods().iter().any(|m| m.name == method))
    })
}

fn reject_encoding(name: &str, accepted: EncodingSet) -> Rejected {
    Rejected {
        status: Status::unimplemented(format!(
            "grpc: request compressed with {name:?}, which this server does not support (supported: {})",
            accepted.to_header_value()
        )),
        extra: Some((GRPC_ACCEPT_ENCODING, accepted.to_header_value())),
    }
}

async fn drive_call(call: AcceptedCall, shared: Arc<Shared>, force: Arc<Latch>) {
    let AcceptedCall {
        ctx,
        metadata,
        body,
        service,
        request_encoding,
        deadline,
    } = call;
    let handler = Handler {
        service,
        body,
        config: shared.call_config.clone(),
        request_encoding,
    };
    let work = if shared.interceptors.is_empty() {
        // No interceptors: the handler's future is the call's work (no terminal closure).
        handler.start(ctx.clone(), metadata, http::Extensions::new())
    } else {
        let terminal_ctx = ctx.clone();
        let terminal = Box::new(move |head: CallHead| {
            handler.start(terminal_ctx, head.metadata, head.extensions)
        });
        Next::new(shared.interceptors.clone(), terminal).run(CallHead::new(metadata, ctx.clone()))
    };
    // A stats plugin may run the call's work in its trace context.
    let work = match ctx.stats() {
        Some(s) => crate::stats::ServerCallTracer::instrument(&*s.tracer, work),
        None => work,
    };
    let work = scope_deadline(deadline, AssertUnwindSafe(work).catch_unwind());
    tokio::pin!(work);

    let deadline_sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.instant()).await,
            None => std::future::pending().await,
        }
    };
    let client_reset = std::future::poll_fn(|cx| poll_client_reset(&ctx, cx));

    // A client reset is checked first: a handler that ended because its request stream
    // failed with that reset was cancelled, it did not finish normally.
    tokio::select! {
        biased;
        reason = client_reset => {
            tracing::debug!("client reset the stream: {reason}");
            ctx.cancel(Code::Cancelled);
        }
        result = &mut work => {
            match result {
                Ok(status) => finish_call(&ctx, status),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!("handler panicked: {what}");
                    finish_call(&ctx, Status::unknown("handler panicked"));
                }
            }
            ctx.mark_finished();
            return;
        }
        _ = deadline_sleep => {
            tracing::debug!("deadline exceeded; cancelling handler");
            ctx.cancel(Code::DeadlineExceeded);
            finish_call(&ctx, Status::deadline_exceeded("deadline exceeded"));
        }
        _ = force.wait() => {
            tracing::debug!("server shutdown: cancelling call");
            ctx.cancel(Code::Cancelled);
            reset_call(&ctx, h2::Reason::CANCEL);
        }
    }
    // Let the handler observe the cancellation for a short while, then drop it.
    if tokio::time::timeout(shared.cancel_grace, &mut work)
        .await
        .is_err()
    {
        tracing::debug!("handler did not finish after cancellation; dropping it");
    }
    // A cancelled call that never sent a status: make sure the stream is gone.
    reset_call(&ctx, h2::Reason::CANCEL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(split_path("/a.B/C"), Some(("a.B", "C")));
        assert_eq!(split_path("/a.B/"), None);
        assert_eq!(split_path("//C"), None);
        assert_eq!(split_path("a.B/C"), None);
        assert_eq!(split_path("/abc"), None);
    }
}
