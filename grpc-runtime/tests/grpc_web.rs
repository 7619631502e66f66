//! gRPC-Web over real sockets: raw HTTP/1.1 requests on a TcpStream (a minimal client
//! written here: request line, headers, chunked or sized bodies) and gRPC-Web over HTTP/2
//! (h2's client), on the same port as native gRPC.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use grpc_runtime::server::{GrpcWebConfig, ServerCall, Service};
use grpc_runtime::{BoxFuture, BoxStream, MethodDescriptor, Request, Response};
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ------------------------------------------------------------------ a paced stream

/// `test.Paced/Stream`: one message, then waits for `go` before a second and the end.
struct Paced(Arc<Notify>);

const PACED: &[MethodDescriptor] = &[MethodDescriptor {
    name: "Stream",
    full_path: "/test.Paced/Stream",
    client_streaming: false,
    server_streaming: true,
}];

impl Service for Paced {
    fn name(&self) -> &'static str {
        "test.Paced"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        PACED
    }
    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture<()> {
        let go = Arc::clone(&self.0);
        call.server_streaming(move |_req: Request<EchoRequest>| async move {
            let s = futures_util::stream::unfold(0, move |i| {
                let go = Arc::clone(&go);
                async move {
                    match i {
                        0 => Some((
                            Ok(EchoReply {
                                message: "first".into(),
                            }),
                            1,
                        )),
                        1 => {
                            go.notified().await;
                            Some((
                                Ok(EchoReply {
                                    message: "second".into(),
                                }),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            Ok(Response::new(Box::pin(s) as BoxStream<EchoReply>))
        })
    }
}

async fn start_web(config: GrpcWebConfig) -> (TestServer, Arc<Notify>) {
    let go = Arc::new(Notify::new());
    let paced = Paced(Arc::clone(&go));
    let server = start(move |b| b.add_service(paced).grpc_web(config)).await;
    (server, go)
}

// ------------------------------------------------------------------ HTTP/1.1 client

struct H1 {
    io: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: http::HeaderMap,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
    }
}

impl H1 {
    async fn connect(addr: std::net::SocketAddr) -> H1 {
        H1 {
            io: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
    }

    async fn read_head(&mut self) -> Head {
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
        let status = line[9..12].parse().unwrap();
        let mut headers = http::HeaderMap::new();
        loop {
            line.clear();
            self.io.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.append(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
        Head { status, headers }
    }

    /// One chunk of a chunked body; `None` at its end.
    async fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        let size = usize::from_str_radix(line.trim_end(), 16)
            .unwrap_or_else(|_| panic!("chunk size {line:?}"));
        let mut data = vec![0; size + 2];
        self.io.read_exact(&mut data).await.unwrap();
        data.truncate(size);
        (size > 0).then_some(data)
    }

    async fn read_body(&mut self, head: &Head) -> Vec<u8> {
        if head.chunked() {
            let mut out = Vec::new();
            while let Some(c) = self.read_chunk().await {
                out.extend_from_slice(&c);
            }
            out
        } else {
            let len: usize = head
                .get("content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            let mut out = vec![0; len];
            self.io.read_exact(&mut out).await.unwrap();
            out
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> (Head, Vec<u8>) {
        self.send(request).await;
        let head = self.read_head().await;
        let body = self.read_body(&head).await;
        (head, body)
    }
}

/// A gRPC-Web request over HTTP/1.1 with a sized body.
fn post(path: &str, content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

fn echo_frame(message: &str) -> Bytes {
    frame(&EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    })
}

/// A gRPC-Web body: the messages, then the trailers of the 0x80 frame (if any).
fn parse_web(body: &[u8]) -> (Vec<EchoReply>, Option<http::HeaderMap>) {
    let mut msgs = Vec::new();
    let mut trailers = None;
    let mut d = body;
    while !d.is_empty() {
        assert!(trailers.is_none(), "data after the trailer frame");
        assert!(d.len() >= 5, "partial frame");
        let flag = d[0];
        let len = u32::from_be_bytes([d[1], d[2], d[3], d[4]]) as usize;
        let payload = &d[5..5 + len];
        if flag & 0x80 != 0 {
            let mut h = http::HeaderMap::new();
            for line in std::str::from_utf8(payload)
                .unwrap()
                .split("\r\n")
                .filter(|l| !l.is_empty())
            {
                let (k, v) = line.split_once(':').unwrap();
                assert_eq!(k, k.to_ascii_lowercase(), "trailer names are lower-case");
                h.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.trim().parse().unwrap(),
                );
            }
            trailers = Some(h);
        } else {
            assert_eq!(flag, 0);
            msgs.push(EchoReply::decode(payload).unwrap());
        }
        d = &d[5 + len..];
    }
    (msgs, trailers)
}

/// Decodes a text-mode body chunk by chunk: each chunk must decode on its own.
fn decode_text_chunks(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend(B64.decode(c).unwrap_or_else(|e| {
            panic!(
                "chunk {:?} not decodable alone: {e}",
                String::from_utf8_lossy(c)
            )
        }));
    }
    out
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn unary_over_http1_with_metadata_and_trailers() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut c = H1::connect(server.addr).await;
    let data_bin = B64.encode([0u8, 1, 2, 255]);
    let (head, body) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web+proto",
            &[("x-echo", "hello"), ("x-data-bin", &data_bin)],
            &echo_frame("hi"),
        ))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("content-type"), Some("application/grpc-web+proto"));
    assert_eq!(head.get("x-echo-header"), Some("hello"));
    assert_eq!(head.get("grpc-status"), None, "not Trailers-Only");
    let (msgs, trailers) = parse_web(&body);
    assert_eq!(
        msgs,
        vec![EchoReply {
            message: "hi".into()
        }]
    );
    let t = trailers.expect("trailer frame");
    assert_eq!(t.get("grpc-status").unwrap(), "0");
    assert_eq!(t.get("x-trailer").unwrap(), "t1");
    let bin = t.get("x-data-bin").unwrap().to_str().unwrap();
    assert_eq!(
        B64.decode(bin)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(bin))
            .unwrap(),
        [0u8, 1, 2, 255]
    );

    // Keep-alive: a second call on the same connection.
    let (head, body) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &echo_frame("again"),
        ))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        parse_web(&body).0,
        vec![EchoReply {
            message: "again".into()
        }]
    );
}

#[tokio::test]
async fn server_streaming_chunks_arrive_before_the_end() {
    let (server, go) = start_web(GrpcWebConfig::new()).await;
    for text in [false, true] {
        let mut c = H1::connect(server.addr).await;
        let (ct, body) = if text {
            (
                "application/grpc-web-text",
                B64.encode(echo_frame("x")).into_bytes(),
            )
        } else {
            ("application/grpc-web+proto", echo_frame("x").to_vec())
        };
        c.send(&post("/test.Paced/Stream", ct, &[], &body)).await;
        let head = tokio::time::timeout(Duration::from_secs(5), c.read_head())
            .await
            .expect("head before the end");
        assert_eq!(head.status, 200);
        assert!(head.chunked());
        // The first message arrives while the handler still waits for `go`.
        let first = tokio::time::timeout(Duration::from_secs(5), c.read_chunk())
            .await
            .expect("first chunk")
            .unwrap();
        let first = if text {
            decode_text_chunks(&[first])
        } else {
            first
        };
        let (msgs, trailers) = parse_web(&first);
        assert_eq!(
            msgs,
            vec![EchoReply {
                message: "first".into()
            }]
        );
        assert!(trailers.is_none(), "the stream is not over yet");
        go.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = c.read_chunk().await {
            rest.push(chunk);
        }
        let rest = if text {
            decode_text_chunks(&rest)
        } else {
            rest.concat()
        };
        let (msgs, trailers) = parse_web(&rest);
        assert_eq!(
            msgs,
            vec![EchoReply {
                message: "second".into()
            }]
        );
        assert_eq!(trailers.unwrap().get("grpc-status").unwrap(), "0");
    }
}

#[tokio::test]
async fn text_mode_request_split_at_odd_boundaries() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let text = B64.encode(echo_frame("split me anywhere, please"));
    for cuts in [vec![1usize, 2, 3], vec![5, 6, 13], vec![7, 11, 22, 23]] {
        let mut c = H1::connect(server.addr).await;
        c.send(b"POST /test.Echo/Unary HTTP/1.1\r\nhost: t\r\ncontent-type: application/grpc-web-text\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&text.len())) {
            let piece = &text.as_bytes()[last..cut];
            c.send(format!("{:x}\r\n", piece.len()).as_bytes()).await;
            c.send(piece).await;
            c.send(b"\r\n").await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            last = cut;
        }
        c.send(b"0\r\n\r\n").await;
        let head = c.read_head().await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.get("content-type"),
            Some("application/grpc-web-text+proto")
        );
        let mut chunks = Vec::new();
        while let Some(chunk) = c.read_chunk().await {
            chunks.push(chunk);
        }
        let (msgs, trailers) = parse_web(&decode_text_chunks(&chunks));
        assert_eq!(
            msgs,
            vec![EchoReply {
                message: "split me anywhere, please".into()
            }],
            "cuts {cuts:?}"
        );
        assert_eq!(trailers.unwrap().get("grpc-status").unwrap(), "0");
    }
}

