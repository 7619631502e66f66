//! HTTP plumbing shared by what the server answers besides native gRPC: telling an
//! HTTP/2 connection from an HTTP/1.1 one by its first bytes, serving HTTP/1.1 with
//! hyper's server (`server::conn::http1`: there is no HTTP/1 parser of ours), and writing
//! a response body to an h2 stream within flow control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::tls::PeerCertificates;
#[cfg(feature = "grpc-web")]
use super::web;
use super::{ConnGuard, Shared, ABORT, FORCE, GRACEFUL, RUNNING};
use crate::latch::Latch;
use crate::transport::send::{Outgoing, SendError};

/// Default bound on what an HTTP/1.1 connection buffers (see
/// `GrpcWebConfig::http1_max_buf_size`).
pub(crate) const HTTP1_MAX_BUF_SIZE: usize = 16 * 1024;

/// Default bound on the header fields of an HTTP/1.1 request.
pub(crate) const HTTP1_MAX_HEADERS: usize = 100;

/// An error of any type, as tower services and `http_body` bodies report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body of any type: what [`GrpcRoutes`](super::GrpcRoutes) answers with (and,
/// inside the server, a gRPC-Web body or the fallback service's). The default is an
/// empty body (tower-http's `TimeoutLayer` builds its 408 answer with it).
///
/// ```
/// use http_body::Body as _;
///
/// let body = grpc_runtime::server::BoxBody::new(http_body_util::Full::new(bytes::Bytes::from("hi")));
/// assert_eq!(body.size_hint().exact(), Some(2));
/// assert!(grpc_runtime::server::BoxBody::default().is_end_stream());
/// ```
pub struct BoxBody(Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send>>);

impl BoxBody {
    /// Boxes `body`, its error type erased.
    pub fn new<B>(body: B) -> BoxBody
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        BoxBody(Box::pin(MapErr { body }))
    }
}

impl Default for BoxBody {
    fn default() -> Self {
        BoxBody::new(http_body_util_empty::Empty)
    }
}

impl std::fmt::Debug for BoxBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxBody").finish_non_exhaustive()
    }
}

impl http_body::Body for BoxBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// An empty body, without a dependency for it.
mod http_body_util_empty {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;

    pub(super) struct Empty;

    impl http_body::Body for Empty {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }

        fn is_end_stream(&self) -> bool {
            true
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(0)
        }
    }
}

/// Boxes a body, its error type erased.
pub(crate) fn box_body<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxBody::new(body)
}

pin_project_lite::pin_project! {
    /// A body whose errors are boxed.
    struct MapErr<B> {
        #[pin]
        body: B,
    }
}

impl<B> http_body::Body for MapErr<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.project()
            .body
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Answers one request of an HTTP/1.1 connection: the fallback service takes what is
/// not gRPC(-Web); gRPC-Web answers the rest (its errors included: a native gRPC
/// content-type over HTTP/1.1 gets HTTP 415).
fn answer_http1(
    req: http::Request<hyper::body::Incoming>,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: &Arc<Shared>,
    force: &Arc<Latch>,
) -> Pin<Box<dyn std::future::Future<Output = http::Response<BoxBody>> + Send>> {
    #[cfg(feature = "tower")]
    if let Some(fallback) = &shared.fallback {
        if super::fallback::wants(&req, shared) {
            return Box::pin(super::fallback::serve_http1(
                fallback,
                req,
                peer,
                peer_certs.as_ref(),
            ));
        }
    }
    #[cfg(feature = "tower")]
    if let Some(layered) = &shared.layered {
        if shared.web.is_some() && web::is_web_request(&req) {
            return Box::pin(super::layer::call(
                layered,
                req.map(super::fallback::RequestBody::http1),
                peer,
                peer_certs,
                Arc::clone(shared),
                Arc::clone(force),
            ));
        }
    }
    #[cfg(feature = "grpc-web")]
    {
        let answer = web::serve_http1_request(req, peer, peer_certs, shared, force);
        Box::pin(async move { answer.await.map(box_body) })
    }
    #[cfg(not(feature = "grpc-web"))]
    {
        let _ = (req, peer, peer_certs, force);
        let mut resp = http::Response::new(box_body(super::fallback::RequestBody::empty()));
        *resp.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
        Box::pin(std::future::ready(resp))
    }
}

