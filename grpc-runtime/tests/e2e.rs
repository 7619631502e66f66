//! End to end: our client <-> our server, all four call kinds, through a hand-written
//! stand-in of a generated client (following docs/api-contract.md).

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpc_runtime::{
    Channel, Code, CompressionEncoding, IntoRequest, IntoStreamingRequest, Request, Response,
    Status, Streaming,
};
use tokio::sync::mpsc;

/// Stand-in for what the generator emits for the client of `service Echo`.
#[derive(Clone, Debug)]
pub struct EchoClient {
    inner: Channel,
}

impl EchoClient {
    pub fn new(channel: Channel) -> Self {
        EchoClient { inner: channel }
    }
    pub async fn unary(
        &self,
        request: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.inner
            .unary("/test.Echo/Unary", request.into_request())
            .await
    }
    pub async fn server_stream(
        &self,
        request: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.inner
            .server_streaming("/test.Echo/ServerStream", request.into_request())
            .await
    }
    pub async fn client_stream(
        &self,
        request: impl IntoStreamingRequest<Message = EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.inner
            .client_streaming("/test.Echo/ClientStream", request.into_streaming_request())
            .await
    }
    pub async fn bidi(
        &self,
        request: impl IntoStreamingRequest<Message = EchoRequest>,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.inner
            .bidi_streaming("/test.Echo/Bidi", request.into_streaming_request())
            .await
    }
    pub async fn wait_cancel(
        &self,
        request: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.inner
            .unary("/test.Echo/WaitCancel", request.into_request())
            .await
    }
    pub async fn not_in_trait(
        &self,
        request: impl IntoRequest<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.inner
            .unary("/test.Echo/NotInTrait", request.into_request())
            .await
    }
}

fn msg(text: &str) -> EchoRequest {
    EchoRequest {
        message: text.to_string(),
        count: 0,
        sleep_ms: 0,
    }
}

