//! Shared helpers for the integration tests: a hand-written stand-in of a
//! generated service (`test.Echo`), a server launcher on an ephemeral port,
//! and a raw h2 client that speaks gRPC bytes directly; [`raw_h2`]: a raw h2
//! server for client tests; [`pki`]: test certificates.
#![allow(dead_code)]

pub mod pki;
pub mod raw_h2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use grpc_runtime::server::{Server, ServerBuilder, ServerCall, Service};
use grpc_runtime::{
    BoxFuture, BoxStream, MetadataMap, MethodDescriptor, Request, Response, Status, Streaming,
};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(int32, tag = "2")]
    pub count: i32,
    #[prost(int64, tag = "3")]
    pub sleep_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// Stand-in for what the generator emits for `service Echo`.
pub mod echo_server {
    use super::*;

    pub const SERVICE_NAME: &str = "test.Echo";
    pub const METHODS: &[MethodDescriptor] = &[
        MethodDescriptor {
            name: "Unary",
            full_path: "/test.Echo/Unary",
            client_streaming: false,
            server_streaming: false,
        },
        MethodDescriptor {
            name: "ServerStream",
            full_path: "/test.Echo/ServerStream",
            client_streaming: false,
            server_streaming: true,
        },
        MethodDescriptor {
            name: "ClientStream",
            full_path: "/test.Echo/ClientStream",
            client_streaming: true,
            server_streaming: false,
        },
        MethodDescriptor {
            name: "Bidi",
            full_path: "/test.Echo/Bidi",
            client_streaming: true,
            server_streaming: true,
        },
        MethodDescriptor {
            name: "WaitCancel",
            full_path: "/test.Echo/WaitCancel",
            client_streaming: false,
            server_streaming: false,
        },
        MethodDescriptor {
            name: "Panic",
            full_path: "/test.Echo/Panic",
            client_streaming: false,
            server_streaming: false,
        },
        MethodDescriptor {
            name: "NotInTrait",
            full_path: "/test.Echo/NotInTrait",
            client_streaming: false,
            server_streaming: false,
        },
    ];

    pub trait Echo: Send + Sync + 'static {
        fn unary(
            &self,
            request: Request<EchoRequest>,
        ) -> impl std::future::Future<Output = Result<Response<EchoReply>, Status>> + Send;
        fn server_stream(
            &self,
            request: Request<EchoRequest>,
        ) -> impl std::future::Future<Output = Result<Response<BoxStream<EchoReply>>, Status>> + Send;
        fn client_stream(
            &self,
            request: Request<Streaming<EchoRequest>>,
        ) -> impl std::future::Future<Output = Result<Response<EchoReply>, Status>> + Send;
        fn bidi(
            &self,
            request: Request<Streaming<EchoRequest>>,
        ) -> impl std::future::Future<Output = Result<Response<BoxStream<EchoReply>>, Status>> + Send;
        fn wait_cancel(
            &self,
            request: Request<EchoRequest>,
        ) -> impl std::future::Future<Output = Result<Response<EchoReply>, Status>> + Send;
        fn panic(
            &self,
            request: Request<EchoRequest>,
        ) -> impl std::future::Future<Output = Result<Response<EchoReply>, Status>> + Send;
    }

    pub struct EchoServer<T> {
        inner: Arc<T>,
    }

    impl<T: Echo> EchoServer<T> {
        pub fn new(inner: T) -> Self {
            EchoServer {
                inner: Arc::new(inner),
            }
        }
    }

    impl<T: Echo> Service for EchoServer<T> {
        fn name(&self) -> &'static str {
            SERVICE_NAME
        }
        fn methods(&self) -> &'static [MethodDescriptor] {
            METHODS
        }
        fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
            let inner = Arc::clone(&self.inner);
            match method {
                "Unary" => call.unary(move |r| async move { inner.unary(r).await }),
                "ServerStream" => {
                    call.server_streaming(move |r| async move { inner.server_stream(r).await })
                }
                "ClientStream" => {
                    call.client_streaming(move |r| async move { inner.client_stream(r).await })
                }
                "Bidi" => call.bidi_streaming(move |r| async move { inner.bidi(r).await }),
                "WaitCancel" => call.unary(move |r| async move { inner.wait_cancel(r).await }),
                "Panic" => call.unary(move |r| async move { inner.panic(r).await }),
                _ => call.unimplemented(),
            }
        }
    }
}

/// The test implementation. `events` reports what handlers observed.
pub struct TestEcho {
    pub events: mpsc::UnboundedSender<String>,
}

