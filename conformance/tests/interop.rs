//! Ours-against-ours: our interop server (in-process, real TCP on 127.0.0.1, plaintext and
//! TLS) against every interop client case; a deliberately wrong server to prove the cases
//! can fail; and the two binaries end to end with grpc-style flags.

mod support;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conformance::client::{run_case, ClientConfig, CASES};
use conformance::pb::test_service_server::{TestService, TestServiceServer};
use conformance::pb::{Empty, Payload, SimpleRequest, SimpleResponse};
use grpc_runtime::server::Server;
use grpc_runtime::{Request, Response, Status};
use support::start_server;
use tokio::net::TcpListener;

fn config(addr: SocketAddr, tls: bool) -> ClientConfig {
    let mut cfg = ClientConfig::new("127.0.0.1", addr.port());
    if tls {
        cfg.use_tls = true;
        cfg.use_test_ca = true;
        cfg.server_host_override = Some("foo.test.google.fr".into());
    }
    cfg.soak.iterations = 10;
    cfg.soak.overall_timeout = Duration::from_secs(60);
    cfg.soak.max_latency = Duration::from_secs(5);
    cfg
}

/// Runs every case, each bounded by a timeout; returns (case, error) for the failures.
async fn run_all(cfg: &ClientConfig) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    for case in CASES {
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(60), run_case(cfg, case)).await;
        let outcome = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("timed out after 60 s".to_string()),
        };
        eprintln!(
            "{case:32} {:>6} ms  {}",
            t0.elapsed().as_millis(),
            outcome.as_deref().unwrap_or("pass")
        );
        if let Some(e) = outcome {
            failures.push((case.to_string(), e));
        }
    }
    failures
}

