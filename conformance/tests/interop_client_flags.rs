//! interop_client's channel flags over real sockets: `--server_uri` (an `ipv4:` list of two
//! of our interop servers, a unix socket, TLS with a server name override),
//! `--service_config_json` (round_robin spreads rpc_soak over both servers; an invalid
//! config is a clean flag error) and the soak payload sizes. The servers run in-process;
//! the client is the `interop_client` binary or, for the log details, the library.

mod support;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conformance::client::{run_case, ClientConfig};
use conformance::pb::test_service_server::TestServiceServer;
use conformance::server::InteropService;
use grpc_runtime::server::Server;
use tokio::sync::oneshot;

const ROUND_ROBIN: &str = r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#;

/// Starts our interop server on an ephemeral 127.0.0.1 port, its address as text;
/// dropping the sender stops it.
async fn start_server(tls: bool) -> (String, oneshot::Sender<()>) {
    let (addr, stop) = support::start_server(tls).await;
    (addr.to_string(), stop)
}

/// Runs the interop_client binary with `args` (off the runtime's threads).
async fn client(args: &[&str]) -> (Output, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_interop_client"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out, stderr)
}

/// The `soak iteration:` lines of a run and how many named each peer.
fn peers(log: &str) -> (Vec<&str>, HashMap<String, usize>) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("soak iteration: "))
        .collect();
    let mut count = HashMap::new();
    for l in &lines {
        let peer = l
            .split(" peer: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("?");
        *count.entry(peer.to_string()).or_insert(0) += 1;
    }
    (lines, count)
}

/// A client configuration whose log lines are collected.
fn collecting(mut cfg: ClientConfig) -> (ClientConfig, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    cfg.log = Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string()));
    cfg.soak.max_latency = Duration::from_secs(5);
    cfg.soak.overall_timeout = Duration::from_secs(60);
    (cfg, lines)
}

/// rpc_soak through the binary against `ipv4:A,B` with a round_robin service config: every
/// iteration succeeds with the small sizes asked for, and both servers answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_soak_round_robin_over_two_servers() {
    let (a, _stop_a) = start_server(false).await;
    let (b, _stop_b) = start_server(false).await;
    let target = format!("ipv4:{a},{b}");
    let uri = format!("--server_uri={target}");
    let sc = format!("--service_config_json={ROUND_ROBIN}");
    // --server_host/--server_port point nowhere: --server_uri must win.
    let common = [
        uri.as_str(),
        sc.as_str(),
        "--server_host=192.0.2.1",
        "--server_port=1",
    ];
    let soak = [
        "--soak_iterations=20",
        "--soak_request_size=100",
        "--soak_response_size=200",
    ];
    let pace = [
        "--soak_min_time_ms_between_rpcs=10",
        "--soak_per_iteration_max_acceptable_latency_ms=5000",
    ];
    let args: Vec<&str> = common
        .iter()
        .chain(&soak)
        .chain(&pace)
        .copied()
        .chain(["--test_case=rpc_soak"])
        .collect();
    let (out, log) = client(&args).await;
    assert!(out.status.success(), "rpc_soak failed:\n{log}");
    let (lines, count) = peers(&log);
    assert_eq!(lines.len(), 20, "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(&format!("server_uri: {target} succeeded"))),
        "{log}"
    );
    assert_eq!(
        count.keys().filter(|p| **p == a || **p == b).count(),
        2,
        "both servers answer: {count:?}\n{log}"
    );
    assert_eq!(count.values().sum::<usize>(), 20, "{count:?}");
    assert!(
        log.contains(&format!(
            "(server_uri: {target}) soak test ran: 20 / 20 iterations. Total failures: 0."
        )),
        "{log}"
    );

    // A negative size is a flag error.
    let mut wrong = args.clone();
    wrong.retain(|a| !a.starts_with("--soak_response_size"));
    wrong.push("--soak_response_size=-1");
    let (out, log) = client(&wrong).await;
    assert_eq!(out.status.code(), Some(2), "{log}");

    // channel_soak: a new channel (with the same service config) per iteration.
    let mut ch = args.clone();
    ch.retain(|a| !a.starts_with("--test_case") && !a.starts_with("--soak_iterations"));
    ch.extend(["--test_case=channel_soak", "--soak_iterations=4"]);
    let (out, log) = client(&ch).await;
    assert!(out.status.success(), "channel_soak failed:\n{log}");
    let (lines, count) = peers(&log);
    assert_eq!(lines.len(), 4, "{log}");
    assert!(count.keys().all(|p| *p == a || *p == b), "{count:?}");
}

