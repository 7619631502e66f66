//! Runs the demo and every feature example in-process (the same entry points as the
//! binaries; servers on 127.0.0.1:0 over real HTTP/2) and checks the key lines each
//! reports. Every `run` also checks its own answers and fails on a wrong one.

use examples::{features, Transcript};

fn assert_lines(out: &Transcript, expected: &[&str]) {
    let lines = out.lines();
    for needle in expected {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no line contains {needle:?} in:\n{}",
            lines.join("\n")
        );
    }
}

/// Asserts that the lines containing the needles appear in this order.
fn assert_order(out: &Transcript, needles: &[&str]) {
    let lines = out.lines();
    let mut at = 0;
    for needle in needles {
        match lines[at..].iter().position(|l| l.contains(needle)) {
            Some(i) => at += i + 1,
            None => panic!(
                "{needle:?} not found after line {at} in:\n{}",
                lines.join("\n")
            ),
        }
    }
}

#[tokio::test]
async fn demo() {
    let out = Transcript::new();
    examples::demo::run(&examples::routeguide::default_db_path(), &out)
        .await
        .unwrap();
    assert_lines(
        &out,
        &[
            "GetFeature (40.9146138, -74.6188906): \"Old Mill Bridge, 72 Station Road, Bramblewood\"",
            "GetFeature (0, 0): no feature there",
            "ListFeatures: 50 features",
            "RecordRoute: 10 points, 10 features,",
            "RouteChat: 3 notes back",
            "all four call kinds OK",
        ],
    );
    assert_order(
        &out,
        &[
            "got note \"First message\"",
            "got note \"Second message\"",
            "got note \"Third message\"",
        ],
    );
}

#[tokio::test]
async fn demo_fails_on_a_missing_database() {
    let out = Transcript::new();
    let err = examples::demo::run(std::path::Path::new("/nonexistent/db.json"), &out)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot read /nonexistent/db.json"),
        "{err}"
    );
}

#[tokio::test]
async fn helloworld() {
    use examples::pb::helloworld::greeter_server::GreeterServer;
    let server = examples::RunningServer::start(
        grpc_runtime::server::Server::builder()
            .add_service(GreeterServer::new(examples::helloworld::MyGreeter)),
    )
    .await
    .unwrap();
    let out = Transcript::new();
    let (a, b) = examples::helloworld::run_client(&server.url(), "world", &out)
        .await
        .unwrap();
    assert_eq!(a, "Hello world");
    assert_eq!(b, "Hello again world");
    assert_eq!(
        out.lines(),
        ["Greeting: Hello world", "Greeting: Hello again world"]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata() {
    let out = Transcript::new();
    features::metadata::run(&out).await.unwrap();
    assert_lines(
        &out,
        &[
            "server unary: client-id = unary-client, client-bin = [de, ad, be, ef, 00, ff]",
            "client unary: trailer call-summary = \"unary done\", echoed-client-id = \"unary-client\"",
            "client server-streaming: header location = \"MTV\"",
            "client server-streaming: trailer call-summary = \"server-streaming done\"",
            "client bidi: replies [\"ping 1\", \"ping 2\"]",
            "client bidi: trailer call-summary = \"bidi done\", echoed-client-id = \"bidi-client\"",
        ],
    );
}

#[tokio::test]
async fn errors() {
    let out = Transcript::new();
    features::errors::run(&out).await.unwrap();
    assert_lines(
        &out,
        &[
            "SayHello(\"\"): INVALID_ARGUMENT",
            "second SayHello(world): RESOURCE_EXHAUSTED",
            "QuotaFailure violation: subject \"name:world\", description \"Limit one greeting per person\"",
            "SayHelloAgain (not implemented by this server): UNIMPLEMENTED",
            "UnaryEcho (service not on this server): UNIMPLEMENTED",
            "SayHello to a stopped server: UNAVAILABLE",
        ],
    );
}

#[tokio::test]
async fn deadlines() {
    let out = Transcript::new();
    features::deadlines::run(&out).await.unwrap();
    assert_lines(
        &out,
        &[
            "client: timeout 300 ms on a slow call -> DEADLINE_EXCEEDED",
            "back server: \"delay\" ended early: ",
            "back server: \"propagate me\", deadline in ",
            "client: timeout 400 ms, slow back server behind the middle -> DEADLINE_EXCEEDED",
            "back server: \"delay via middle\" ended early",
        ],
    );
}

#[tokio::test]
async fn cancellation() {
    let out = Transcript::new();
    features::cancellation::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "client: got \"hello 2\"",
            "client: cancelling the bidi call",
            "server: bidi call cancelled (CANCELLED)",
            "client: gave up on the unary call",
            "server: unary call cancelled (CANCELLED)",
            "client: new call on the same channel -> \"after cancel\"",
            "client: that call ended with OK",
        ],
    );
    // ServerContext::cancellation() is None for the call that ended normally.
    assert_lines(&out, &["server: bidi call finished normally"]);
}