fn report(mode: &str, failures: Vec<(String, String)>) {
    assert!(
        failures.is_empty(),
        "{mode}: {} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures
            .iter()
            .map(|(c, e)| format!("  {c}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_vs_ours_plaintext_every_case() {
    let (addr, _stop) = start_server(false).await;
    report("plaintext", run_all(&config(addr, false)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_vs_ours_tls_every_case() {
    let (addr, _stop) = start_server(true).await;
    report("TLS", run_all(&config(addr, true)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_wrong_server_name_fails() {
    let (addr, _stop) = start_server(true).await;
    let mut cfg = config(addr, true);
    cfg.server_host_override = Some("wrong.example.com".into());
    let err = run_case(&cfg, "empty_unary").await.unwrap_err();
    assert!(err.contains("Unavailable"), "{err}");
}

/// A server that gets everything slightly wrong.
struct WrongService;

impl TestService for WrongService {
    async fn empty_call(&self, _r: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        r: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        // Ignores expect_compressed and response_status, and answers one byte short.
        let n = (r.get_ref().response_size.max(1) - 1) as usize;
        Ok(Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: 0,
                body: vec![0; n],
            }),
            ..Default::default()
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_fail_against_a_wrong_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(TestServiceServer::new(WrongService))
            .serve_with_incoming(listener),
    );
    let cfg = config(addr, false);
    let expect = [
        ("large_unary", "314158 bytes, expected 314159"),
        ("client_compressed_unary", "expected status InvalidArgument"),
        ("status_code_and_message", "UnaryCall succeeded"),
        ("custom_metadata", "314158 bytes"),
        ("server_streaming", "Unimplemented"),
        ("ping_pong", "Unimplemented"),
        ("cancel_after_begin", "completed before it was cancelled"),
        ("rpc_soak", "soak iterations failed"),
    ];
    for (case, want) in expect {
        let err = run_case(&cfg, case).await.expect_err(case);
        assert!(
            err.contains(want),
            "{case}: error {err:?} does not mention {want:?}"
        );
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binaries, end to end: `--flag=value` and `--flag value` forms, exit codes.
#[test]
fn binaries_end_to_end() {
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_interop_server"))
        .args([
            "--port",
            &port.to_string(),
            "--use_tls=true",
            "--host=127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "interop_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_interop_client"))
            .args([
                "--server_host=127.0.0.1",
                "--server_port",
                &port.to_string(),
                "--use_tls",
                "--use_test_ca=true",
            ])
            .args(["--server_host_override", "foo.test.google.fr"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = client(&[
        "--test_case=large_unary",
        "--additional_metadata=x-user:abc;x-trace-bin:\u{1}",
    ]);
    let ok_err = String::from_utf8_lossy(&ok.stderr).to_string();
    let soak = client(&[
        "--test_case",
        "rpc_soak",
        "--soak_iterations=3",
        "--soak_max_failures",
        "0",
    ]);
    let soak_err = String::from_utf8_lossy(&soak.stderr).to_string();
    let bad_case = client(&["--test_case=no_such_case"]);
    let bad_flag = client(&["--no_such_flag=1"]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(ok.status.success(), "large_unary failed: {ok_err}");
    assert!(soak.status.success(), "rpc_soak failed: {soak_err}");
    assert_eq!(
        soak_err.matches("soak iteration: ").count(),
        3,
        "{soak_err}"
    );
    assert!(
        soak_err.contains("soak iteration: 2 elapsed_ms: "),
        "{soak_err}"
    );
    assert_eq!(bad_case.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_case.stderr).contains("unknown test case"));
    assert_eq!(bad_flag.status.code(), Some(2));
}

#[test]
fn client_without_server_fails_quickly() {
    let port = free_port();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_interop_client"))
        .args([
            "--server_host=127.0.0.1",
            &format!("--server_port={port}"),
            "--test_case=empty_unary",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unavailable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Server features no client case exercises: HalfDuplexCall ordering, interval_us,
/// CacheableUnaryCall, unsupported response_type, echo status on StreamingOutputCall,
/// echo metadata on a streaming call's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_features_beyond_the_client_cases() {
    use conformance::client::Recorder;
    use conformance::pb::test_service_client::TestServiceClient;
    use conformance::pb::{EchoStatus, ResponseParameters, StreamingOutputCallRequest};
    use grpc_runtime::Code;

    let (addr, _stop) = start_server(false).await;
    let cfg = config(addr, false);
    let client = TestServiceClient::new(cfg.channel(&Recorder::default()).unwrap());
    let params = |size: i32, interval_us: i32| ResponseParameters {
        size,
        interval_us,
        compressed: None,
    };

    // HalfDuplexCall: nothing comes back before the half-close, then every response in order.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<StreamingOutputCallRequest>();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(StreamingOutputCallRequest {
        response_parameters: vec![params(3, 0), params(1, 0)],
        ..Default::default()
    })
    .unwrap();
    tx.send(StreamingOutputCallRequest {
        response_parameters: vec![params(2, 0)],
        ..Default::default()
    })
    .unwrap();
    let mut responses = client.half_duplex_call(stream).await.unwrap().into_inner();
    let early = tokio::time::timeout(Duration::from_millis(200), responses.message()).await;
    assert!(
        early.is_err(),
        "HalfDuplexCall answered before the half-close: {early:?}"
    );
    drop(tx);
    let mut sizes = Vec::new();
    while let Some(m) = responses.message().await.unwrap() {
        sizes.push(m.payload.unwrap_or_default().body.len());
    }
    assert_eq!(sizes, [3, 1, 2]);

    // interval_us accumulates: 3 x 100 ms before the last response.
    let t0 = Instant::now();
    let req = StreamingOutputCallRequest {
        response_parameters: vec![params(1, 100_000), params(1, 100_000), params(1, 100_000)],
        ..Default::default()
    };
    let mut s = client
        .streaming_output_call(req)
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "interval_us not observed: {:?}",
        t0.elapsed()
    );

    // CacheableUnaryCall: a timestamp payload that differs between calls.
    let a = client
        .cacheable_unary_call(SimpleRequest::default())
        .await
        .unwrap()
        .into_inner();
    let b = client
        .cacheable_unary_call(SimpleRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (a, b) = (a.payload.unwrap().body, b.payload.unwrap().body);
    assert!(!a.is_empty() && a.iter().all(u8::is_ascii_digit));
    assert_ne!(a, b);

    // Unsupported response_type.
    let err = client
        .unary_call(SimpleRequest {
            response_type: 7,
            response_size: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Echo status after the responses of a StreamingOutputCall, with the echoed trailer.
    let mut req = Request::new(StreamingOutputCallRequest {
        response_parameters: vec![params(5, 0)],
        response_status: Some(EchoStatus {
            code: 9,
            message: "precondition".into(),
        }),
        ..Default::default()
    });
    req.metadata_mut()
        .insert_bin("x-grpc-test-echo-trailing-bin", vec![1u8, 2])
        .unwrap();
    let mut s = client
        .streaming_output_call(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.message()
            .await
            .unwrap()
            .unwrap()
            .payload
            .unwrap()
            .body
            .len(),
        5
    );
    let err = s.message().await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, "precondition")
    );
    assert_eq!(
        err.metadata()
            .get_bin("x-grpc-test-echo-trailing-bin")
            .map(|b| b.to_vec()),
        Some(vec![1, 2])
    );
}

/// The server checks `expect_compressed` per message in both directions, as the C++
/// interop server: true needs a compressed message, false (or absent) an uncompressed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_checks_expect_compressed_both_ways() {
    use conformance::client::Recorder;
    use conformance::pb::test_service_client::TestServiceClient;
    use conformance::pb::{BoolValue, StreamingInputCallRequest};
    use grpc_runtime::{Code, CompressionEncoding, OutboundMessage, OutboundStream};

    let (addr, _stop) = start_server(false).await;
    let cfg = config(addr, false);
    let client = TestServiceClient::new(cfg.channel(&Recorder::default()).unwrap());
    let gzip = Some(CompressionEncoding::Gzip);
    // unary: (expect_compressed, call encoding) -> ok?
    for (expect, enc, ok) in [
        (Some(true), gzip, true),
        (Some(true), None, false),
        (Some(false), gzip, false),
        (Some(false), None, true),
        (None, gzip, false),
        (None, None, true),
    ] {
        let mut req = Request::new(SimpleRequest {
            response_size: 3,
            expect_compressed: expect.map(|value| BoolValue { value }),
            ..Default::default()
        });
        req.set_compression(enc);
        let r = client.unary_call(req).await;
        match (ok, r) {
            (true, Ok(r)) => assert_eq!(r.into_inner().payload.unwrap().body.len(), 3),
            (false, Err(e)) => assert_eq!(e.code(), Code::InvalidArgument, "{e:?}"),
            (_, r) => panic!("expect {expect:?} enc {enc:?}: {r:?}"),
        }
    }
    // streaming, one gzip call: each message is checked against its own flag
    let input = |expect: bool| StreamingInputCallRequest {
        payload: Some(Payload {
            r#type: 0,
            body: vec![0; 10],
        }),
        expect_compressed: Some(BoolValue { value: expect }),
    };
    for (msgs, ok) in [
        (
            vec![
                OutboundMessage::new(input(true)),
                OutboundMessage::new(input(false)).compress(false),
            ],
            true,
        ),
        (
            vec![
                OutboundMessage::new(input(true)),
                OutboundMessage::new(input(false)),
            ],
            false,
        ),
        (
            vec![OutboundMessage::new(input(true)).compress(false)],
            false,
        ),
    ] {
        let n = msgs.len();
        let mut req = Request::new(OutboundStream::new(futures_util::stream::iter(msgs)));
        req.set_compression(gzip);
        match (ok, client.streaming_input_call(req).await) {
            (true, Ok(r)) => assert_eq!(r.into_inner().aggregated_payload_size, 10 * n as i32),
            (false, Err(e)) => assert_eq!(e.code(), Code::InvalidArgument, "{e:?}"),
            (_, r) => panic!("{r:?}"),
        }
    }
}

/// Hostile requests end their call with a status, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused() {
    use conformance::client::Recorder;
    use conformance::pb::test_service_client::TestServiceClient;
    use conformance::pb::{ResponseParameters, StreamingOutputCallRequest};
    use grpc_runtime::Code;

    let (addr, _stop) = start_server(false).await;
    let client = TestServiceClient::new(config(addr, false).channel(&Recorder::default()).unwrap());
    for size in [i32::MAX, -1] {
        let err = client
            .unary_call(SimpleRequest {
                response_size: size,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "size {size}: {err:?}");
    }
    let req = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 1,
                interval_us: 0,
                compressed: None,
            },
            ResponseParameters {
                size: i32::MAX,
                interval_us: 0,
                compressed: None,
            },
        ],
        ..Default::default()
    };
    let mut s = client
        .streaming_output_call(req)
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_some());
    assert_eq!(s.message().await.unwrap_err().code(), Code::InvalidArgument);
    // A client that gives up during a long interval_us: the call ends, the server still answers.
    let mut req = Request::new(StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size: 1,
            interval_us: i32::MAX,
            compressed: None,
        }],
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(100));
    // The server sends its headers with the first message, so the deadline ends the
    // wait for them (as against grpc-go).
    let err = match client.streaming_output_call(req).await {
        Err(e) => e,
        Ok(r) => r.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(err.code(), Code::DeadlineExceeded);
    client.empty_call(Empty {}).await.unwrap();
}

/// A server that never answers UnaryCall in time.
struct SlowService;

impl TestService for SlowService {
    async fn unary_call(
        &self,
        _r: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Err(Status::internal("too late"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_stops_at_the_overall_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(TestServiceServer::new(SlowService))
            .serve_with_incoming(listener),
    );
    let mut cfg = config(addr, false);
    cfg.soak.overall_timeout = Duration::from_millis(500);
    for case in ["rpc_soak", "channel_soak"] {
        let t0 = Instant::now();
        let err = run_case(&cfg, case).await.unwrap_err();
        assert!(
            err.contains("only 0 of 10 soak iterations completed"),
            "{case}: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{case} took {:?}",
            t0.elapsed()
        );
    }
}

/// The interop server serves health and reflection (one line, `add_reflection`), so
/// grpcurl-style tools work against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_server_serves_health_and_reflection() {
    use futures_util::StreamExt;
    use grpc_runtime::services::health::{health_client::HealthClient, HealthCheckRequest};
    use grpc_runtime::services::reflection::v1::server_reflection_request::MessageRequest;
    use grpc_runtime::services::reflection::v1::server_reflection_response::MessageResponse;
    use grpc_runtime::services::reflection::v1::{
        server_reflection_client::ServerReflectionClient, ServerReflectionRequest,
    };

    let (addr, _stop) = start_server(false).await;
    // The generated connect shortcut.
    let health = HealthClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let ch = health.channel().clone();
    for service in ["", "grpc.testing.TestService"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(r.get_ref().status, 1, "{service:?} SERVING");
    }
    let reflection = ServerReflectionClient::new(ch);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter(vec![ask]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(answer)) = answers.next().await else {
        panic!("no reflection answer")
    };
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"grpc.testing.TestService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}
