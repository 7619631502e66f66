//! The server side of a call on the wire: where its response stands
//! ([`ResponseState`]: the h2 `SendResponse`/`SendStream`, or a gRPC-Web sink), the
//! response head and its size check, and sending the headers early
//! ([`ServerContext::send_headers`]). The handler-facing [`ServerContext`] holds this
//! state; only `server/` touches it.

use std::sync::MutexGuard;

use bytes::Bytes;

use crate::context::ServerContext;
use crate::metadata::{header_list_size, MetadataMap};
use crate::status::Status;

/// Where the response of a call stands.
pub(crate) enum ResponseState {
    /// Headers not sent yet.
    Pending(h2::server::SendResponse<Bytes>),
    /// Headers sent; messages may follow.
    Open(h2::SendStream<Bytes>),
    /// Trailers (or Trailers-Only) sent, or the stream is gone.
    Closed,
    /// Not a server call (client-side request).
    Detached,
    /// A gRPC-Web call: headers, messages and the status go to the queue its gRPC-Web
    /// response body reads (`server::web`), whether that is written to HTTP/1.1 or h2.
    #[cfg(feature = "grpc-web")]
    Web(super::web::WebSink),
}

/// The largest status + trailers we send (as HTTP/2 counts a header list: name +
/// value + 32 per field), matching the 8 KiB header-list limit of our client and of
/// grpc-java. A peer that gets more fails the call, and h2 peers fail the whole
/// connection (GOAWAY ENHANCE_YOUR_CALM) when it is far more.
pub(crate) const MAX_TRAILERS_SIZE: usize = 8 * 1024;

/// The call's response state, locked (a poisoned lock is still usable: the state is
/// replaced whole).
pub(crate) fn lock_state(ctx: &ServerContext) -> MutexGuard<'_, ResponseState> {
    ctx.inner.response.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the response head (`:status 200`, content-type, encodings, metadata).
pub(crate) fn response_head(ctx: &ServerContext, metadata: &MetadataMap) -> http::Response<()> {
    let mut resp = http::Response::new(());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    if let Some(enc) = ctx.compression() {
        h.insert(
            crate::compression::GRPC_ENCODING_NAME,
            http::HeaderValue::from_static(enc.as_str()),
        );
    }
    h.insert(
        crate::compression::GRPC_ACCEPT_ENCODING_NAME,
        ctx.inner.server_accepts.header_value(),
    );
    metadata.add_to_headers(h);
    resp
}

/// Response headers over [`MAX_TRAILERS_SIZE`] are refused (the call ends with
/// INTERNAL, Trailers-Only) rather than sent to a peer that would reject them, and
/// with them, if far over, the whole connection.
pub(crate) fn check_response_head(head: &http::Response<()>) -> Result<(), Status> {
    let size = header_list_size(head.headers());
    if size > MAX_TRAILERS_SIZE {
        return Err(Status::internal(format!(
            "response headers too large to send: {size} bytes (limit {MAX_TRAILERS_SIZE})"
        )));
    }
    Ok(())
}

/// How much of the message survives when the trailers had to be cut down.
const TRUNCATED_MESSAGE_BYTES: usize = 512;

/// `status` and `trailers` as header fields appended to `h`; if together they exceed
/// [`MAX_TRAILERS_SIZE`], only the code and the start of the message go out (details
/// and trailing metadata are dropped, with a warning in the log).
pub(crate) fn add_status_headers(h: &mut http::HeaderMap, status: &Status, trailers: &MetadataMap) {
    if trailers.is_empty()
        && status.message().is_empty()
        && status.details().is_empty()
        && status.metadata().is_empty()
    {
        // The common case, a bare code: nothing to measure or truncate.
        status.add_to_headers(h);
        return;
    }
    let mut t = http::HeaderMap::new();
    status.add_to_headers(&mut t);
    trailers.add_to_headers(&mut t);
    let size = header_list_size(&t);
    if size > MAX_TRAILERS_SIZE {
        tracing::warn!(
            size,
            limit = MAX_TRAILERS_SIZE,
            code = %status.code(),
            "status and trailers too large to send; sending the code and a truncated message only"
        );
        let msg = status.message();
        let mut end = msg.len().min(TRUNCATED_MESSAGE_BYTES);
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let cut = format!(
            "{} [truncated: status and trailers exceeded {MAX_TRAILERS_SIZE} bytes]",
            &msg[..end]
        );
        t = Status::new(status.code(), cut).to_header_map();
    }
    h.extend(t);
}

/// A Trailers-Only response: `:status 200`, `content-type: application/grpc` and
/// `status` with `trailers` in the one header block, cut down as
/// [`add_status_headers`] does. Every Trailers-Only answer is built here (calls that end
/// before their headers, requests refused before routing, gRPC-Web, whose body sets its
/// own content-type).
pub(crate) fn trailers_only(status: &Status, trailers: &MetadataMap) -> http::Response<()> {
    let mut resp = http::Response::new(());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    add_status_headers(h, status, trailers);
    resp
}

/// A request refused before its call existed: Trailers-Only with `status` and possibly
/// one more header (`grpc-accept-encoding` for an unsupported encoding).
pub(crate) fn rejected(status: &Status, extra: Option<(&str, String)>) -> http::Response<()> {
    let mut resp = trailers_only(status, &MetadataMap::new());
    if let Some((k, v)) = extra {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

/// [`ServerContext::send_headers`]: the response headers now, with `metadata`; an error
/// if they already went out, the call ended, or this is not a server call.
pub(crate) fn send_headers(ctx: &ServerContext, metadata: MetadataMap) -> Result<(), Status> {
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
        #[cfg(feature = "grpc-web")]
        ResponseState::Web(sink) => {
            let result = if sink.head_sent() {
                Err(Status::internal(
                    "send_headers: response headers already sent",
                ))
            } else {
                let head = response_head(ctx, &metadata);
                check_response_head(&head).and_then(|()| sink.send_head(head))
            };
            *st = ResponseState::Web(sink);
            result
        }
        other => {
            let detached = matches!(other, ResponseState::Detached);
            *st = other;
            if detached {
                Err(Status::internal("send_headers: not a server call"))
            } else {
                Err(Status::internal(
                    "send_headers: response headers already sent",
                ))
            }
        }
    }
}

/// [`ServerContext::headers_sent`]: true once response headers went out.
pub(crate) fn headers_sent(ctx: &ServerContext) -> bool {
    match &*lock_state(ctx) {
        ResponseState::Pending(_) => false,
        #[cfg(feature = "grpc-web")]
        ResponseState::Web(sink) => sink.head_sent(),
        _ => true,
    }
}