impl echo_server::Echo for TestEcho {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let ctx = request.context().clone();
        let md = request.metadata().clone();
        let req = request.into_inner();
        if req.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(req.sleep_ms as u64)).await;
        }
        if let Some(code) = req.message.strip_prefix("fail:") {
            let code: i32 = code.parse().unwrap_or(2);
            return Err(Status::new(code.into(), "failed as asked: 100% sure\n"));
        }
        if req.message == "details" {
            use grpc_runtime::rpc_types::{bad_request, BadRequest, ErrorDetail};
            return Err(Status::with_details(
                grpc_runtime::Code::InvalidArgument,
                "bad name",
                vec![ErrorDetail::BadRequest(BadRequest {
                    field_violations: vec![bad_request::FieldViolation {
                        field: "name".into(),
                        description: "must not be empty".into(),
                        ..Default::default()
                    }],
                })],
            ));
        }
        if req.message == "peer?" {
            let p = ctx.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            return Ok(Response::new(EchoReply { message: p }));
        }
        if req.message == "peer-certs?" {
            let n = ctx.peer_certificates().map(|c| c.len()).unwrap_or(0);
            return Ok(Response::new(EchoReply {
                message: format!("certs={n}"),
            }));
        }
        if req.message == "deadline?" {
            let d = grpc_runtime::current_deadline()
                .map(|d| d.remaining().as_millis())
                .unwrap_or(0);
            return Ok(Response::new(EchoReply {
                message: format!("remaining={d}"),
            }));
        }
        if req.message == "early-headers" {
            let mut h = MetadataMap::new();
            h.insert("x-early", "yes").unwrap();
            ctx.send_headers(h).unwrap();
        }
        // Echo selected metadata back as header and trailer.
        let mut resp = Response::new(EchoReply {
            message: req.message,
        });
        if let Some(v) = md.get("x-echo") {
            resp.metadata_mut().insert("x-echo-header", v).unwrap();
        }
        let mut trailers = MetadataMap::new();
        for b in md.get_all_bin("x-data-bin") {
            trailers.append_bin("x-data-bin", b.clone()).unwrap();
        }
        trailers.insert("x-trailer", "t1").unwrap();
        ctx.add_trailers(trailers);
        Ok(resp)
    }

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<BoxStream<EchoReply>>, Status> {
        let ctx = request.context().clone();
        let req = request.into_inner();
        let n = req.count;
        let no_compress_odd = req.message == "alternate";
        let fail_at_end = req.message == "fail-at-end";
        let flow = (req.message == "flow").then(|| self.events.clone());
        if req.message == "ready" {
            // every message ready at once (no task, no channel)
            let msgs = (0..n).map(|i| {
                Ok(EchoReply {
                    message: format!("ready-{i}-{}", "z".repeat(200)),
                })
            });
            return Ok(Response::new(Box::pin(futures_util::stream::iter(msgs))));
        }
        let s = async_stream(
            n,
            ctx,
            no_compress_odd,
            req.message.clone(),
            fail_at_end,
            flow,
        );
        Ok(Response::new(s))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut s = request.into_inner();
        let mut parts = Vec::new();
        while let Some(m) = s.message().await? {
            if m.message == "stop" {
                return Ok(Response::new(EchoReply {
                    message: "stopped".into(),
                }));
            }
            parts.push(m.message);
        }
        Ok(Response::new(EchoReply {
            message: parts.join(","),
        }))
    }

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<BoxStream<EchoReply>>, Status> {
        let mut s = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<EchoReply, Status>>(4);
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                match s.message().await {
                    Ok(Some(m)) => {
                        if tx
                            .send(Ok(EchoReply {
                                message: format!("echo:{}", m.message),
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = events.send(format!("bidi-read-error:{:?}", e.code()));
                        break;
                    }
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream(rx)) as BoxStream<EchoReply>
        ))
    }

    async fn wait_cancel(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        let ctx = request.context().clone();
        let _ = self.events.send("started".into());
        let guard = DropGuard(self.events.clone());
        tokio::select! {
            st = ctx.cancelled() => {
                let _ = self.events.send(format!("cancelled:{:?}", st.code()));
            }
            _ = tokio::time::sleep(Duration::from_secs(20)) => {}
        }
        drop(guard);
        Err(Status::cancelled("bye"))
    }

    async fn panic(&self, _request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        panic!("boom")
    }
}

struct DropGuard(mpsc::UnboundedSender<String>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.0.send("handler-dropped-or-done".into());
    }
}

pub struct ReceiverStream<T>(pub mpsc::Receiver<T>);
impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn async_stream(
    n: i32,
    ctx: grpc_runtime::ServerContext,
    alternate: bool,
    text: String,
    fail_at_end: bool,
    flow: Option<mpsc::UnboundedSender<String>>,
) -> BoxStream<EchoReply> {
    let (tx, rx) = mpsc::channel::<Result<EchoReply, Status>>(1);
    let _ = &ctx;
    tokio::spawn(async move {
        for i in 0..n {
            let m = EchoReply {
                message: format!("{text}-{i}-{}", "z".repeat(200)),
            };
            if tx.send(Ok(m)).await.is_err() {
                return;
            }
            if let Some(ev) = &flow {
                let _ = ev.send(format!("produced:{i}"));
            }
        }
        if fail_at_end {
            let _ = tx.send(Err(Status::aborted("stream failed at end"))).await;
        }
    });
    // The switch is read when the server encodes a message, so toggle it
    // right before yielding each message.
    if alternate {
        let s = ToggleStream { rx, i: 0, ctx };
        return Box::pin(s);
    }
    Box::pin(ReceiverStream(rx))
}

