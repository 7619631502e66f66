//! Runs the built binaries the way a user does (`cargo run -p examples --bin NAME`), and
//! checks exit status and key output lines: the demo, each feature example, and the
//! helloworld and routeguide server/client pairs (servers on `--addr 127.0.0.1:0`, the
//! port read from their first output line).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn run(exe: &str, args: &[&str]) -> String {
    let out = Command::new(exe).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{exe} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_contains(stdout: &str, needles: &[&str]) {
    for n in needles {
        assert!(stdout.contains(n), "missing {n:?} in:\n{stdout}");
    }
}

/// A server binary started on an ephemeral port; killed on drop.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(exe: &str, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        ServerProcess {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_binary() {
    let stdout = run(env!("CARGO_BIN_EXE_demo"), &[]);
    assert_contains(
        &stdout,
        &[
            "server listening on 127.0.0.1:",
            "GetFeature (40.9146138, -74.6188906): \"Old Mill Bridge, 72 Station Road, Bramblewood\"",
            "GetFeature (0, 0): no feature there",
            "ListFeatures: 50 features",
            "RecordRoute: 10 points, 10 features,",
            "RouteChat: 3 notes back",
            "all four call kinds OK",
        ],
    );
}

#[test]
fn demo_binary_fails_on_a_bad_database() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--db", "/nonexistent/db.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("demo failed: cannot read /nonexistent/db.json"));
}

#[test]
fn feature_binaries() {
    for (exe, name, key) in [
        (env!("CARGO_BIN_EXE_metadata"), "metadata", "client unary: trailer call-summary = \"unary done\""),
        (env!("CARGO_BIN_EXE_errors"), "errors", "QuotaFailure violation: subject \"name:world\""),
        (env!("CARGO_BIN_EXE_deadlines"), "deadlines", "-> DEADLINE_EXCEEDED"),
        (env!("CARGO_BIN_EXE_cancellation"), "cancellation", "server: bidi call cancelled (CANCELLED)"),
        (env!("CARGO_BIN_EXE_compression"), "compression", "request gzip, reply gzip"),
        (env!("CARGO_BIN_EXE_interceptors"), "interceptors", "without token: unary failed: UNAUTHENTICATED"),
        (env!("CARGO_BIN_EXE_multiplexing"), "multiplexing", "10 concurrent calls (5 per client) on one channel: all OK"),
        (env!("CARGO_BIN_EXE_name-resolving"), "name_resolving", "client: 10 calls -> backend-2: 5, backend-3: 5"),
        (env!("CARGO_BIN_EXE_load-balancing"), "load_balancing", "round_robin: 30 calls -> backend-1: 10, backend-2: 10, backend-3: 10"),
        (env!("CARGO_BIN_EXE_authentication"), "authentication", "client over plaintext: UNAUTHENTICATED"),
        (env!("CARGO_BIN_EXE_rest-grpc"), "rest_grpc", "/metrics (same port): grpc_server_call_started_total{grpc_method=\"grpc.examples.echo.Echo/UnaryEcho\"} 1"),
        (env!("CARGO_BIN_EXE_stats-monitoring"), "stats_monitoring", "scrape: client and server metrics present (method \"other\" for the missing method)"),
        (env!("CARGO_BIN_EXE_authz"), "authz", "bob (user): ServerStreamingEcho: PERMISSION_DENIED (unauthorized RPC request rejected)"),
        (env!("CARGO_BIN_EXE_metadata-interceptor"), "metadata_interceptor", "server UnaryEcho: key1 from metadata: [\"value1\"]"),
        (env!("CARGO_BIN_EXE_retry"), "retry", "client with maxAttempts 4: \"try hard (served on attempt 4)\""),
        (env!("CARGO_BIN_EXE_wait-for-ready"), "wait_for_ready", "[2] wait-for-ready on, 10 s deadline: wanted = OK, got = OK"),
        #[cfg(target_os = "linux")]
        (env!("CARGO_BIN_EXE_unix-abstract"), "unix_abstract", "client: \"hello 2 (over an abstract unix socket)\""),
        (env!("CARGO_BIN_EXE_health"), "health", "client: 10 calls -> backend-1: 10"),
        (env!("CARGO_BIN_EXE_reflection"), "reflection", "client: service grpc.examples.echo.Echo (in echo/echo.proto)"),
        (env!("CARGO_BIN_EXE_graceful-stop"), "graceful_stop", "client: the call in flight completed -> backend-1"),
        (env!("CARGO_BIN_EXE_flow-control"), "flow_control", "server [64 KiB window]: sending blocked after "),
        (env!("CARGO_BIN_EXE_keepalive"), "keepalive", "(GOAWAY too_many_pings); keepalive time now Some(400ms)"),
    ] {
        let stdout = run(exe, &[]);
        assert_contains(&stdout, &[key, &format!("{name} example: OK")]);
    }
}

#[test]
fn helloworld_server_and_client() {
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_helloworld-server"),
        &["--addr", "127.0.0.1:0"],
    );
    let stdout = run(
        env!("CARGO_BIN_EXE_helloworld-client"),
        &["--addr", &server.url, "--name", "gRPC"],
    );
    assert_eq!(stdout, "Greeting: Hello gRPC\nGreeting: Hello again gRPC\n");
}

#[test]
fn routeguide_server_and_client() {
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_routeguide-server"),
        &["--addr", "127.0.0.1:0"],
    );
    let stdout = run(
        env!("CARGO_BIN_EXE_routeguide-client"),
        &["--addr", &server.url],
    );
    assert_contains(
        &stdout,
        &[
            "GetFeature (40.9146138, -74.6188906): \"Old Mill Bridge, 72 Station Road, Bramblewood\"",
            "GetFeature (0, 0): no feature there",
            "ListFeatures: 50 features",
            "RecordRoute: 10 points, 10 features,",
            "got note \"First message\" at (0, 0.0000001)",
            "RouteChat: 3 notes back",
        ],
    );
    // The verbose client lists every feature.
    assert_eq!(stdout.lines().filter(|l| l.starts_with("  (")).count(), 50);
}

#[test]
fn client_binaries_fail_without_a_server() {
    for exe in [
        env!("CARGO_BIN_EXE_helloworld-client"),
        env!("CARGO_BIN_EXE_routeguide-client"),
    ] {
        // Port 1 on localhost: nothing listens there.
        let out = Command::new(exe)
            .args(["--addr", "http://127.0.0.1:1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{exe}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("failed"),
            "{exe}"
        );
    }
}

#[test]
fn server_binaries_reject_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_routeguide-server"))
        .args(["--addr", "127.0.0.1:0", "--db", "/nonexistent/db.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/db.json"));
    for exe in [
        env!("CARGO_BIN_EXE_helloworld-server"),
        env!("CARGO_BIN_EXE_routeguide-server"),
    ] {
        let out = Command::new(exe)
            .args(["--addr", "not an address"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{exe}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("bad --addr"),
            "{exe}"
        );
    }
}