#[tokio::test]
async fn errors_are_trailers_only_with_the_status_in_the_head() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut c = H1::connect(server.addr).await;
    // A handler error before any message.
    let (head, body) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &echo_frame("fail:5"),
        ))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("grpc-status"), Some("5"));
    assert_eq!(
        head.get("grpc-message"),
        Some("failed as asked: 100%25 sure%0A")
    );
    assert!(body.is_empty(), "Trailers-Only has no body: {body:?}");
    // An unknown method.
    let (head, body) = c
        .exchange(&post(
            "/test.Echo/Nope",
            "application/grpc-web",
            &[],
            &echo_frame("x"),
        ))
        .await;
    assert_eq!(head.get("grpc-status"), Some("12"));
    assert!(body.is_empty());
    // Status details travel in the head too.
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &echo_frame("details"),
        ))
        .await;
    assert_eq!(head.get("grpc-status"), Some("3"));
    assert!(head.get("grpc-status-details-bin").is_some());
}

#[tokio::test]
async fn deadline_applies() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut c = H1::connect(server.addr).await;
    let slow = frame(&EchoRequest {
        message: "slow".into(),
        count: 0,
        sleep_ms: 3000,
    });
    let started = Instant::now();
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[("grpc-timeout", "200m")],
            &slow,
        ))
        .await;
    assert_eq!(head.get("grpc-status"), Some("4"), "{head:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The handler sees the deadline.
    let (_, body) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[("grpc-timeout", "5S")],
            &echo_frame("deadline?"),
        ))
        .await;
    let remaining: u64 = parse_web(&body).0[0]
        .message
        .strip_prefix("remaining=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining > 3000 && remaining <= 5000, "{remaining}");
}

