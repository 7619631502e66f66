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
    /// Number of TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Request headers of every stream, in arrival order.
    pub requests: Arc<Mutex<Vec<http::request::Parts>>>,
}

pub async fn raw_server(h: Handler) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_conn(tcp, h.clone(), r.clone()));
        }
    });
    RawServer {
        addr,
        connections,
        requests,
    }
}

pub async fn serve_conn<T>(io: T, h: Handler, requests: Arc<Mutex<Vec<http::request::Parts>>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((req, send))) = conn.accept().await {
        let (parts, body) = req.into_parts();
        requests.lock().unwrap().push(parts.clone());
        let req = Request::from_parts(parts, body);
        tokio::spawn((h)(req, send));
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

/// A raw h2 server over TLS.
pub async fn raw_tls_server(h: Handler, acceptor: tokio_rustls::TlsAcceptor) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_conn(tls, h, r).await;
                }
            });
        }
    });
    RawServer {
        addr,
        connections,
        requests,
    }
}

/// A raw h2 server on a unix socket at `path`.
#[cfg(unix)]
pub async fn raw_unix_server(h: Handler, path: &std::path::Path) -> Arc<AtomicUsize> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_conn(s, h.clone(), Arc::new(Mutex::new(Vec::new()))));
        }
    });
    connections
}