async fn client(srv: &TestServer) -> EchoClient {
    EchoClient::new(
        Channel::builder(format!("http://{}", srv.addr))
            .connect()
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn unary_with_metadata_and_trailers() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let mut req = Request::new(msg("hello"));
    req.metadata_mut().insert("x-echo", "v1").unwrap();
    req.metadata_mut()
        .append_bin("x-data-bin", bytes::Bytes::from_static(&[0, 1, 2, 255]))
        .unwrap();
    let resp = c.unary(req).await.unwrap();
    assert_eq!(resp.get_ref().message, "hello");
    assert_eq!(resp.metadata().get("x-echo-header"), Some("v1"));
    let t = resp.trailers().unwrap();
    assert_eq!(t.get("x-trailer"), Some("t1"));
    assert_eq!(t.get_bin("x-data-bin").unwrap().as_ref(), &[0, 1, 2, 255]);
    // a bare message works too (IntoRequest)
    assert_eq!(
        c.unary(msg("bare")).await.unwrap().into_inner().message,
        "bare"
    );
}

#[tokio::test]
async fn error_status_round_trips() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let err = c.unary(msg("fail:9")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "failed as asked: 100% sure\n");
    let err = c.not_in_trait(msg("x")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let err = ch
        .unary::<EchoRequest, EchoReply>("/no.Such/Method", Request::new(msg("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test]
async fn server_streaming_in_order_and_error_at_end() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let mut r = msg("s");
    r.count = 50;
    let mut s = c.server_stream(r).await.unwrap().into_inner();
    for i in 0..50 {
        let m = s.message().await.unwrap().unwrap();
        assert!(
            m.message.starts_with(&format!("s-{i}-")),
            "{i}: {}",
            m.message
        );
    }
    assert!(s.message().await.unwrap().is_none());
    assert!(s.status().unwrap().is_ok());
    assert!(s.trailers().is_some());

    let mut r = msg("fail-at-end");
    r.count = 3;
    let mut s = c.server_stream(r).await.unwrap().into_inner();
    let mut n = 0;
    let err = loop {
        match s.message().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("expected an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 3);
    assert_eq!(err.code(), Code::Aborted);
}

#[tokio::test]
async fn client_streaming_collects_everything() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let reqs = futures_util::stream::iter((0..20).map(|i| msg(&i.to_string())));
    let resp = c.client_stream(reqs).await.unwrap();
    let expect = (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(resp.get_ref().message, expect);
    // with metadata via Request<Stream>
    let mut req = Request::new(futures_util::stream::iter(vec![msg("a")]));
    req.metadata_mut().insert("x-any", "1").unwrap();
    assert_eq!(c.client_stream(req).await.unwrap().get_ref().message, "a");
    // empty stream
    assert_eq!(
        c.client_stream(futures_util::stream::empty())
            .await
            .unwrap()
            .get_ref()
            .message,
        ""
    );
}

#[tokio::test]
async fn bidi_is_interleaved_end_to_end() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let (tx, rx) = mpsc::unbounded_channel::<EchoRequest>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(msg("0")).unwrap();
    let mut s = c.bidi(reqs).await.unwrap().into_inner();
    for i in 0..10 {
        assert_eq!(
            s.message().await.unwrap().unwrap().message,
            format!("echo:{i}")
        );
        if i < 9 {
            tx.send(msg(&(i + 1).to_string())).unwrap();
        }
    }
    drop(tx);
    assert!(s.message().await.unwrap().is_none());
    assert!(s.status().unwrap().is_ok());
}

#[tokio::test]
async fn deadline_exceeded_and_server_handler_cancelled() {
    let mut srv = start(|b| b).await;
    let c = client(&srv).await;
    let mut req = Request::new(msg("x"));
    req.set_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let err = c.wait_cancel(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(
        srv.next_event(Duration::from_secs(2)).await.as_deref(),
        Some("started")
    );
    let ev = srv.next_event(Duration::from_secs(2)).await.unwrap();
    assert!(ev.starts_with("cancelled:"), "{ev}");

    // slow unary: DEADLINE_EXCEEDED, not CANCELLED
    let mut r = msg("slow");
    r.sleep_ms = 2000;
    let mut req = Request::new(r);
    req.set_timeout(Duration::from_millis(100));
    assert_eq!(
        c.unary(req).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
}

#[tokio::test]
async fn dropping_the_call_cancels_the_handler() {
    let mut srv = start(|b| b).await;
    let c = client(&srv).await;
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.wait_cancel(msg("x")).await }
    });
    assert_eq!(
        srv.next_event(Duration::from_secs(2)).await.as_deref(),
        Some("started")
    );
    call.abort();
    let ev = srv.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(ev, "cancelled:Cancelled");
}

#[tokio::test]
async fn deadline_propagates_through_a_handler_scope() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let mut req = Request::new(msg("deadline?"));
    req.set_timeout(Duration::from_millis(1500));
    let got = c.unary(req).await.unwrap().into_inner().message;
    let ms: u64 = got.strip_prefix("remaining=").unwrap().parse().unwrap();
    assert!(ms > 1000 && ms <= 1500, "{got}");
    // nested: an outgoing call made inside a scope inherits the remaining deadline
    let c2 = c.clone();
    let got = grpc_runtime::scope_deadline(
        Some(grpc_runtime::Deadline::after(Duration::from_millis(800))),
        async move {
            c2.unary(msg("deadline?"))
                .await
                .unwrap()
                .into_inner()
                .message
        },
    )
    .await;
    let ms: u64 = got.strip_prefix("remaining=").unwrap().parse().unwrap();
    assert!(ms > 400 && ms <= 800, "{got}");
}

#[tokio::test]
async fn compressed_responses_are_decoded() {
    let srv = start(|b| b.default_compression(Some(CompressionEncoding::Gzip))).await;
    let c = client(&srv).await;
    let mut r = msg("alternate");
    r.count = 6;
    let mut s = c.server_stream(r).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = s.message().await.unwrap() {
        assert!(m.message.starts_with(&format!("alternate-{n}-")));
        n += 1;
    }
    assert_eq!(n, 6);
    // a client accepting nothing gets identity responses
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .accept_compressed(grpc_runtime::EncodingSet::none())
        .connect()
        .await
        .unwrap();
    let c = EchoClient::new(ch);
    assert_eq!(
        c.unary(msg("plain")).await.unwrap().get_ref().message,
        "plain"
    );
}

#[tokio::test]
async fn receive_limit_is_resource_exhausted() {
    let srv = start(|b| b).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .max_decoding_message_size(100)
        .connect()
        .await
        .unwrap();
    let c = EchoClient::new(ch);
    let mut r = msg("big");
    r.count = 1; // each streamed message is > 200 bytes
    let mut s = c.server_stream(r).await.unwrap().into_inner();
    assert_eq!(
        s.message().await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    // other calls on the same channel still work
    assert_eq!(
        c.unary(msg("small")).await.unwrap().get_ref().message,
        "small"
    );
}

#[tokio::test]
async fn many_tasks_share_one_channel() {
    let srv = start(|b| b).await;
    let c = client(&srv).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            match i % 4 {
                0 => assert_eq!(
                    c.unary(msg(&i.to_string()))
                        .await
                        .unwrap()
                        .get_ref()
                        .message,
                    i.to_string()
                ),
                1 => {
                    let mut r = msg("s");
                    r.count = 3;
                    let mut s = c.server_stream(r).await.unwrap().into_inner();
                    let mut n = 0;
                    while s.message().await.unwrap().is_some() {
                        n += 1;
                    }
                    assert_eq!(n, 3);
                }
                2 => {
                    let reqs = futures_util::stream::iter(vec![msg("a"), msg("b")]);
                    assert_eq!(
                        c.client_stream(reqs).await.unwrap().get_ref().message,
                        "a,b"
                    );
                }
                _ => {
                    let reqs = futures_util::stream::iter(vec![msg("x")]);
                    let mut s = c.bidi(reqs).await.unwrap().into_inner();
                    assert_eq!(s.message().await.unwrap().unwrap().message, "echo:x");
                    assert!(s.message().await.unwrap().is_none());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_end_to_end() {
    let dir = std::env::temp_dir().join(format!("grpc-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("e2e.sock");
    let _ = std::fs::remove_file(&path);
    let (etx, _erx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let p2 = path.clone();
    let server = tokio::spawn(async move {
        grpc_runtime::server::Server::builder()
            .add_service(echo_server::EchoServer::new(TestEcho { events: etx }))
            .serve_unix_with_shutdown(p2, async {
                let _ = stop_rx.await;
            })
            .await
    });
    let mut ch = None;
    for _ in 0..50 {
        match Channel::builder(format!("unix:{}", path.display()))
            .connect()
            .await
        {
            Ok(c) => {
                ch = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let c = EchoClient::new(ch.expect("server up"));
    assert_eq!(
        c.unary(msg("over unix")).await.unwrap().get_ref().message,
        "over unix"
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_calls_finish() {
    let mut srv = start(|b| b).await;
    let c = client(&srv).await;
    let mut r = msg("slow");
    r.sleep_ms = 300;
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.unary(r).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.shutdown();
    assert_eq!(slow.await.unwrap().unwrap().get_ref().message, "slow");
    // after shutdown, new calls fail UNAVAILABLE (nothing listens any more)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = c.unary(msg("late")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[tokio::test]
async fn client_compression_by_default_and_per_call() {
    // The server answers in the request's encoding by default, so the encoding its
    // interceptor sees on the call context is the request's encoding.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let srv = start(move |b| {
        b.add_interceptor(grpc_runtime::server::interceptor_fn(
            move |head: grpc_runtime::server::CallHead, next: grpc_runtime::server::Next| {
                s2.lock().unwrap().push(head.context().compression());
                next.run(head)
            },
        ))
    })
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .send_compressed(CompressionEncoding::Gzip)
        .connect()
        .await
        .unwrap();
    let c = EchoClient::new(ch);
    let big = "y".repeat(5000);
    for _ in 0..3 {
        assert_eq!(c.unary(msg(&big)).await.unwrap().get_ref().message, big);
    }
    let reqs = futures_util::stream::iter(vec![msg(&big), msg("b")]);
    assert_eq!(
        c.client_stream(reqs).await.unwrap().get_ref().message,
        format!("{big},b")
    );
    // per call: zstd and deflate
    for enc in [CompressionEncoding::Zstd, CompressionEncoding::Deflate] {
        let mut req = Request::new(msg(&big));
        req.set_compression(Some(enc));
        assert_eq!(c.unary(req).await.unwrap().get_ref().message, big);
    }
    let gz = Some(CompressionEncoding::Gzip);
    assert_eq!(
        *seen.lock().unwrap(),
        // compressed from the first call on: every encoding is assumed until the server
        // says otherwise
        vec![
            gz,
            gz,
            gz,
            gz,
            Some(CompressionEncoding::Zstd),
            Some(CompressionEncoding::Deflate)
        ]
    );
}

#[tokio::test]
async fn tls_end_to_end_with_test_ca() {
    let (ca, cert, key) = common::pki::test_pki(&["foo.test.google.fr"]);
    let acceptor = common::raw_h2::tls_acceptor(&cert, &key, &[b"h2"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold((listener, acceptor), |(l, acc)| async move {
        loop {
            let Ok((tcp, peer)) = l.accept().await else {
                return None;
            };
            if let Ok(tls) = acc.accept(tcp).await {
                return Some((Ok((tls, Some(peer))), (l, acc)));
            }
        }
    });
    let (etx, _erx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        grpc_runtime::server::Server::builder()
            .add_service(echo_server::EchoServer::new(TestEcho { events: etx }))
            .serve_with_incoming_stream(Box::pin(incoming), async {
                let _ = stop_rx.await;
            }),
    );
    let tls = grpc_runtime::ClientTlsConfig::new()
        .ca_certificate_pem(&ca)
        .domain_name("foo.test.google.fr");
    let ch = Channel::builder(format!("https://{addr}"))
        .tls_config(tls)
        .connect()
        .await
        .unwrap();
    let c = EchoClient::new(ch);
    assert_eq!(c.unary(msg("tls")).await.unwrap().get_ref().message, "tls");
    let (tx, rx) = mpsc::unbounded_channel::<EchoRequest>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(msg("a")).unwrap();
    let mut s = c.bidi(reqs).await.unwrap().into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().message, "echo:a");
    drop(tx);
    assert!(s.message().await.unwrap().is_none());
    let _ = stop_tx.send(());
    let _ = server.await;
}
