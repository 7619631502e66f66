//! tower and axum on the gRPC port (cargo feature `tower`): an axum `Router` as the
//! fallback service next to gRPC, over HTTP/2 and HTTP/1.1, on real sockets.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use grpc_runtime::server::RequestBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Size of each chunk of the large streamed response.
const CHUNK: usize = 16 * 1024;
/// Chunks of the large streamed response (8 MiB).
const CHUNKS: usize = 512;

/// The REST side of the tests: `GET /hello`, `POST /echo` (the body back), `POST /len`
/// (the body's length), `GET /big` (a streamed 8 MiB body whose chunks are counted as
/// they are produced).
fn router(produced: Arc<AtomicUsize>) -> axum::Router {
    axum::Router::new()
        .route("/hello", get(|| async { "hello from axum" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/len",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/big",
            get(move || {
                let produced = Arc::clone(&produced);
                async move {
                    let chunks = futures_util::stream::iter(0..CHUNKS).map(move |i| {
                        produced.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Bytes::from(vec![(i % 251) as u8; CHUNK]))
                    });
                    axum::body::Body::from_stream(chunks)
                }
            }),
        )
}

fn rest_head(addr: std::net::SocketAddr, method: &str, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "text/plain")
        .body(())
        .unwrap()
}

fn echo_request(message: &str) -> Bytes {
    frame(&EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    })
}

/// One HTTP/1.1 exchange on a new connection (`connection: close`): the raw answer.
async fn http1(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("HTTP/1.1 answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn axum_and_grpc_share_an_http2_connection() {
    let server = start(|b| b.fallback_service(router(Arc::default()))).await;
    let mut h2 = connect(server.addr).await;

    let r = call(&mut h2, rest_head(server.addr, "GET", "/hello"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.data[..], b"hello from axum");

    // A request body in several DATA frames reaches the handler whole.
    let parts = [
        Bytes::from_static(b"one "),
        Bytes::from_static(b"two "),
        Bytes::from_static(b"three"),
    ];
    let r = call(&mut h2, rest_head(server.addr, "POST", "/echo"), &parts).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.data[..], b"one two three");

    // An unknown REST path is the router's 404, not a gRPC error.
    let r = call(&mut h2, rest_head(server.addr, "GET", "/nope"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.headers.get("grpc-status").is_none());

    // gRPC on the same connection is routed as before.
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("hi")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
    let reply: EchoReply = decode(&r.messages()[0].1);
    assert_eq!(reply.message, "hi");
    // And a gRPC call to a method the server lacks is still gRPC's UNIMPLEMENTED.
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Nope", &[]),
        &[echo_request("hi")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("12"));
}

#[tokio::test]
async fn axum_over_http1_next_to_grpc_over_http2() {
    let server = start(|b| b.fallback_service(router(Arc::default()))).await;

    let out = http1(server.addr, "GET", "/hello", "").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("hello from axum"), "{out}");
    let out = http1(server.addr, "POST", "/echo", "over http/1.1").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("over http/1.1"), "{out}");

    let mut h2 = connect(server.addr).await;
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("still gRPC")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
}