/// An invalid service config (bad JSON, unknown policy) or target is a flag error: exit 2
/// at once with the channel's reason, no case run, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_service_config_or_target_fails_cleanly() {
    let (a, _stop) = start_server(false).await;
    let uri = format!("--server_uri=ipv4:{a}");
    for (flag, want) in [
        (
            r#"--service_config_json={"loadBalancingConfig":[{"round_robin":{}}]"#.to_string(),
            "invalid default service config",
        ),
        (
            r#"--service_config_json={"loadBalancingConfig":[{"no_such_policy":{}}]}"#.to_string(),
            "invalid default service config",
        ),
        (
            r#"--service_config_json={"methodConfig":[{"name":[{}],"timeout":"soon"}]}"#
                .to_string(),
            "invalid default service config",
        ),
        (
            "--server_uri=ipv4:not-an-address".to_string(),
            "invalid target",
        ),
    ] {
        let t0 = Instant::now();
        let (out, log) =
            client(&[&uri, &flag, "--test_case=rpc_soak", "--soak_iterations=1"]).await;
        assert_eq!(out.status.code(), Some(2), "{flag}: {log}");
        assert!(
            log.starts_with("interop_client: building channel to ") && log.contains(want),
            "{flag}: {log}"
        );
        assert!(
            !log.contains("soak iteration") && !log.contains("panicked"),
            "{flag}: {log}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{flag}: took {:?}",
            t0.elapsed()
        );
    }
}

/// `--server_uri` with TLS: the override is the name verified and the authority sent; the
/// soak log names the TLS server as the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_uri_with_tls_and_override() {
    let (a, _stop) = start_server(true).await;
    let mut cfg = ClientConfig::new("192.0.2.1", 1);
    cfg.server_uri = Some(format!("ipv4:{a}"));
    cfg.use_tls = true;
    cfg.use_test_ca = true;
    cfg.server_host_override = Some("foo.test.google.fr".into());
    cfg.soak.iterations = 3;
    cfg.soak.request_size = 1;
    cfg.soak.response_size = 2;
    let (cfg, lines) = collecting(cfg);
    for case in ["rpc_soak", "channel_soak", "large_unary", "custom_metadata"] {
        run_case(&cfg, case)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    let log = lines.lock().unwrap().join("\n");
    let (iterations, count) = peers(&log);
    assert_eq!(iterations.len(), 6, "{log}");
    assert_eq!(count.get(&a), Some(&6), "{log}");

    // Without the override the name checked is the target's host (127.0.0.1, an IP
    // address the test certificate lists); a name it does not list fails the handshake.
    let mut plain = cfg.clone();
    plain.server_host_override = None;
    run_case(&plain, "empty_unary").await.unwrap();
    let mut bad = cfg.clone();
    bad.server_host_override = Some("wrong.example.com".into());
    let err = run_case(&bad, "empty_unary").await.unwrap_err();
    assert!(err.contains("Unavailable"), "{err}");
}

