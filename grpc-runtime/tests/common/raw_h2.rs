//! A RAW h2 server (h2::server directly, no gRPC layer) so client tests can control and
//! observe the exact wire, plus helpers for framing and test certificates.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Request};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// A test message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Echo {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(bytes = "vec", tag = "2")]
    pub blob: Vec<u8>,
}

pub fn echo(text: &str) -> Echo {
    Echo {
        text: text.to_string(),
        blob: Vec::new(),
    }
}

/// What one accepted stream looks like to a handler.
pub type Handler = Arc<
    dyn Fn(Request<RecvStream>, SendResponse<Bytes>) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync,
>;

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<RecvStream>, SendResponse<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |r, s| Box::pin(f(r, s)))
}

/// A running raw h2 server.
pub struct RawServer {
    pub addr: SocketAddr,
    /// Number of connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Request headers of every stream, in arrival order (servers built with a
    /// [`Handler`]; a [`ConnHandler`] records what it wants itself).
    pub requests: Arc<Mutex<Vec<http::request::Parts>>>,
}

/// Any connection a raw server serves: TCP, TLS over TCP, or a unix socket.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// One accepted HTTP/2 connection, as h2 hands it out.
pub type H2Connection = h2::server::Connection<Box<dyn Io>, Bytes>;

/// What a raw server does with each HTTP/2 connection, given its index (0 for the
/// first connection accepted): for tests that control connections (GOAWAY after the
/// first call, ...). Most tests give a per-stream [`Handler`] instead.
pub type ConnHandler =
    Arc<dyn Fn(usize, H2Connection) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

pub fn conn_handler<F, Fut>(f: F) -> ConnHandler
where
    F: Fn(usize, H2Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |n, c| Box::pin(f(n, c)))
}

/// How a raw server listens and handshakes.
#[derive(Default)]
pub struct RawServerOptions {
    /// h2's server settings (default: h2's defaults).
    pub h2: h2::server::Builder,
    /// TLS before HTTP/2 on every connection.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A raw h2 server on 127.0.0.1 (ephemeral port) passing every stream to `h`.
pub async fn raw_server(h: Handler) -> RawServer {
    raw_server_with(RawServerOptions::default(), h).await
}

/// A raw h2 server over TLS.
pub async fn raw_tls_server(h: Handler, acceptor: tokio_rustls::TlsAcceptor) -> RawServer {
    let options = RawServerOptions {
        tls: Some(acceptor),
        ..Default::default()
    };
    raw_server_with(options, h).await
}

/// [`raw_server`] with h2 settings or TLS.
pub async fn raw_server_with(options: RawServerOptions, h: Handler) -> RawServer {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let mut srv = raw_conn_server(options, streams(h, requests.clone())).await;
    srv.requests = requests;
    srv
}

/// A raw h2 server on 127.0.0.1 (ephemeral port) that hands each connection to `conn`.
pub async fn raw_conn_server(options: RawServerOptions, conn: ConnHandler) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = spawn_accept_loop(Listener::Tcp(listener), options, conn);
    RawServer {
        addr,
        connections,
        requests: Arc::default(),
    }
}

/// A raw h2 server on a unix socket at `path`; returns its connection count.
#[cfg(unix)]
pub async fn raw_unix_server(h: Handler, path: &std::path::Path) -> Arc<AtomicUsize> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let conn = streams(h, Arc::default());
    spawn_accept_loop(Listener::Unix(listener), RawServerOptions::default(), conn)
}

enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn accept(&self) -> Option<Box<dyn Io>> {
        match self {
            Listener::Tcp(l) => Some(Box::new(l.accept().await.ok()?.0)),
            #[cfg(unix)]
            Listener::Unix(l) => Some(Box::new(l.accept().await.ok()?.0)),
        }
    }
}

/// The one accept loop: counts connections, runs TLS (when set) and the h2 handshake
/// in each connection's own task, then `conn`.
fn spawn_accept_loop(
    listener: Listener,
    options: RawServerOptions,
    conn: ConnHandler,
) -> Arc<AtomicUsize> {
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    tokio::spawn(async move {
        while let Some(io) = listener.accept().await {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let (tls, h2, conn) = (options.tls.clone(), options.h2.clone(), conn.clone());
            tokio::spawn(async move {
                let io: Box<dyn Io> = match tls {
                    None => io,
                    Some(acceptor) => match acceptor.accept(io).await {
                        Ok(tls) => Box::new(tls),
                        Err(_) => return,
                    },
                };
                if let Ok(h2) = h2.handshake(io).await {
                    conn(n, h2).await;
                }
            });
        }
    });
    connections
}