#[tokio::test]
async fn large_upload_releases_flow_control_capacity() {
    // 1 MiB in, far over the 64 KiB initial windows: it only gets through if the body
    // hands capacity back as the handler reads.
    let server = start(|b| b.fallback_service(router(Arc::default()))).await;
    let h2 = connect(server.addr).await;
    let body: Vec<Bytes> = (0..64).map(|_| Bytes::from(vec![7u8; 16 * 1024])).collect();
    let mut client = h2.clone().ready().await.unwrap();
    let (resp, mut send) = client
        .send_request(rest_head(server.addr, "POST", "/len"), false)
        .unwrap();
    let sender = tokio::spawn(async move {
        for (i, chunk) in body.into_iter().enumerate() {
            let mut chunk = chunk;
            while !chunk.is_empty() {
                send.reserve_capacity(chunk.len());
                let n = std::future::poll_fn(|cx| send.poll_capacity(cx))
                    .await
                    .unwrap()
                    .unwrap();
                let piece = chunk.split_to(n.min(chunk.len()));
                send.send_data(piece, false).unwrap();
            }
            if i == 63 {
                send.send_data(Bytes::new(), true).unwrap();
            }
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(10), read_response(resp))
        .await
        .expect("the upload went through");
    sender.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.data[..], (64 * 16 * 1024).to_string().as_bytes());
}

#[tokio::test]
async fn large_response_is_streamed_within_flow_control() {
    let produced = Arc::new(AtomicUsize::new(0));
    let server = start(|b| b.fallback_service(router(Arc::clone(&produced)))).await;
    let h2 = connect(server.addr).await;
    let mut client = h2.clone().ready().await.unwrap();
    let (resp, _send) = client
        .send_request(rest_head(server.addr, "GET", "/big"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client reads nothing yet: the server may only produce what the 64 KiB
    // windows let it send (plus the chunk it waits to write and h2's buffer of one).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = produced.load(Ordering::SeqCst);
    assert!(
        early <= 8,
        "{early} chunks of 16 KiB produced against a 64 KiB window: the body is not flow-controlled"
    );
    let mut body = resp.into_body();
    let mut total = 0usize;
    let mut chunk_index_bytes = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        total += data.len();
        if chunk_index_bytes.len() < 3 {
            chunk_index_bytes.push(data[0]);
        }
    }
    assert_eq!(total, CHUNK * CHUNKS);
    assert_eq!(produced.load(Ordering::SeqCst), CHUNKS);
    assert_eq!(chunk_index_bytes[0], 0);
}

#[tokio::test]
async fn trailers_are_forwarded_and_errors_answer_500_for_that_request_only() {
    // A plain tower service: `/trailers` answers a body with trailers, anything else fails.
    let service = tower::service_fn(|req: http::Request<RequestBody>| async move {
        if req.uri().path() != "/trailers" {
            return Err(std::io::Error::other("the service failed"));
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
        let frames = futures_util::stream::iter([
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"payload"))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        Ok(http::Response::new(http_body_util::StreamBody::new(frames)))
    });
    let server = start(|b| b.fallback_service(service)).await;
    let mut h2 = connect(server.addr).await;

    let r = call(&mut h2, rest_head(server.addr, "GET", "/trailers"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.data[..], b"payload");
    assert_eq!(r.trailers.unwrap().get("x-checksum").unwrap(), "abc");

    let r = call(&mut h2, rest_head(server.addr, "GET", "/fails"), &[]).await;
    assert_eq!(r.status, 500);
    assert!(r.error.is_none(), "{:?}", r.error);
    let out = http1(server.addr, "GET", "/fails", "").await;
    assert!(out.starts_with("HTTP/1.1 500"), "{out}");

    // The connection and its other requests go on.
    let r = call(&mut h2, rest_head(server.addr, "GET", "/trailers"), &[]).await;
    assert_eq!(r.status, 200);
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("after")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
}

#[tokio::test]
async fn request_body_reads_h2_data_and_trailers() {
    // The handler sees the DATA, then the trailers, through `http_body::Body`.
    let service = tower::service_fn(|req: http::Request<RequestBody>| async move {
        let collected = req.into_body().collect().await?;
        let trailer = collected
            .trailers()
            .and_then(|t| t.get("x-sum"))
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let text = format!(
            "{}|{trailer}",
            String::from_utf8_lossy(&collected.to_bytes())
        );
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::new(
            http_body_util::Full::new(Bytes::from(text)),
        ))
    });
    let server = start(|b| b.fallback_service(service)).await;
    let h2 = connect(server.addr).await;
    let mut client = h2.ready().await.unwrap();
    let (resp, mut send) = client
        .send_request(rest_head(server.addr, "POST", "/x"), false)
        .unwrap();
    send.send_data(Bytes::from_static(b"abc"), false).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-sum", http::HeaderValue::from_static("42"));
    send.send_trailers(trailers).unwrap();
    let r = read_response(resp).await;
    assert_eq!(&r.data[..], b"abc|42");
}

#[tokio::test]
async fn grpc_web_and_a_fallback_split_by_content_type() {
    let server = start(|b| {
        b.grpc_web(grpc_runtime::server::GrpcWebConfig::new())
            .fallback_service(router(Arc::default()))
    })
    .await;
    // REST over HTTP/1.1 goes to axum.
    let out = http1(server.addr, "GET", "/hello", "").await;
    assert!(out.ends_with("hello from axum"), "{out}");
    // A REST preflight goes to axum (its 405: the router has no OPTIONS route) ...
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"OPTIONS /hello HTTP/1.1\r\nhost: test\r\norigin: https://a.example\r\naccess-control-request-method: GET\r\naccess-control-request-headers: authorization\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    // ... a gRPC-Web one to gRPC-Web (204 with CORS).
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"OPTIONS /test.Echo/Unary HTTP/1.1\r\nhost: test\r\norigin: https://a.example\r\naccess-control-request-method: POST\r\naccess-control-request-headers: content-type,x-grpc-web\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(out.contains("access-control-allow-origin"), "{out}");
    // A gRPC-Web call over HTTP/1.1 is served by gRPC-Web.
    let body = echo_request("web");
    let mut req = format!(
        "POST /test.Echo/Unary HTTP/1.1\r\nhost: test\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("application/grpc-web+proto"), "{out}");
    assert!(out.contains("grpc-status: 0"), "{out}");
}

#[tokio::test]
async fn without_a_fallback_non_grpc_requests_are_refused_as_before() {
    let server = start(|b| b).await;
    let mut h2 = connect(server.addr).await;
    let mut head = rest_head(server.addr, "POST", "/hello");
    head.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    let r = call(&mut h2, head, &[Bytes::from_static(b"{}")]).await;
    assert_eq!(r.status, 415);
    assert_eq!(r.grpc_status().as_deref(), Some("13"));
    let r = call(&mut h2, rest_head(server.addr, "GET", "/hello"), &[]).await;
    assert_eq!(r.status, 405);
}

// ------------------------------------------------------------------ tower layers

fn echo_with_sleep(message: &str, sleep_ms: i64) -> Bytes {
    frame(&EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms,
    })
}

#[tokio::test]
async fn load_shed_over_a_concurrency_limit_answers_unavailable_for_the_shed_call_only() {
    let layers = tower::ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(1);
    let server = start(|b| b.layer(layers)).await;
    let h2 = connect(server.addr).await;
    // The first call holds the only slot for 600 ms (until its reply).
    let slow = {
        let mut h2 = h2.clone();
        let head = grpc_head(server.addr, "/test.Echo/Unary", &[]);
        tokio::spawn(async move { call(&mut h2, head, &[echo_with_sleep("slow", 600)]).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut h2b = h2.clone();
    let shed = call(
        &mut h2b,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("shed")],
    )
    .await;
    assert_eq!(shed.status, 200);
    assert!(shed.headers_end_stream, "Trailers-Only");
    assert_eq!(shed.grpc_status().as_deref(), Some("14"), "{shed:?}");
    let slow = slow.await.unwrap();
    assert_eq!(slow.grpc_status().as_deref(), Some("0"));
    let reply: EchoReply = decode(&slow.messages()[0].1);
    assert_eq!(reply.message, "slow");
    // The slot is free again.
    let r = call(
        &mut h2b,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("after")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
}

#[tokio::test]
async fn trace_layer_sees_grpc_calls_and_streams_pass_through() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let trace = {
        let seen = Arc::clone(&seen);
        tower_http::trace::TraceLayer::new_for_http().on_request(
            move |req: &http::Request<RequestBody>, _: &tracing::Span| {
                seen.lock().unwrap().push(req.uri().path().to_string());
            },
        )
    };
    let server = start(|b| b.layer(trace)).await;
    let mut h2 = connect(server.addr).await;
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[("x-meta", "m")]),
        &[echo_request("traced")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
    assert_eq!(decode::<EchoReply>(&r.messages()[0].1).message, "traced");
    // A server-streaming call streams its messages and trailers through the layer.
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/ServerStream", &[]),
        &[frame(&EchoRequest {
            message: "s".into(),
            count: 3,
            sleep_ms: 0,
        })],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
    assert_eq!(r.messages().len(), 3);
    assert!(r.trailers.is_some());
    // Errors of the router are still gRPC's, through the layer.
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Nope", &[]),
        &[echo_request("x")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("12"));
    assert!(r.headers_end_stream);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "/test.Echo/Unary",
            "/test.Echo/ServerStream",
            "/test.Echo/Nope"
        ]
    );
}

#[tokio::test]
async fn timeouts_of_layers_are_deadline_exceeded() {
    // tower's timeout fails the call (`Elapsed`); tower-http's answers HTTP 408.
    for tower_http_layer in [false, true] {
        let server = if tower_http_layer {
            start(|b| {
                b.layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    http::StatusCode::REQUEST_TIMEOUT,
                    Duration::from_millis(100),
                ))
            })
            .await
        } else {
            start(|b| {
                b.layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
                    100,
                )))
            })
            .await
        };
        let mut h2 = connect(server.addr).await;
        let r = call(
            &mut h2,
            grpc_head(server.addr, "/test.Echo/Unary", &[]),
            &[echo_with_sleep("late", 2000)],
        )
        .await;
        assert_eq!(r.grpc_status().as_deref(), Some("4"), "{r:?}");
        assert!(r.headers_end_stream);
        let r = call(
            &mut h2,
            grpc_head(server.addr, "/test.Echo/Unary", &[]),
            &[echo_request("quick")],
        )
        .await;
        assert_eq!(r.grpc_status().as_deref(), Some("0"));
    }
}