#[tokio::test]
async fn cors_preflight_and_expose_headers() {
    let cfg = GrpcWebConfig::new()
        .allow_origins(["https://app.example"])
        .allow_credentials(true)
        .expose_headers(["x-proxy"]);
    let (server, _go) = start_web(cfg).await;
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(
            b"OPTIONS /test.Echo/Unary HTTP/1.1\r\nhost: t\r\norigin: https://app.example\r\naccess-control-request-method: POST\r\naccess-control-request-headers: x-grpc-web,content-type,x-echo,x-data-bin,authorization\r\n\r\n",
        )
        .await;
    assert_eq!(head.status, 204);
    assert_eq!(
        head.get("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(head.get("access-control-allow-credentials"), Some("true"));
    assert!(head
        .get("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let allowed: Vec<&str> = head
        .get("access-control-allow-headers")
        .unwrap()
        .split(", ")
        .collect();
    for h in [
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "content-type",
        "authorization",
        "x-echo",
        "x-data-bin",
    ] {
        assert!(allowed.contains(&h), "{h} not allowed: {allowed:?}");
    }
    assert!(head.get("access-control-max-age").is_some());

    // The call itself: the origin is echoed, status and metadata headers exposed.
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[("origin", "https://app.example"), ("x-echo", "e")],
            &echo_frame("hi"),
        ))
        .await;
    assert_eq!(
        head.get("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(head.get("access-control-allow-credentials"), Some("true"));
    let exposed: Vec<&str> = head
        .get("access-control-expose-headers")
        .unwrap()
        .split(", ")
        .collect();
    for h in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-echo-header",
        "x-proxy",
    ] {
        assert!(exposed.contains(&h), "{h} not exposed: {exposed:?}");
    }

    // Another origin: refused, preflight and call alike.
    let (head, _) = c
        .exchange(b"OPTIONS /test.Echo/Unary HTTP/1.1\r\nhost: t\r\norigin: https://evil.example\r\naccess-control-request-method: POST\r\n\r\n")
        .await;
    assert_eq!(head.status, 403);
    assert_eq!(head.get("access-control-allow-origin"), None);
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[("origin", "https://evil.example")],
            &echo_frame("hi"),
        ))
        .await;
    assert_eq!(head.status, 403);

    // Any origin without credentials: `*`.
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[("origin", "https://x.example")],
            &echo_frame("hi"),
        ))
        .await;
    assert_eq!(head.get("access-control-allow-origin"), Some("*"));
    assert_eq!(head.get("access-control-allow-credentials"), None);
}