/// Writes `data` within HTTP/2 flow control (the loop of `transport::send`); a stream that
/// can no longer send is reported as CANCEL.
pub(crate) async fn write_h2(
    stream: &mut h2::SendStream<Bytes>,
    data: Bytes,
) -> Result<(), h2::Error> {
    let mut out = Outgoing::new(data, false);
    std::future::poll_fn(|cx| out.poll_send(stream, cx))
        .await
        .map_err(|e| match e {
            SendError::Closed => h2::Error::from(h2::Reason::CANCEL),
            SendError::H2(e) => e,
        })
}

/// The client preface of HTTP/2 (RFC 9113 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the first bytes of a plaintext connection (or a TLS one that negotiated no
/// ALPN) and serves it as HTTP/2 when they are the HTTP/2 preface, as HTTP/1.1 otherwise.
pub(crate) async fn serve_sniffed<IO>(
    mut io: IO,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    guard: ConnGuard,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = [0u8; 24];
    let mut n = 0;
    let limit = shared
        .conn_mgmt
        .header_read_timeout
        .unwrap_or(super::DEFAULT_HEADER_READ_TIMEOUT);
    let sniff = async {
        while n < PREFACE.len() && buf[..n] == PREFACE[..n] {
            match io.read(&mut buf[n..]).await {
                Ok(0) => return Err("connection closed before its first request".to_string()),
                Ok(k) => n += k,
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        Ok(())
    };
    let sniffed = tokio::select! {
        r = tokio::time::timeout(limit, sniff) => r.unwrap_or_else(|_| Err("no request within the header read timeout".into())),
        _ = guard.past(RUNNING) => Err("server shutting down".into()),
    };
    if let Err(reason) = sniffed {
        tracing::debug!(?peer, "closing connection: {reason}");
        return;
    }
    let http2 = n == PREFACE.len() && buf == *PREFACE;
    let io = Rewind {
        prefix: buf,
        start: 0,
        end: n,
        io,
    };
    if http2 {
        super::conn::serve_connection(io, peer, peer_certs, shared, guard).await;
    } else {
        serve_http1(io, peer, peer_certs, shared, guard).await;
    }
}

/// Serves an HTTP/1.1 connection (gRPC-Web and the fallback service) with hyper's
/// server.
pub(crate) async fn serve_http1<IO>(
    io: IO,
    peer: Option<SocketAddr>,
    peer_certs: Option<PeerCertificates>,
    shared: Arc<Shared>,
    guard: ConnGuard,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "grpc-web")]
    let (max_buf_size, max_headers) = shared
        .web
        .as_deref()
        .map_or((HTTP1_MAX_BUF_SIZE, HTTP1_MAX_HEADERS), |cfg| {
            (cfg.http1_max_buf_size, cfg.http1_max_headers)
        });
    #[cfg(not(feature = "grpc-web"))]
    let (max_buf_size, max_headers) = (HTTP1_MAX_BUF_SIZE, HTTP1_MAX_HEADERS);
    let force = Arc::new(Latch::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.conn_mgmt.header_read_timeout)
        .max_buf_size(max_buf_size)
        .max_headers(max_headers)
        .keep_alive(true);
    let service = {
        let (shared, force) = (Arc::clone(&shared), Arc::clone(&force));
        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let answer = answer_http1(req, peer, peer_certs.clone(), &shared, &force);
            async move { Ok::<_, Infallible>(answer.await) }
        })
    };
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stage = RUNNING;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(?peer, "HTTP/1.1 connection ended: {e}");
                }
                break;
            }
            now = guard.past(stage), if stage < ABORT => {
                stage = now;
                if stage >= GRACEFUL {
                    // Closes the connection after the request in progress.
                    conn.as_mut().graceful_shutdown();
                }
                if stage >= FORCE {
                    force.set(1);
                }
                if stage >= ABORT {
                    break;
                }
            }
        }
    }
}

/// A transport whose first bytes were read already (to sniff the protocol) and are
/// replayed before the rest.
struct Rewind<IO> {
    prefix: [u8; 24],
    start: usize,
    end: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.start < self.end {
            let n = (self.end - self.start).min(buf.remaining());
            let start = self.start;
            buf.put_slice(&self.prefix[start..start + n]);
            self.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