#[tokio::test]
async fn compression() {
    let out = Transcript::new();
    features::compression::run(&out).await.unwrap();
    assert_lines(
        &out,
        &[
            "client: per-call gzip, first call on the channel: request gzip, reply gzip",
            "client: per-call gzip: request gzip, reply gzip",
            "client: no compression: request identity, reply gzip",
            "client: per-channel gzip #1: request gzip, reply gzip",
            "client: per-channel gzip #2: request gzip, reply gzip",
            "client: per-channel gzip #3: request gzip, reply gzip (response arrived in gzip)",
            "client: opted out on the gzip channel: request identity, reply gzip (response arrived in gzip)",
        ],
    );
}

#[tokio::test]
async fn interceptors() {
    let out = Transcript::new();
    features::interceptors::run(&out).await.unwrap();
    // Client side, in order (the server logs its end after the status went out, so its
    // lines are checked on their own).
    assert_order(
        &out,
        &[
            "client: start /grpc.examples.echo.Echo/UnaryEcho (Unary) call #1",
            "client: end /grpc.examples.echo.Echo/UnaryEcho: OK in ",
            "with token: unary reply \"with token\"",
            "client: start /grpc.examples.echo.Echo/ServerStreamingEcho (ServerStreaming) call #2",
            "client: end /grpc.examples.echo.Echo/ServerStreamingEcho: OK in ",
            "with token: streaming call got 3 replies",
            "client: end /grpc.examples.echo.Echo/UnaryEcho: UNAUTHENTICATED in ",
            "without token: unary failed: UNAUTHENTICATED (missing or invalid token)",
            "without token: streaming call failed: UNAUTHENTICATED",
            "wrong token: unary failed: UNAUTHENTICATED",
            "wrong token: streaming call failed: UNAUTHENTICATED",
        ],
    );
    assert_order(
        &out,
        &[
            "server: start /grpc.examples.echo.Echo/UnaryEcho from 127.0.0.1:",
            "server: end /grpc.examples.echo.Echo/UnaryEcho: OK in ",
            "server: start /grpc.examples.echo.Echo/ServerStreamingEcho from 127.0.0.1:",
            "server: end /grpc.examples.echo.Echo/ServerStreamingEcho: OK in ",
            "server: end /grpc.examples.echo.Echo/UnaryEcho: UNAUTHENTICATED in ",
            "server: end /grpc.examples.echo.Echo/ServerStreamingEcho: UNAUTHENTICATED in ",
        ],
    );
    // finish_call got each call's own number (set in start) and the server's address.
    let lines = out.lines();
    let ends: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("client: end"))
        .collect();
    assert_eq!(ends.len(), 4, "{ends:?}");
    for (end, n) in ends.iter().zip([1, 2, 1, 2]) {
        assert!(
            end.contains(&format!(" ms (call #{n}, server 127.0.0.1:")),
            "{end}"
        );
    }
    // Six calls reached the server; the handler ran only for the two with the token.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("server: start"))
            .count(),
        6
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("server: end") && l.contains(": OK in"))
            .count(),
        2
    );
}

#[tokio::test]
async fn multiplexing() {
    let out = Transcript::new();
    features::multiplexing::run(&out).await.unwrap();
    assert_lines(
        &out,
        &[
            "Greeter client: \"Hello multiplexer\"",
            "Echo client: \"this is examples/multiplexing\"",
            "10 concurrent calls (5 per client) on one channel: all OK",
        ],
    );
}

#[tokio::test]
async fn name_resolving() {
    let out = Transcript::new();
    features::name_resolving::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "registry: echo = [backend-1, backend-2]",
            "resolver: \"echo\" -> [backend-1, backend-2], pushed to the channel",
            "client: connected to registry:///echo (round_robin, from the resolver's service config)",
            "client: 10 calls -> backend-1: 5, backend-2: 5",
            "registry: echo = [backend-2, backend-3] (while 4 clients keep calling)",
            "resolver: \"echo\" -> [backend-2, backend-3], pushed to the channel",
            " failed (backend-1: ",
            "client: 10 calls -> backend-2: 5, backend-3: 5",
            "resolver: \"echo\" has no instances, pushed an error to the channel",
            "client: 4 calls -> backend-2: 2, backend-3: 2 (the channel keeps its last addresses)",
            "client: channel closed; the resolver's task stopped (registry watchers: 0)",
        ],
    );
    assert_lines(
        &out,
        &[
            "refused: ",
            "this registry has no authority part; use registry:///SERVICE",
            " calls during the change, 0 failed",
        ],
    );
}

