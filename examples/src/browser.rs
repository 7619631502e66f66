//! The browser example (`cargo run -p examples --bin grpc-web-browser`): a web page calls
//! a gRPC service through gRPC-Web, with the Connect-ES gRPC-Web transport.
//!
//! Two listeners:
//! - our [`Server`], with the `BrowserDemo` service (`proto/browser/browser.proto`), on one
//!   port for both native gRPC (HTTP/2) and gRPC-Web (HTTP/1.1 and HTTP/2), gRPC-Web turned
//!   on with [`ServerBuilder::grpc_web`](grpc_runtime::server::ServerBuilder::grpc_web);
//! - a tiny static file server ([`serve_page`]) for the page (`web/index.html`) and its
//!   bundled script (`web/dist/app.js`, built from `web/src/app.ts` by esbuild; see
//!   `web/README.md`), both compiled into the binary.
//!
//! The page is on another port, so it is another origin: every call is a cross-origin
//! request, which the browser preflights, and the gRPC server answers it only because the
//! page's origin is in its CORS list ([`page_origins`]). That is what a real deployment
//! looks like when the page comes from a CDN or another server. `scripts/browser-test.sh`
//! drives the page in headless Chromium and checks what it shows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use grpc_runtime::server::{GrpcWebConfig, Server, ServerBuilder};
use grpc_runtime::{BoxStream, Code, Request, Response, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pb::browser::browser_demo_server::{BrowserDemo, BrowserDemoServer};
use crate::pb::browser::{CountReply, CountRequest, EchoReply, EchoRequest, FailRequest};

/// The page, with `{{GRPC_PORT}}` standing for the gRPC server's port.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// The page's script: `web/src/app.ts` and the code protoc-gen-es generates from
/// `browser.proto`, with Connect-ES, bundled by esbuild (`scripts/browser-test.sh`
/// rebuilds it and fails if it differs from this committed copy).
pub const APP_JS: &str = include_str!("../web/dist/app.js");

/// Most replies one `Count` call may ask for.
pub const MAX_COUNT: u32 = 100;

/// Longest pause between two `Count` replies, in milliseconds.
pub const MAX_INTERVAL_MS: u32 = 1000;

/// The `BrowserDemo` service.
#[derive(Debug, Default, Clone)]
pub struct Demo;

impl BrowserDemo for Demo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let message = request.into_inner().message;
        tracing::info!(target: "examples::browser", "Echo({message:?})");
        Ok(Response::new(EchoReply {
            message: format!("echo: {message}"),
        }))
    }

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<BoxStream<CountReply>>, Status> {
        let req = request.into_inner();
        if req.count > MAX_COUNT || req.interval_ms > MAX_INTERVAL_MS {
            return Err(Status::invalid_argument(format!(
                "count must be at most {MAX_COUNT} and interval_ms at most {MAX_INTERVAL_MS}"
            )));
        }
        tracing::info!(target: "examples::browser", count = req.count, interval_ms = req.interval_ms, fail_code = req.fail_code, "Count");
        let interval = Duration::from_millis(u64::from(req.interval_ms));
        let end = match Code::from_i32(req.fail_code) {
            Code::Ok => None,
            code => Some(Status::new(code, req.fail_message)),
        };
        // State: (next index, the status to end with once the replies are out).
        let replies = stream::unfold((1u32, req.count, end), move |(i, count, end)| async move {
            if i <= count {
                tokio::time::sleep(interval).await;
                return Some((Ok(CountReply { index: i }), (i + 1, count, end)));
            }
            end.map(|status| (Err(status), (i, count, None)))
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<EchoReply>, Status> {
        let req = request.into_inner();
        let code = match Code::from_i32(req.code) {
            // OK is not a failure; anything out of range is UNKNOWN already.
            Code::Ok => Code::Unknown,
            code => code,
        };
        tracing::info!(target: "examples::browser", code = code.as_str(), "Fail");
        Err(Status::new(code, req.message))
    }
}

/// The origins the page is served from, as browsers send them in `Origin`: the page
/// listener's address and, on a loopback address, `localhost` with the same port.
pub fn page_origins(page: SocketAddr) -> Vec<String> {
    let mut origins = vec![format!("http://{page}")];
    if page.ip().is_loopback() || page.ip().is_unspecified() {
        for host in ["localhost", "127.0.0.1"] {
            let origin = format!("http://{host}:{}", page.port());
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    origins
}

/// The gRPC server of the example: `BrowserDemo`, with gRPC-Web on and CORS limited to
/// the page's origins.
///
/// ```
/// let page: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
/// let builder = examples::browser::grpc_server(page);
/// # drop(builder);
/// ```
pub fn grpc_server(page: SocketAddr) -> ServerBuilder {
    Server::builder()
        .add_service(BrowserDemoServer::new(Demo))
        .grpc_web(GrpcWebConfig::new().allow_origins(page_origins(page)))
}

/// Serves the page on `listener` until the task is dropped: `GET /` (the page, pointing
/// at `grpc_port`), `GET /app.js`; anything else 404 (405 for other methods). One request
/// per connection (`connection: close`), heads within 8 KiB and 10 s.
pub async fn serve_page(listener: TcpListener, grpc_port: u16) {
    let index: Arc<str> = INDEX_HTML
        .replace("{{GRPC_PORT}}", &grpc_port.to_string())
        .into();
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => {
                let index = Arc::clone(&index);
                tokio::spawn(async move {
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), answer_page(sock, &index));
                    match answer.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(target: "examples::browser", %peer, "page request failed: {e}")
                        }
                        Err(_) => {
                            tracing::debug!(target: "examples::browser", %peer, "page request timed out")
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(target: "examples::browser", "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer_page(mut sock: TcpStream, index: &str) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 8 * 1024 {
            return respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            )
            .await;
        }
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    tracing::info!(target: "examples::browser", "{method} {path}");
    match (method, path) {
        ("GET", "/" | "/index.html") => {
            respond(
                &mut sock,
                "200 OK",
                "text/html; charset=utf-8",
                index.as_bytes(),
            )
            .await
        }
        ("GET", "/app.js") => {
            respond(
                &mut sock,
                "200 OK",
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes(),
            )
            .await
        }
        ("GET", _) => respond(&mut sock, "404 Not Found", "text/plain", b"not found\n").await,
        _ => {
            respond(
                &mut sock,
                "405 Method Not Allowed",
                "text/plain",
                b"GET only\n",
            )
            .await
        }
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}
