//! The client `Channel` as a tower `Service` (feature `tower`), and generated clients
//! over tower middleware stacks, against our own server on 127.0.0.1 over real HTTP/2:
//! raw `http::Request`s through the channel (unary, server-streaming, trailers), the
//! generated health client under tower's timeout, concurrency limit and a header-adding
//! layer, the gRPC framing of the tower path for every call kind, and round_robin still
//! balancing when the channel sits under middleware.

mod common;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{decode, frame, start, EchoReply, EchoRequest, TestServer};
use grpc_runtime::server::{interceptor_fn, CallHead, Next};
use grpc_runtime::services::health::{
    health_client::HealthClient, health_reporter, HealthCheckRequest, HealthReporter, ServingStatus,
};
use grpc_runtime::{Channel, Code, GrpcService, Request, Status};
use http_body_util::{BodyExt, Full};
use tower::Service;
use tower::ServiceBuilder;

fn echo(message: &str, count: i32, sleep_ms: i64) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count,
        sleep_ms,
    }
}

fn raw_request(path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-echo", "raw")
        .body(Full::new(body))
        .unwrap()
}

/// Splits a gRPC response body into its messages.
fn messages(mut data: Bytes) -> Vec<EchoReply> {
    let mut out = Vec::new();
    while data.len() >= 5 {
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let _ = data.split_to(5);
        out.push(decode(&data.split_to(len)));
    }
    assert!(data.is_empty(), "trailing partial message");
    out
}

async fn channel_to(addr: SocketAddr) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap()
}

/// What the health servers of these tests saw: calls in flight now and at most.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// A server with the echo service and the health service ("" SERVING, "svc" as given);
/// an interceptor counts concurrent calls, sleeps `x-sleep-ms` before a call, and with
/// `require_key` rejects health calls without `x-api-key: secret` (UNAUTHENTICATED).
async fn server(require_key: bool, svc: ServingStatus) -> (TestServer, HealthReporter, Arc<Load>) {
    let (reporter, health) = health_reporter();
    reporter.set_serving("");
    reporter.set_serving_status("svc", svc);
    let load = Arc::new(Load::default());
    let l = Arc::clone(&load);
    let icpt = interceptor_fn(move |head: CallHead, next: Next| {
        let load = Arc::clone(&l);
        async move {
            if require_key
                && head.method().starts_with("/grpc.health")
                && head.metadata.get("x-api-key") != Some("secret")
            {
                return Status::unauthenticated("x-api-key missing");
            }
            let n = load.now.fetch_add(1, Ordering::SeqCst) + 1;
            load.max.fetch_max(n, Ordering::SeqCst);
            if let Some(ms) = head.metadata.get("x-sleep-ms") {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let st = next.run(head).await;
            load.now.fetch_sub(1, Ordering::SeqCst);
            st
        }
    });
    let srv = start(move |b| b.add_service(health).add_interceptor(icpt)).await;
    (srv, reporter, load)
}

fn check(service: &str, sleep_ms: u64) -> Request<HealthCheckRequest> {
    let mut r = Request::new(HealthCheckRequest {
        service: service.into(),
    });
    if sleep_ms > 0 {
        r.metadata_mut()
            .insert("x-sleep-ms", sleep_ms.to_string())
            .unwrap();
    }
    r
}

#[tokio::test]
async fn raw_unary_request_through_the_channel_service() {
    let srv = start(|b| b).await;
    let mut channel = channel_to(srv.addr).await;
    poll_fn(|cx| Service::<http::Request<Full<Bytes>>>::poll_ready(&mut channel, cx))
        .await
        .unwrap();
    let resp = channel
        .call(raw_request("/test.Echo/Unary", frame(&echo("hello", 0, 0))))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.headers()["x-echo-header"], "raw");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers seen");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailer"], "t1");
    let replies = messages(collected.to_bytes());
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].message, "hello");
}