#[tokio::test]
async fn load_balancing() {
    let out = Transcript::new();
    features::load_balancing::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "pick_first: 10 calls -> backend-1: 10",
            "round_robin: 30 calls -> backend-1: 10, backend-2: 10, backend-3: 10",
            "weighted_random: config {\"default_weight\": 0} refused: ",
            "weighted_random: config {\"default_weight\": \"heavy\"} refused: ",
            "weighted_random: 1000 calls -> backend-1: ",
            "weighted_random: on_done saw 1000 OK, 0 failed (backend-1: ",
        ],
    );
    assert_lines(
        &out,
        &["default_weight must be an integer from 1 to 4294967295, got 0"],
    );
}

#[tokio::test]
async fn authz() {
    let out = Transcript::new();
    features::authz::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "alice (admin): UnaryEcho: OK (alice (admin))",
            "alice (admin): ServerStreamingEcho: OK (2 replies)",
            "alice (admin): BidirectionalStreamingEcho: PERMISSION_DENIED (unauthorized RPC request rejected)",
            "bob (user): UnaryEcho: OK",
            "bob (user): ServerStreamingEcho: PERMISSION_DENIED (unauthorized RPC request rejected)",
            "anonymous: UnaryEcho: PERMISSION_DENIED",
            "bob claiming admin: ServerStreamingEcho: PERMISSION_DENIED",
        ],
    );
}

#[tokio::test]
async fn authentication() {
    let out = Transcript::new();
    features::authentication::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "client: hello 1 from CN=grpc-rust test client,O=grpc-rust,C=XX",
            "client: hello 2 from CN=grpc-rust test client,O=grpc-rust,C=XX",
            "client: token fetched 1 time(s) for 2 calls",
            "client with a wrong token: UNAUTHENTICATED (invalid token)",
            "client over plaintext: UNAUTHENTICATED",
        ],
    );
}

#[tokio::test]
async fn metadata_interceptor() {
    let out = Transcript::new();
    features::metadata_interceptor::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "server interceptor: /grpc.examples.echo.Echo/UnaryEcho from client-id metadata-interceptor-client",
            "server UnaryEcho: key1 from metadata: [\"value1\"]",
            "client UnaryEcho: header interceptor = Some(\"seen\"), trailers interceptor-trailer = Some(\"added\"), handler = Some(\"done\")",
            "server BidirectionalStreamingEcho: key1 from metadata: [\"value1\"]",
            "client BidirectionalStreamingEcho: [\"hello world\"]",
            "client BidirectionalStreamingEcho: header interceptor = Some(\"seen\"), trailers interceptor-trailer = Some(\"added\"), handler = Some(\"done\")",
            "server interceptor: /grpc.examples.echo.Echo/UnaryEcho without client-id: refused",
            "client without the interceptor: INVALID_ARGUMENT (missing metadata)",
        ],
    );
}

#[tokio::test]
async fn retry() {
    let out = Transcript::new();
    features::retry::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "server: \"no policy\" attempt 1: UNAVAILABLE",
            "client without a retry policy: UNAVAILABLE",
            "server: \"try hard\" attempt 1: UNAVAILABLE",
            "server: \"try hard\" attempt 3: UNAVAILABLE",
            "server: \"try hard\" attempt 4: OK",
            "client with maxAttempts 4: \"try hard (served on attempt 4)\"",
            "server: \"give up\" attempt 3: UNAVAILABLE",
            "client with maxAttempts 3: UNAVAILABLE (flaky server: attempt 3 of \"give up\" fails)",
        ],
    );
    // Exactly one attempt without a policy; none beyond the limit with one.
    assert!(!out.contains("\"no policy\" attempt 2"));
    assert!(!out.contains("\"give up\" attempt 4"));
}

#[tokio::test]
async fn wait_for_ready() {
    let out = Transcript::new();
    features::wait_for_ready::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "client: three calls to 127.0.0.1:",
            "server listening on 127.0.0.1:",
            "[1] wait-for-ready off, 10 s deadline: wanted = UNAVAILABLE, got = UNAVAILABLE after ",
            "[2] wait-for-ready on, 10 s deadline: wanted = OK, got = OK after ",
            "[3] wait-for-ready on, 500 ms deadline: wanted = DEADLINE_EXCEEDED, got = DEADLINE_EXCEEDED after ",
        ],
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn unix_abstract() {
    let out = Transcript::new();
    features::unix_abstract::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "server listening on unix-abstract:grpc-rust-example-",
            "client: connected to unix-abstract:grpc-rust-example-",
            "server: \"hello 1\" from peer None",
            "client: \"hello 1 (over an abstract unix socket)\"",
            "client: \"hello 2 (over an abstract unix socket)\"",
            " is free again",
        ],
    );
}