/// `--server_uri=unix:PATH`: rpc_soak over a unix socket logs the peer as `unix`.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_uri_unix_socket() {
    let dir = std::env::temp_dir().join(format!("grpc-rust-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("interop.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(io, _)| (io, None));
        Some((r, l))
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        Server::builder()
            .add_service(TestServiceServer::new(InteropService))
            .serve_with_incoming_stream(incoming, async {
                let _ = stopped.await;
            }),
    );

    let mut cfg = ClientConfig::new("192.0.2.1", 1);
    cfg.server_uri = Some(format!("unix:{}", path.display()));
    cfg.soak.iterations = 3;
    cfg.soak.request_size = 10;
    cfg.soak.response_size = 10;
    let (cfg, lines) = collecting(cfg);
    let r = run_case(&cfg, "rpc_soak").await;
    drop(stop);
    let _ = std::fs::remove_dir_all(&dir);
    r.unwrap();
    let log = lines.lock().unwrap().join("\n");
    let (iterations, count) = peers(&log);
    assert_eq!(iterations.len(), 3, "{log}");
    assert_eq!(count.get("unix"), Some(&3), "{log}");
}

/// A failed soak iteration still names the server that answered it (from the call's
/// final status as the channel's interceptor saw it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_iterations_name_their_peer() {
    let (a, _stop) = start_server(false).await;
    let mut cfg = ClientConfig::new("192.0.2.1", 1);
    cfg.server_uri = Some(format!("ipv4:{a}"));
    cfg.soak.iterations = 2;
    cfg.soak.request_size = 1;
    // The server refuses a response larger than it allows (the client's 16 MiB limit
    // is not reached): every iteration fails with a status from the server.
    cfg.soak.response_size = i32::MAX as usize;
    let (cfg, lines) = collecting(cfg);
    let err = run_case(&cfg, "rpc_soak").await.unwrap_err();
    assert!(err.contains("2 soak iterations failed"), "{err}");
    let log = lines.lock().unwrap().join("\n");
    let (iterations, count) = peers(&log);
    assert_eq!(iterations.len(), 2, "{log}");
    assert!(
        iterations
            .iter()
            .all(|l| l.contains(" failed: UnaryCall: call failed with ")),
        "{log}"
    );
    assert_eq!(count.get(&a), Some(&2), "{log}");
}

/// `--bearer_token` is sent as call credentials: refused over plaintext (the case fails
/// UNAUTHENTICATED before anything is sent) unless `--allow_insecure_call_credentials`;
/// over TLS it goes with `--client_cert_file`/`--client_key_file` presented for mTLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_and_client_certificate_flags() {
    let (plain, _stop) = start_server(false).await;
    let (host, port) = plain.rsplit_once(':').unwrap();
    let (h, p) = (
        format!("--server_host={host}"),
        format!("--server_port={port}"),
    );
    let (out, log) = client(&[&h, &p, "--bearer_token=s3cr3t", "--test_case=empty_unary"]).await;
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("Unauthenticated") && log.contains("transport security"),
        "{log}"
    );
    let (out, log) = client(&[
        &h,
        &p,
        "--bearer_token=s3cr3t",
        "--allow_insecure_call_credentials",
        "--test_case=empty_unary",
    ])
    .await;
    assert!(out.status.success(), "{log}");

    let (tls, _stop) = start_server(true).await;
    let (host, port) = tls.rsplit_once(':').unwrap();
    let (h, p) = (
        format!("--server_host={host}"),
        format!("--server_port={port}"),
    );
    let certs = conformance::client::certs_dir();
    let cert = format!("--client_cert_file={}", certs.join("client.pem").display());
    let key = format!("--client_key_file={}", certs.join("client.key").display());
    let args = [
        &h,
        &p,
        "--use_tls",
        "--use_test_ca",
        "--server_host_override=foo.test.google.fr",
        "--bearer_token=s3cr3t",
    ];
    let (out, log) = client(
        &[
            &args[..],
            &[cert.as_str(), key.as_str(), "--test_case=large_unary"],
        ]
        .concat(),
    )
    .await;
    assert!(out.status.success(), "{log}");
    // One of the pair alone is a flag error.
    let (out, log) =
        client(&[&args[..], &[cert.as_str(), "--test_case=empty_unary"]].concat()).await;
    assert!(
        !out.status.success() && log.contains("--client_key_file"),
        "{log}"
    );
}