#[tokio::test]
async fn client_and_bidi_streaming_are_refused_clearly() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut c = H1::connect(server.addr).await;
    for (path, kind) in [
        ("/test.Echo/ClientStream", "client-streaming"),
        ("/test.Echo/Bidi", "bidi-streaming"),
    ] {
        let (head, _) = c
            .exchange(&post(path, "application/grpc-web", &[], &echo_frame("a")))
            .await;
        assert_eq!(head.get("grpc-status"), Some("12"), "{path}");
        let msg = head.get("grpc-message").unwrap();
        assert!(msg.contains(kind) && msg.contains("gRPC-Web"), "{msg}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer() {
    let (server, _go) = start_web(GrpcWebConfig::new().http1_max_buf_size(8 * 1024)).await;
    // Malformed base64.
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web-text",
            &[],
            b"AAAA*AAA",
        ))
        .await;
    assert_eq!(head.get("grpc-status"), Some("13"), "{head:?}");
    assert!(head.get("grpc-message").unwrap().contains("base64"));
    // Base64 cut short.
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web-text",
            &[],
            b"AAAAAAA",
        ))
        .await;
    assert_eq!(head.get("grpc-status"), Some("13"), "{head:?}");
    // A content-type that is neither gRPC-Web nor gRPC.
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(&post("/test.Echo/Unary", "application/json", &[], b"{}"))
        .await;
    assert_eq!(head.status, 415);
    // GET.
    let (head, _) = c
        .exchange(b"GET /test.Echo/Unary HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    assert_eq!(head.status, 405);
    // A frame over the receive limit.
    let server2 = start(|b| {
        b.max_receive_message_size(1024)
            .grpc_web(GrpcWebConfig::new())
    })
    .await;
    let mut c = H1::connect(server2.addr).await;
    let big = frame(&EchoRequest {
        message: "z".repeat(4096),
        count: 0,
        sleep_ms: 0,
    });
    let (head, _) = c
        .exchange(&post("/test.Echo/Unary", "application/grpc-web", &[], &big))
        .await;
    assert_eq!(head.get("grpc-status"), Some("8"), "{head:?}");
    // A frame that claims more than it brings.
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &[0, 0, 0, 0, 9, 1, 2],
        ))
        .await;
    assert!(matches!(head.get("grpc-status"), Some("13")), "{head:?}");
    // Request headers over the buffer bound: 431, and the connection closes.
    let mut c = H1::connect(server.addr).await;
    let huge = "v".repeat(9000);
    c.send(&post(
        "/test.Echo/Unary",
        "application/grpc-web",
        &[("x-huge", &huge)],
        &echo_frame("x"),
    ))
    .await;
    let head = c.read_head().await;
    assert_eq!(head.status, 431);
    // None of it touched another connection.
    let mut c = H1::connect(server.addr).await;
    let (head, body) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &echo_frame("fine"),
        ))
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(parse_web(&body).0[0].message, "fine");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut c = H1::connect(server.addr).await;
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend(post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &echo_frame(&format!("m{i}")),
        ));
    }
    c.send(&burst).await;
    for i in 0..20 {
        let head = c.read_head().await;
        let body = c.read_body(&head).await;
        assert_eq!(parse_web(&body).0[0].message, format!("m{i}"));
    }
}

