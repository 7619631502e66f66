//! Client-side health checking (gRFC A17): while a health-checked subchannel's connection
//! is up, a `grpc.health.v1.Health/Watch` stream on that connection tells whether the
//! backend serves the configured service. Only SERVING makes the subchannel READY for its
//! policy; anything else is TRANSIENT_FAILURE (the connection stays open). A server that
//! answers UNIMPLEMENTED has no health service: the subchannel is READY and checking stops
//! for that connection. A failed stream is retried with backoff (reset once a response
//! arrives), as grpc-go does.

use bytes::BytesMut;
use http::{HeaderValue, Method};
use tracing::debug;

use crate::codec::{encode_message, FrameDecoder};
use crate::generated::grpc_health_v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
};
use crate::status::{Code, Status};
use crate::streaming::Streaming;
use crate::transport::{Backoff, BackoffConfig, Connection};

const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// What the health stream says about the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// SERVING, or no health service at all (UNIMPLEMENTED): usable.
    Serving,
    /// Anything else; the text says what.
    NotServing(String),
}

/// Where and how to open the health stream.
#[derive(Debug, Clone)]
pub(crate) struct HealthTarget {
    pub(crate) service: String,
    pub(crate) authority: String,
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) backoff: BackoffConfig,
}

enum StreamEnd {
    /// The server has no health service.
    Unimplemented,
    /// The stream failed or ended; whether it delivered a response first.
    Failed(String, bool),
    /// `report` asked to stop (connection replaced, subchannel gone).
    Stop,
}

/// Watches the backend's health on `conn` until the connection ends or `report` returns
/// `false`. `report` is called on every change of what is known.
pub(crate) async fn watch(
    conn: Connection,
    target: HealthTarget,
    mut report: impl FnMut(Health) -> bool,
) {
    let mut backoff = Backoff::new(target.backoff);
    loop {
        match one_stream(&conn, &target, &mut report).await {
            StreamEnd::Stop => return,
            StreamEnd::Unimplemented => {
                debug!(address = %conn.address(), "the server has no health service: health checking off for this connection");
                report(Health::Serving);
                return;
            }
            StreamEnd::Failed(why, got_response) => {
                if conn.is_closed()
                    || !report(Health::NotServing(format!(
                        "health check stream failed: {why}"
                    )))
                {
                    return;
                }
                if got_response {
                    backoff.reset();
                }
                tokio::time::sleep(backoff.next_delay()).await;
                if conn.is_closed() {
                    return;
                }
            }
        }
    }
}

async fn one_stream(
    conn: &Connection,
    target: &HealthTarget,
    report: &mut impl FnMut(Health) -> bool,
) -> StreamEnd {
    let failed = |why: String| StreamEnd::Failed(why, false);
    let uri = match http::Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.as_str())
        .path_and_query(WATCH_PATH)
        .build()
    {
        Ok(u) => u,
        Err(e) => return failed(format!("bad authority: {e}")),
    };
    let mut head = http::Request::new(());
    *head.method_mut() = Method::POST;
    *head.uri_mut() = uri;
    *head.version_mut() = http::Version::HTTP_2;
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
    let mut ready = match conn.send_request().ready().await {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let (response, mut send) = match ready.send_request(head, false) {
        Ok(x) => x,
        Err(e) => return failed(e.to_string()),
    };
    // The watch is a call on the connection for as long as it runs.
    let _call = conn.call_started();
    let mut buf = BytesMut::new();
    if let Err(s) = encode_message(
        &HealthCheckRequest {
            service: target.service.clone(),
        },
        None,
        usize::MAX,
        &mut buf,
    ) {
        return failed(s.message().to_string());
    }
    if let Err(e) = super::body::send_data(&mut send, buf.freeze(), true).await {
        return failed(e.to_string());
    }
    let resp = match response.await {
        Ok(r) => r,
        Err(e) => return failed(Status::from_h2_error(&e).message().to_string()),
    };
    let (parts, body) = resp.into_parts();
    let mut stream: Streaming<HealthCheckResponse> =
        if body.is_end_stream() || parts.status != http::StatusCode::OK {
            let status = Status::from_header_map(&parts.headers)
                .unwrap_or_else(|| Status::from_http_status(parts.status));
            Streaming::from_status(status)
        } else if let Some(status) = super::call::non_grpc_response(&parts) {
            Streaming::from_status(status)
        } else {
            Streaming::new_response(body, FrameDecoder::new(64 * 1024, None))
        };
    let mut got = false;
    loop {
        match stream.message().await {
            Ok(Some(m)) => {
                got = true;
                let health = match ServingStatus::try_from(m.status) {
                    Ok(ServingStatus::Serving) => Health::Serving,
                    Ok(other) => {
                        Health::NotServing(format!("health check: {}", other.as_str_name()))
                    }
                    Err(_) => {
                        Health::NotServing(format!("health check: unknown status {}", m.status))
                    }
                };
                if !report(health) {
                    return StreamEnd::Stop;
                }
            }
            Ok(None) => return StreamEnd::Failed("the server ended the Watch stream".into(), got),
            Err(s) if s.code() == Code::Unimplemented => return StreamEnd::Unimplemented,
            Err(s) => return StreamEnd::Failed(format!("{:?}: {}", s.code(), s.message()), got),
        }
    }
}