/// A connection handler that passes every stream to `h`, recording its headers.
pub fn streams(h: Handler, requests: Arc<Mutex<Vec<http::request::Parts>>>) -> ConnHandler {
    conn_handler(move |_, mut conn| {
        let (h, requests) = (h.clone(), requests.clone());
        async move {
            while let Some(Ok((req, send))) = conn.accept().await {
                let (parts, body) = req.into_parts();
                requests.lock().unwrap().push(parts.clone());
                tokio::spawn((h)(Request::from_parts(parts, body), send));
            }
        }
    })
}

/// Serves one connection already accepted (h2's default settings): every stream goes
/// to `h`.
pub async fn serve_conn<T: Io>(io: T, h: Handler, requests: Arc<Mutex<Vec<http::request::Parts>>>) {
    let io: Box<dyn Io> = Box::new(io);
    if let Ok(h2) = h2::server::handshake(io).await {
        streams(h, requests)(0, h2).await;
    }
}

/// 5-byte gRPC framing.
pub fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.extend_from_slice(&[flag]);
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b.freeze()
}

pub fn frame_msg<M: prost::Message>(m: &M) -> Bytes {
    frame(0, &m.encode_to_vec())
}

/// Reads the whole request body.
pub async fn read_body(body: &mut RecvStream) -> Result<Vec<u8>, h2::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Splits a body into (flag, payload) frames.
pub fn unframe(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 5 {
        let flag = b[0];
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        b.advance(5);
        out.push((flag, b[..len].to_vec()));
        b.advance(len);
    }
    assert!(b.is_empty(), "trailing partial frame");
    out
}

/// Reads one framed message from a streaming request body (buffering across DATA frames).
pub struct FrameReader {
    pub body: RecvStream,
    buf: BytesMut,
}

impl FrameReader {
    pub fn new(body: RecvStream) -> Self {
        FrameReader {
            body,
            buf: BytesMut::new(),
        }
    }
    pub async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() >= 5 + len {
                    let flag = self.buf[0];
                    self.buf.advance(5);
                    let payload = self.buf.split_to(len).to_vec();
                    return Some((flag, payload));
                }
            }
            let chunk = self.body.data().await?.ok()?;
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}

pub fn response_headers() -> http::Response<()> {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

pub fn trailers(code: u32, msg: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(
        "grpc-status",
        HeaderValue::from_str(&code.to_string()).unwrap(),
    );
    if !msg.is_empty() {
        t.insert("grpc-message", HeaderValue::from_str(msg).unwrap());
    }
    t
}

/// Sends headers, the given messages (already framed) and OK trailers.
pub async fn respond(mut send: SendResponse<Bytes>, frames: Vec<Bytes>, code: u32, msg: &str) {
    let Ok(mut s) = send.send_response(response_headers(), false) else {
        return;
    };
    for f in frames {
        if s.send_data(f, false).is_err() {
            return;
        }
    }
    let _ = s.send_trailers(trailers(code, msg));
}

/// The name the servers of [`raw_tls_test_server`] are certified for (the interop
/// tests' `--server_host_override`).
pub const TEST_SERVER_NAME: &str = "foo.test.google.fr";

/// A raw h2 server over TLS with a certificate for [`TEST_SERVER_NAME`] from a new test
/// CA, offering `alpn`, and a client TLS configuration that trusts that CA and verifies
/// that name.
pub async fn raw_tls_test_server(
    h: Handler,
    alpn: &[&[u8]],
) -> (RawServer, grpc_runtime::ClientTlsConfig) {
    let (ca, cert, key) = super::pki::test_pki(&[TEST_SERVER_NAME]);
    let srv = raw_tls_server(h, tls_acceptor(&cert, &key, alpn)).await;
    let tls = grpc_runtime::ClientTlsConfig::new()
        .ca_certificate_pem(ca)
        .domain_name(TEST_SERVER_NAME);
    (srv, tls)
}

/// A TLS acceptor for the leaf certificate, advertising `alpn`.
pub fn tls_acceptor(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