#[tokio::test]
async fn a_layer_and_a_fallback_together() {
    let count = Arc::new(AtomicUsize::new(0));
    let counting = {
        let count = Arc::clone(&count);
        tower::layer::layer_fn(move |inner: grpc_runtime::server::GrpcRoutes| {
            let count = Arc::clone(&count);
            tower::service_fn(move |req: http::Request<RequestBody>| {
                count.fetch_add(1, Ordering::SeqCst);
                let mut inner = inner;
                tower::Service::call(&mut inner, req)
            })
        })
    };
    let server = start(|b| b.layer(counting).fallback_service(router(Arc::default()))).await;
    let mut h2 = connect(server.addr).await;
    let r = call(&mut h2, rest_head(server.addr, "GET", "/hello"), &[]).await;
    assert_eq!(&r.data[..], b"hello from axum");
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("x")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
    // Only the gRPC call went through the layer.
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_fallback_the_layered_router_refuses_other_requests_as_before() {
    let server = start(|b| b.layer(tower::layer::util::Identity::new())).await;
    let mut h2 = connect(server.addr).await;
    let mut head = rest_head(server.addr, "POST", "/hello");
    head.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    let r = call(&mut h2, head, &[Bytes::from_static(b"{}")]).await;
    assert_eq!(r.status, 415);
    assert_eq!(r.grpc_status().as_deref(), Some("13"));
    let r = call(&mut h2, rest_head(server.addr, "GET", "/hello"), &[]).await;
    assert_eq!(r.status, 405);
}

/// An axum router that answers with the peer address it finds in the request: as an
/// `Extension<SocketAddr>` (what the server puts in every fallback request) and as axum's
/// `ConnectInfo<SocketAddr>` (copied there by one `map_request` middleware, as
/// docs/tower.md shows).
fn peer_router() -> axum::Router {
    use axum::extract::{ConnectInfo, Extension, Request};
    use std::net::SocketAddr;
    axum::Router::new()
        .route(
            "/peer",
            get(
                |Extension(peer): Extension<SocketAddr>,
                 ConnectInfo(info): ConnectInfo<SocketAddr>| async move {
                    format!("{peer}|{info}")
                },
            ),
        )
        .layer(axum::middleware::map_request(
            |mut req: Request| async move {
                if let Some(peer) = req.extensions().get::<SocketAddr>().copied() {
                    req.extensions_mut().insert(ConnectInfo(peer));
                }
                req
            },
        ))
}

#[tokio::test]
async fn the_fallback_sees_the_peer_address_over_http2_and_http1() {
    let server = start(|b| b.fallback_service(peer_router())).await;

    // HTTP/2: the address of the client's end of the connection.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let r = call(&mut h2, rest_head(server.addr, "GET", "/peer"), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.data), format!("{local}|{local}"));

    // HTTP/1.1.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.write_all(b"GET /peer HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("HTTP/1.1 answer in time")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with(&format!("{local}|{local}")), "{out}");
}

/// One gRPC-Web unary call over HTTP/1.1 (`connection: close`) with `extra` header lines:
/// the raw answer.
async fn grpc_web_http1(addr: std::net::SocketAddr, extra: &str, message: &str) -> String {
    let body = echo_request(message);
    let mut req = format!(
        "POST /test.Echo/Unary HTTP/1.1\r\nhost: test\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("HTTP/1.1 answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A layer recording the content-type (or method, without one) of every request it sees.
fn recording_layer(
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) -> impl tower::Layer<
    grpc_runtime::server::GrpcRoutes,
    Service = impl tower::Service<
        http::Request<RequestBody>,
        Response = http::Response<grpc_runtime::server::BoxBody>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
                  + Send
                  + Sync
                  + 'static,
> + Clone {
    tower::layer::layer_fn(move |inner: grpc_runtime::server::GrpcRoutes| {
        let seen = Arc::clone(&seen);
        tower::service_fn(move |req: http::Request<RequestBody>| {
            let what = match req.headers().get("content-type") {
                Some(ct) => ct.to_str().unwrap_or("?").to_string(),
                None => req.method().to_string(),
            };
            seen.lock().unwrap().push(what);
            let mut inner = inner;
            tower::Service::call(&mut inner, req)
        })
    })
}

#[tokio::test]
async fn grpc_web_calls_go_through_the_layers() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let server = start(|b| {
        b.grpc_web(grpc_runtime::server::GrpcWebConfig::new())
            .layer(recording_layer(Arc::clone(&seen)))
    })
    .await;

    // gRPC-Web over HTTP/1.1: the layer sees it as it arrived, the call is answered in
    // gRPC-Web (the status in the body's trailer frame).
    let out = grpc_web_http1(server.addr, "", "web").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("application/grpc-web+proto"), "{out}");
    assert!(out.contains("grpc-status: 0"), "{out}");
    assert!(out.contains("web"), "{out}");
    // Its CORS preflight too.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"OPTIONS /test.Echo/Unary HTTP/1.1\r\nhost: test\r\norigin: https://a.example\r\naccess-control-request-method: POST\r\naccess-control-request-headers: content-type,x-grpc-web\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(out.contains("access-control-allow-origin"), "{out}");

    // gRPC-Web over HTTP/2, and native gRPC next to it.
    let mut h2 = connect(server.addr).await;
    let mut head = grpc_head(server.addr, "/test.Echo/Unary", &[]);
    head.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc-web+proto"),
    );
    let r = call(&mut h2, head, &[echo_request("web over h2")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/grpc-web+proto"
    );
    assert!(r.trailers.is_none(), "gRPC-Web has no HTTP trailers");
    let trailer = b"grpc-status: 0";
    assert!(r.data.windows(trailer.len()).any(|w| w == trailer), "{r:?}");
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("native")],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));

    assert_eq!(
        *seen.lock().unwrap(),
        [
            "application/grpc-web+proto",
            "OPTIONS",
            "application/grpc-web+proto",
            "application/grpc"
        ]
    );
}