#[tokio::test]
async fn health() {
    let out = Transcript::new();
    features::health::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "watcher: SERVING",
            "backend-1: grpc.examples.echo.Echo -> NOT_SERVING",
            "watcher: NOT_SERVING",
            "backend-1: grpc.examples.echo.Echo -> SERVING",
            "watcher: SERVING",
            "client: 10 calls -> backend-1: 5, backend-2: 5",
            "backend-2: grpc.examples.echo.Echo -> NOT_SERVING",
            "client: 10 calls -> backend-1: 10",
            "client: no backend serving: UNAVAILABLE",
            "client: 10 calls -> backend-1: 5, backend-2: 5",
            "backend-1: shutting down",
            "watcher: NOT_SERVING",
        ],
    );
}

#[tokio::test]
async fn reflection() {
    let out = Transcript::new();
    features::reflection::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "client: services [\"grpc.examples.echo.Echo\", \"grpc.reflection.v1.ServerReflection\", \"grpc.reflection.v1alpha.ServerReflection\", \"helloworld.Greeter\"]",
            "client: service grpc.examples.echo.Echo (in echo/echo.proto)",
            "client:   rpc UnaryEcho(.grpc.examples.echo.EchoRequest) returns (.grpc.examples.echo.EchoResponse)",
            "client:   rpc ServerStreamingEcho(.grpc.examples.echo.EchoRequest) returns (stream .grpc.examples.echo.EchoResponse)",
            "client:   rpc ClientStreamingEcho(stream .grpc.examples.echo.EchoRequest) returns (.grpc.examples.echo.EchoResponse)",
            "client:   rpc BidirectionalStreamingEcho(stream .grpc.examples.echo.EchoRequest) returns (stream .grpc.examples.echo.EchoResponse)",
            "client: no.such.Service -> NOT_FOUND",
        ],
    );
}

#[tokio::test]
async fn graceful_stop() {
    let out = Transcript::new();
    features::graceful_stop::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "client: a first call -> backend-1",
            "backend-1: call of 500 ms started",
            "backend-1: shutdown started (on_shutdown hook)",
            "client: 3 new calls during the shutdown -> backend-2: 3",
            "client: a new channel to backend-1 only: ",
            "backend-1: call of 500 ms finished",
            "client: the call in flight completed -> backend-1",
            "backend-1: stopped ",
            "backend-3: call of 5000 ms started",
            "backend-3: shutdown started (on_shutdown hook)",
            "backend-3: call of 5000 ms cancelled (CANCELLED)",
            "backend-3: stopped ",
        ],
    );
    assert_lines(&out, &["client: the call longer than the grace period -> "]);
}

#[tokio::test]
async fn flow_control() {
    let out = Transcript::new();
    features::flow_control::run(&out).await.unwrap();
    for label in ["64 KiB window", "1 MiB window"] {
        assert_order(
            &out,
            &[
                &format!("server [{label}]: sending 128 messages of 16 KiB"),
                &format!("server [{label}]: sending blocked after "),
                &format!("server [{label}]: sent 128 messages"),
                &format!("client [{label}]: read 128 messages"),
            ],
        );
    }
    assert_lines(
        &out,
        &[
            "client [64 KiB window]: not reading for 600 ms",
            "buffered ahead of a reader that does not read: ",
        ],
    );
}

#[tokio::test]
async fn keepalive() {
    let out = Transcript::new();
    features::keepalive::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "lenient server: connection #1 opened",
            "client: one call, then idle for 1 s with keepalive every 200 ms",
            "lenient server: read ",
            "client: channel still READY: true",
            "strict server: connection #1 opened",
            "strict server: connection #1 closed after ",
            "idle-limited server: connection #1 opened",
            "idle-limited server: connection #1 closed after ",
            "idle-limited server: connection #2 opened",
            "age-limited server: connection #1 opened",
            "age-limited server: connection #1 closed after ",
            "age-limited server: connection #2 opened",
        ],
    );
    assert_lines(
        &out,
        &[
            "client: channel Idle after ",
            " ms (GOAWAY too_many_pings); keepalive time now Some(400ms)",
            " ms without calls",
            "client: the next call reconnected (server connections opened: 2)",
            " calls in 1.2 s, none failed, over ",
        ],
    );
}

#[tokio::test]
async fn rest_grpc() {
    // REST over HTTP/1.1 and HTTP/2, gRPC, health and /metrics on one port.
    let out = Transcript::new();
    examples::rest_grpc::run(&out).await.unwrap();
    assert_order(
        &out,
        &[
            "REST over HTTP/1.1: GET /hello -> hello from axum",
            "REST over HTTP/2: GET /hello -> hello from axum",
            "gRPC: UnaryEcho -> \"one port\"",
            "gRPC health: grpc.examples.echo.Echo SERVING",
            "/metrics (same port): grpc_server_call_started_total",
        ],
    );
}