/// Stream that toggles per-message compression exactly before yielding
/// message i (even: compressed, odd: not).
struct ToggleStream {
    rx: mpsc::Receiver<Result<EchoReply, Status>>,
    i: usize,
    ctx: grpc_runtime::ServerContext,
}
impl futures_core::Stream for ToggleStream {
    type Item = Result<EchoReply, Status>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let r = self.rx.poll_recv(cx);
        if let std::task::Poll::Ready(Some(_)) = &r {
            let i = self.i;
            self.ctx.set_message_compression(i % 2 == 0);
            self.i += 1;
        }
        r
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<String>,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn next_event(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }
}

pub async fn start(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> TestServer {
    let (etx, erx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = configure(
        Server::builder().add_service(echo_server::EchoServer::new(TestEcho { events: etx })),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(builder.serve_with_incoming_shutdown(listener, async {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        events: erx,
        shutdown: Some(tx),
        handle,
    }
}

/// Serves `builder` on 127.0.0.1 (an ephemeral port) until the test's runtime ends: for
/// servers of other services than Echo ([`start`] adds Echo and stops when dropped).
pub async fn serve(builder: ServerBuilder) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(builder.serve_with_incoming(listener));
    addr
}

// ---------------------------------------------------------------- raw h2 client

pub type H2 = h2::client::SendRequest<Bytes>;

pub async fn connect(addr: SocketAddr) -> H2 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A gRPC request head for `path` with the standard headers plus `extra`.
pub fn grpc_head(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// Frames one message (flag 0).
pub fn frame<M: Message>(m: &M) -> Bytes {
    let body = m.encode_to_vec();
    frame_raw(0, &body)
}

pub fn frame_raw(flag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(flag);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Everything a raw call received.
#[derive(Debug)]
pub struct RawResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    /// True if the response HEADERS carried END_STREAM (Trailers-Only).
    pub headers_end_stream: bool,
    pub data: Bytes,
    /// Number of non-empty DATA frames the body came in.
    pub data_frames: usize,
    pub trailers: Option<http::HeaderMap>,
    pub error: Option<h2::Error>,
}

impl RawResponse {
    /// grpc-status from trailers, or from the headers for Trailers-Only.
    pub fn grpc_status(&self) -> Option<String> {
        let from = self
            .trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"));
        from.map(|v| v.to_str().unwrap().to_string())
    }
    pub fn grpc_message(&self) -> Option<String> {
        let from = self
            .trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| self.headers.get("grpc-message"));
        from.map(|v| v.to_str().unwrap().to_string())
    }
    /// Splits `data` into (flag, payload) messages.
    pub fn messages(&self) -> Vec<(u8, Bytes)> {
        let mut out = Vec::new();
        let mut d = self.data.clone();
        while d.len() >= 5 {
            let flag = d[0];
            let len = u32::from_be_bytes([d[1], d[2], d[3], d[4]]) as usize;
            let payload = d.slice(5..5 + len);
            out.push((flag, payload));
            d = d.slice(5 + len..);
        }
        assert!(d.is_empty(), "trailing partial message");
        out
    }
}

/// Sends a request with `body` (then END_STREAM) and reads everything back.
pub async fn call(client: &mut H2, head: http::Request<()>, body: &[Bytes]) -> RawResponse {
    let mut client = client.clone().ready().await.unwrap();
    let (resp, mut send) = client.send_request(head, false).unwrap();
    for (i, b) in body.iter().enumerate() {
        send.send_data(b.clone(), i + 1 == body.len()).unwrap();
    }
    if body.is_empty() {
        send.send_data(Bytes::new(), true).unwrap();
    }
    read_response(resp).await
}

pub async fn read_response(resp: h2::client::ResponseFuture) -> RawResponse {
    read_response_from(resp.await.unwrap()).await
}

pub async fn read_response_from(resp: http::Response<h2::RecvStream>) -> RawResponse {
    let (parts, mut body) = resp.into_parts();
    let headers_end_stream = body.is_end_stream();
    let mut data = BytesMut::new();
    let mut data_frames = 0;
    let mut error = None;
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                data_frames += usize::from(!c.is_empty());
                data.extend_from_slice(&c);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let trailers = if error.is_none() {
        body.trailers().await.unwrap_or(None)
    } else {
        None
    };
    RawResponse {
        status: parts.status,
        headers: parts.headers,
        headers_end_stream,
        data: data.freeze(),
        data_frames,
        trailers,
        error,
    }
}

pub fn decode<M: Message + Default>(payload: &Bytes) -> M {
    M::decode(payload.clone()).unwrap()
}