#[tokio::test]
async fn a_layer_error_answers_a_grpc_web_call_in_grpc_web() {
    // A layer that refuses every call (as an auth or rate-limit layer would).
    let refuse = tower::layer::layer_fn(|_inner: grpc_runtime::server::GrpcRoutes| {
        tower::service_fn(|_req: http::Request<RequestBody>| async {
            Err::<http::Response<grpc_runtime::server::BoxBody>, _>(
                grpc_runtime::Status::resource_exhausted("quota"),
            )
        })
    });
    let server = start(|b| {
        b.grpc_web(grpc_runtime::server::GrpcWebConfig::new())
            .layer(refuse)
    })
    .await;
    let out = grpc_web_http1(server.addr, "origin: https://a.example\r\n", "x").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("content-type: application/grpc-web+proto"),
        "{out}"
    );
    assert!(out.contains("grpc-status: 8"), "{out}");
    assert!(out.contains("grpc-message: quota"), "{out}");
    assert!(out.contains("access-control-allow-origin: *"), "{out}");
    assert!(
        out.contains("access-control-expose-headers"),
        "the browser may read the status: {out}"
    );
}

#[tokio::test]
async fn the_fallback_sees_the_tls_session_and_client_certificate() {
    use axum::extract::Extension;
    use grpc_runtime::server::{ServerTlsConfig, TlsInfo};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    // A CA, a server certificate for localhost and a client certificate it signed.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "fallback client");
    let client_cert = client.signed_by(&client_key, &ca, &ca_key).unwrap();

    let rest = axum::Router::new().route(
        "/tls",
        get(|Extension(tls): Extension<Arc<TlsInfo>>| async move {
            format!(
                "{} cert(s), alpn {}",
                tls.peer_certificates().len(),
                String::from_utf8_lossy(tls.alpn_protocol().unwrap_or(b"-"))
            )
        }),
    );
    let tls =
        ServerTlsConfig::new(server_cert.pem(), server_key.serialize_pem()).client_ca_pem(ca.pem());
    let server = start(|b| b.tls_config(tls).fallback_service(rest)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(client_key.serialize_der()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![client_cert.der().clone()], key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut h2, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    let head = http::Request::get(format!("https://localhost:{}/tls", server.addr.port()))
        .body(())
        .unwrap();
    let r = call(&mut h2, head, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.data), "1 cert(s), alpn h2");
}

#[tokio::test]
async fn a_layers_oversized_status_is_cut_to_size_like_every_trailers_only_answer() {
    // A layer that refuses every call with a 20 KB message: the Trailers-Only answer is
    // built by the one builder, which cuts status and trailers to 8 KiB.
    let refuse = tower::layer::layer_fn(|_routes: grpc_runtime::server::GrpcRoutes| {
        tower::service_fn(|_req: http::Request<RequestBody>| async {
            Err::<http::Response<http_body_util::Empty<Bytes>>, _>(
                grpc_runtime::Status::permission_denied("x".repeat(20_000)),
            )
        })
    });
    let server = start(|b| b.layer(refuse)).await;
    let mut h2 = connect(server.addr).await;
    let r = call(
        &mut h2,
        grpc_head(server.addr, "/test.Echo/Unary", &[]),
        &[echo_request("refused")],
    )
    .await;
    assert!(r.headers_end_stream, "Trailers-Only: {r:?}");
    assert_eq!(r.grpc_status().as_deref(), Some("7"));
    let message = r.grpc_message().unwrap();
    assert!(message.len() < 2048, "{} bytes", message.len());
    assert!(message.contains("truncated"), "{message}");
}