#[tokio::test]
async fn slow_http1_headers_are_cut_off_without_touching_others() {
    let server = start(|b| {
        b.header_read_timeout(Duration::from_millis(300))
            .grpc_web(GrpcWebConfig::new())
    })
    .await;
    let mut slow = H1::connect(server.addr).await;
    slow.send(b"POST /test.Echo/Unary HTTP/1.1\r\nhost: t\r\n")
        .await;
    let started = Instant::now();
    // Meanwhile another connection is served.
    let mut c = H1::connect(server.addr).await;
    let (head, _) = c
        .exchange(&post(
            "/test.Echo/Unary",
            "application/grpc-web",
            &[],
            &echo_frame("ok"),
        ))
        .await;
    assert_eq!(head.status, 200);
    // The slow one keeps trickling and is closed anyway.
    let trickle = async {
        for _ in 0..40 {
            if slow.io.get_mut().write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), slow.io.read_to_end(&mut rest)).await;
    assert!(
        r.is_ok(),
        "slow connection still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn grpc_web_over_http2() {
    let (server, _go) = start_web(GrpcWebConfig::new()).await;
    let mut h2 = connect(server.addr).await;
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/test.Echo/Unary", server.addr))
        .header("content-type", "application/grpc-web+proto")
        .header("x-echo", "h2")
        .body(())
        .unwrap();
    let r = call(&mut h2, head, &[echo_frame("over h2")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/grpc-web+proto"
    );
    assert_eq!(r.headers.get("x-echo-header").unwrap(), "h2");
    assert!(r.trailers.is_none(), "gRPC-Web carries no HTTP trailers");
    let (msgs, trailers) = parse_web(&r.data);
    assert_eq!(msgs[0].message, "over h2");
    assert_eq!(trailers.unwrap().get("grpc-status").unwrap(), "0");

    // Text mode, and a Trailers-Only error, on the same connection.
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/test.Echo/Unary", server.addr))
        .header("content-type", "application/grpc-web-text")
        .body(())
        .unwrap();
    let text = B64.encode(echo_frame("fail:7"));
    let r = call(&mut h2, head, &[Bytes::from(text)]).await;
    assert_eq!(r.headers.get("grpc-status").unwrap(), "7");
    assert!(r.headers_end_stream);
}

#[tokio::test]
async fn native_grpc_still_works_on_the_same_port_concurrently() {
    let (server, go) = start_web(GrpcWebConfig::new()).await;
    // A gRPC-Web stream stays open over HTTP/1.1 ...
    let mut web = H1::connect(server.addr).await;
    web.send(&post(
        "/test.Paced/Stream",
        "application/grpc-web",
        &[],
        &echo_frame("x"),
    ))
    .await;
    let head = tokio::time::timeout(Duration::from_secs(5), web.read_head())
        .await
        .expect("head");
    assert_eq!(head.status, 200);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), web.read_chunk())
            .await
            .expect("first chunk")
            .is_some()
    );
    // ... while native gRPC calls run on their own connections, raw and through a Channel.
    let mut h2 = connect(server.addr).await;
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_frame("native")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
    assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
    let reply: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(reply.message, "native");
    let channel = grpc_runtime::Channel::builder(format!("http://{}", server.addr))
        .connect()
        .await
        .unwrap();
    let resp: Response<EchoReply> = channel
        .unary(
            "/test.Echo/Unary",
            Request::new(EchoRequest {
                message: "channel".into(),
                count: 0,
                sleep_ms: 0,
            }),
        )
        .await
        .unwrap();
    assert_eq!(resp.into_inner().message, "channel");
    go.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = web.read_chunk().await {
        rest.extend(c);
    }
    assert_eq!(parse_web(&rest).1.unwrap().get("grpc-status").unwrap(), "0");
}

#[tokio::test]
async fn without_grpc_web_http1_is_not_served() {
    let server = start(|b| b).await;
    let mut c = H1::connect(server.addr).await;
    c.send(&post(
        "/test.Echo/Unary",
        "application/grpc-web",
        &[],
        &echo_frame("x"),
    ))
    .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.io.read_to_end(&mut out))
        .await
        .expect("closed");
    assert!(
        !out.starts_with(b"HTTP/1.1"),
        "answered HTTP/1.1 without gRPC-Web: {:?}",
        String::from_utf8_lossy(&out)
    );
    // And a gRPC-Web content-type over h2 gets the native 415.
    let mut h2 = connect(server.addr).await;
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/test.Echo/Unary", server.addr))
        .header("content-type", "application/grpc-web")
        .body(())
        .unwrap();
    let r = call(&mut h2, head, &[echo_frame("x")]).await;
    assert_eq!(r.status, 415);
}