#[tokio::test]
async fn raw_server_streaming_request_through_the_channel_service() {
    let srv = start(|b| b).await;
    let mut channel = channel_to(srv.addr).await;
    let resp = channel
        .call(raw_request(
            "/test.Echo/ServerStream",
            frame(&echo("m", 3, 0)),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers seen");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(messages(collected.to_bytes()).len(), 3);
}

#[tokio::test]
async fn raw_request_errors_are_statuses() {
    let srv = start(|b| b).await;
    let mut channel = channel_to(srv.addr).await;
    // Trailers-Only: the status is in the head, the body ends at once.
    let resp = channel
        .call(raw_request("/test.Echo/Nope", frame(&echo("x", 0, 0))))
        .await
        .unwrap();
    assert_eq!(resp.headers()["grpc-status"], "12");
    assert!(resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .is_none());
    // No server: wait-for-ready until the request's grpc-timeout, DEADLINE_EXCEEDED.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let mut lazy = Channel::builder(format!("http://{addr}"))
        .connect_lazy()
        .unwrap();
    let mut req = raw_request("/test.Echo/Unary", frame(&echo("x", 0, 0)));
    req.headers_mut()
        .insert("grpc-timeout", "200m".parse().unwrap());
    let err = lazy.call(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // A shut-down channel is not ready.
    lazy.shutdown();
    let err = poll_fn(|cx| Service::<http::Request<Full<Bytes>>>::poll_ready(&mut lazy, cx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn generated_client_under_a_timeout_layer() {
    let (srv, _reporter, _load) = server(false, ServingStatus::Serving).await;
    let channel = channel_to(srv.addr).await;
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(300))
        .service(channel);
    let client = HealthClient::new(svc);
    let ok = client.check(check("svc", 0)).await.unwrap();
    assert_eq!(ok.get_ref().status, ServingStatus::Serving as i32);
    let err = client.check(check("svc", 2000)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // A status from the server passes through the stack unchanged.
    let err = client.check(check("unknown-svc", 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // The call's own timeout travels as grpc-timeout and is enforced too.
    let mut r = check("svc", 2000);
    r.set_timeout(Duration::from_millis(100));
    let err = client.check(r).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
}

#[tokio::test]
async fn generated_client_under_a_header_adding_layer() {
    let (srv, _reporter, _load) = server(true, ServingStatus::NotServing).await;
    let channel = channel_to(srv.addr).await;
    // Without the layer the server rejects the call.
    let bare = HealthClient::new(channel.clone());
    let err = bare.check(check("svc", 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let svc = ServiceBuilder::new()
        .map_request(
            |mut req: http::Request<grpc_runtime::client::tower::RequestBody>| {
                req.headers_mut()
                    .insert("x-api-key", http::HeaderValue::from_static("secret"));
                req
            },
        )
        .service(channel);
    let client = HealthClient::new(svc);
    let ok = client.check(check("svc", 0)).await.unwrap();
    assert_eq!(ok.get_ref().status, ServingStatus::NotServing as i32);
    // Server-streaming through the stack: Watch's first answer.
    let mut watch = client.watch(check("svc", 0)).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::NotServing as i32);
}

#[tokio::test]
async fn generated_client_under_a_concurrency_limit() {
    let (srv, _reporter, load) = server(false, ServingStatus::Serving).await;
    let channel = channel_to(srv.addr).await;
    let client = HealthClient::new(
        ServiceBuilder::new()
            .concurrency_limit(1)
            .service(channel.clone()),
    );
    let calls = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.check(check("svc", 150)).await })
        })
        .collect::<Vec<_>>();
    for c in calls {
        let r = c.await.unwrap().unwrap();
        assert_eq!(r.get_ref().status, ServingStatus::Serving as i32);
    }
    assert_eq!(load.max.load(Ordering::SeqCst), 1, "the limit held");
    // Without the limit the same calls overlap (so the assertion above can fail).
    let bare = HealthClient::new(channel);
    let calls = (0..3)
        .map(|_| {
            let client = bare.clone();
            tokio::spawn(async move { client.check(check("svc", 150)).await })
        })
        .collect::<Vec<_>>();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert!(load.max.load(Ordering::SeqCst) > 1);
}

/// Every call kind over the tower path (a stack that is not a bare `Channel`), framed by
/// the runtime: messages, statuses, metadata, trailers.
#[tokio::test]
async fn every_call_kind_over_a_tower_stack() {
    let srv = start(|b| b).await;
    let channel = channel_to(srv.addr).await;
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .service(channel);

    let mut r = Request::new(echo("one", 0, 0));
    r.metadata_mut().insert("x-echo", "md").unwrap();
    let resp = svc
        .unary::<_, EchoReply>("/test.Echo/Unary", r)
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-echo-header"), Some("md"));
    assert_eq!(resp.trailers().unwrap().get("x-trailer"), Some("t1"));
    assert_eq!(resp.get_ref().message, "one");

    let err = svc
        .unary::<_, EchoReply>("/test.Echo/Unary", Request::new(echo("fail:7", 0, 0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "failed as asked: 100% sure\n");

    let mut r = Request::new(echo("s", 4, 0));
    r.set_compression(Some(grpc_runtime::CompressionEncoding::Gzip));
    let mut stream = svc
        .server_streaming::<_, EchoReply>("/test.Echo/ServerStream", r)
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    assert!(stream.status().unwrap().is_ok());

    let reqs = futures_util::stream::iter(vec![echo("a", 0, 0), echo("b", 0, 0)]);
    let resp = svc
        .client_streaming::<_, _, EchoReply>("/test.Echo/ClientStream", Request::new(reqs))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().message, "a,b");

    // Bidi returns before the response head; the server answers each message.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = svc
        .bidi_streaming::<_, _, EchoReply>(
            "/test.Echo/Bidi",
            Request::new(common::ReceiverStream(rx)),
        )
        .await
        .unwrap()
        .into_inner();
    tx.send(echo("x", 0, 0)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().message, "echo:x");
    tx.send(echo("y", 0, 0)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().message, "echo:y");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
}

#[tokio::test]
async fn round_robin_still_balances_under_middleware() {
    let (a, _ra, _) = server(false, ServingStatus::Serving).await;
    let (b, _rb, _) = server(false, ServingStatus::NotServing).await;
    let channel = Channel::builder(format!("ipv4:{},{}", a.addr, b.addr))
        .load_balancing_policy("round_robin")
        .connect()
        .await
        .unwrap();
    let client = HealthClient::new(
        ServiceBuilder::new()
            .timeout(Duration::from_secs(5))
            .service(channel),
    );
    // round_robin is READY with its first subchannel; wait until both take calls.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (mut serving, mut not_serving) = (0, 0);
    while tokio::time::Instant::now() < deadline && (serving < 3 || not_serving < 3) {
        let r = client.check(check("svc", 0)).await.unwrap();
        if r.get_ref().status == ServingStatus::Serving as i32 {
            serving += 1;
        } else {
            not_serving += 1;
        }
    }
    assert!(
        serving >= 3 && not_serving >= 3,
        "{serving} / {not_serving}"
    );
    // Once both are up the split is even.
    let (mut s, mut ns) = (0, 0);
    for _ in 0..10 {
        let r = client.check(check("svc", 0)).await.unwrap();
        if r.get_ref().status == ServingStatus::Serving as i32 {
            s += 1;
        } else {
            ns += 1;
        }
    }
    assert_eq!((s, ns), (5, 5));
}

/// A server whose tower layer records, per call, the request headers the channel's
/// interceptors, call credentials and compression set.
async fn recording_server() -> (TestServer, Arc<std::sync::Mutex<Vec<[Option<String>; 4]>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = {
        let seen = Arc::clone(&seen);
        tower::layer::layer_fn(move |inner: grpc_runtime::server::GrpcRoutes| {
            let seen = Arc::clone(&seen);
            tower::service_fn(
                move |req: http::Request<grpc_runtime::server::RequestBody>| {
                    let h = |name: &str| {
                        req.headers()
                            .get(name)
                            .map(|v| v.to_str().unwrap_or("?").to_string())
                    };
                    seen.lock().unwrap().push([
                        h("x-icpt"),
                        h("authorization"),
                        h("grpc-encoding"),
                        h("grpc-timeout").map(|_| "set".to_string()),
                    ]);
                    let mut inner = inner;
                    tower::Service::call(&mut inner, req)
                },
            )
        })
    };
    (start(move |b| b.layer(record)).await, seen)
}

/// What the client interceptor of these tests saw: starts (kind) and finishes (code,
/// peer). It adds `x-icpt: yes` and a 30 s timeout to every call.
#[derive(Default)]
struct Seen {
    started: std::sync::Mutex<Vec<grpc_runtime::client::interceptor::CallKind>>,
    finished: std::sync::Mutex<Vec<(Code, Option<SocketAddr>)>>,
}

struct Recorder {
    seen: Arc<Seen>,
    reject: bool,
}

impl grpc_runtime::client::interceptor::Interceptor for Recorder {
    fn start<'a>(
        &'a self,
        call: &'a mut grpc_runtime::client::interceptor::ClientCallContext,
    ) -> grpc_runtime::client::interceptor::InterceptFuture<'a> {
        self.seen.started.lock().unwrap().push(call.kind());
        call.metadata_mut().insert("x-icpt", "yes").unwrap();
        // The calls have no timeout of their own: this one goes out as grpc-timeout.
        call.set_timeout(Some(Duration::from_secs(30)));
        let reject = self.reject;
        Box::pin(async move {
            if reject {
                return Err(Status::permission_denied("interceptor says no"));
            }
            Ok(())
        })
    }

    fn finish_call(&self, call: &grpc_runtime::client::interceptor::CallInfo, status: &Status) {
        self.seen
            .finished
            .lock()
            .unwrap()
            .push((status.code(), call.peer()));
    }
}

#[tokio::test]
async fn channel_interceptors_credentials_and_default_compression_apply_under_a_stack() {
    use grpc_runtime::client::credentials::{allow_insecure, MetadataCredentials};
    use grpc_runtime::client::interceptor::CallKind;
    let (srv, headers) = recording_server().await;
    let seen = Arc::new(Seen::default());
    let channel = Channel::builder(format!("http://{}", srv.addr))
        .interceptor(Recorder {
            seen: Arc::clone(&seen),
            reject: false,
        })
        .call_credentials(allow_insecure(
            MetadataCredentials::bearer_token("token").unwrap(),
        ))
        .send_compressed(grpc_runtime::CompressionEncoding::Gzip)
        .connect()
        .await
        .unwrap();
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .service(channel);

    // Unary: the interceptor's metadata, the credentials' token, the channel's gzip.
    let resp = svc
        .unary::<_, EchoReply>("/test.Echo/Unary", Request::new(echo("one", 0, 0)))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().message, "one");
    // Server-streaming, with compression turned off for this call.
    let mut r = Request::new(echo("s", 3, 0));
    r.disable_compression();
    let mut stream = svc
        .server_streaming::<_, EchoReply>("/test.Echo/ServerStream", r)
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while stream.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    // Client-streaming: every message compressed with the channel's default.
    let reqs = futures_util::stream::iter(vec![echo("a", 0, 0), echo("b", 0, 0)]);
    let resp = svc
        .client_streaming::<_, _, EchoReply>("/test.Echo/ClientStream", Request::new(reqs))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().message, "a,b");

    let yes = |s: &str| Some(s.to_string());
    assert_eq!(
        *headers.lock().unwrap(),
        [
            [yes("yes"), yes("Bearer token"), yes("gzip"), yes("set")],
            [yes("yes"), yes("Bearer token"), None, yes("set")],
            [yes("yes"), yes("Bearer token"), yes("gzip"), yes("set")],
        ]
    );
    assert_eq!(
        *seen.started.lock().unwrap(),
        [
            CallKind::Unary,
            CallKind::ServerStreaming,
            CallKind::ClientStreaming
        ]
    );
    // finish_call ran once per call, with the status and the server's address.
    assert_eq!(
        *seen.finished.lock().unwrap(),
        [(Code::Ok, Some(srv.addr)); 3]
    );
}

#[tokio::test]
async fn a_channel_interceptor_rejects_a_call_under_a_stack_before_the_network() {
    let (srv, headers) = recording_server().await;
    let seen = Arc::new(Seen::default());
    let channel = Channel::builder(format!("http://{}", srv.addr))
        .interceptor(Recorder {
            seen: Arc::clone(&seen),
            reject: true,
        })
        .connect()
        .await
        .unwrap();
    let svc = ServiceBuilder::new().concurrency_limit(4).service(channel);
    let err = svc
        .unary::<_, EchoReply>("/test.Echo/Unary", Request::new(echo("no", 0, 0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "interceptor says no");
    assert!(
        headers.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
    assert_eq!(seen.started.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn raw_requests_get_the_channel_call_credentials() {
    use grpc_runtime::client::credentials::{allow_insecure, MetadataCredentials};
    let (srv, headers) = recording_server().await;
    let mut channel = Channel::builder(format!("http://{}", srv.addr))
        .call_credentials(allow_insecure(
            MetadataCredentials::bearer_token("raw").unwrap(),
        ))
        .connect()
        .await
        .unwrap();
    poll_fn(|cx| Service::<http::Request<Full<Bytes>>>::poll_ready(&mut channel, cx))
        .await
        .unwrap();
    let resp = channel
        .call(raw_request("/test.Echo/Unary", frame(&echo("raw", 0, 0))))
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap();
    assert_eq!(
        body.trailers().unwrap().get("grpc-status").unwrap(),
        "0",
        "{body:?}"
    );
    assert_eq!(
        *headers.lock().unwrap(),
        [[None, Some("Bearer raw".to_string()), None, None]]
    );
}
