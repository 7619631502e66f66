//! grpc-go (a gRPC implementation we did not write) as a client with client certificates
//! and per-call tokens (`grpc.PerRPCCredentials`) against our server's gRFC A43
//! authorization policy (issue 16): allowed; denied by path, by principal and by the
//! token header; denials carry no detail. Needs the grpc-go peer driver
//! `authz_client` that `scripts/peers/build-go.sh` builds into
//! `$GRPC_RUST_PEERS/go/bin` (default `~/.cache/grpc-rust/peers`). Ignored by default
//! because of that: `cargo test -p grpc-runtime --test peer_go -- --ignored`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::pki::TestCa;
use grpc_runtime::server::authz::AuthzInterceptor;
use grpc_runtime::server::{Server, ServerTlsConfig};
use grpc_runtime::services::health::HealthReporter;

fn authz_client() -> PathBuf {
    let peers = match std::env::var_os("GRPC_RUST_PEERS") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cache/grpc-rust/peers"),
    };
    peers.join("go/bin/authz_client")
}

#[tokio::test]
#[ignore = "needs the grpc-go peer driver (scripts/peers/build-go.sh)"]
async fn go_clients_against_our_authz_policy() {
    let ca = TestCa::new("go peer authz CA");
    let server = ca.server(&["localhost"]);
    let client = |cn: &str| {
        let id = ca.client(cn);
        (id.cert, id.key)
    };
    let dir = std::env::temp_dir().join(format!("grpc-rust-peer-go-authz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_path = write("ca.pem", &ca.pem());
    let (a_cert, a_key) = client("go-allowed");
    let (o_cert, o_key) = client("go-other");

    let policy = r#"{"name": "go-peer", "allow_rules": [{"name": "check",
        "source": {"principals": ["CN=go-allowed"]},
        "request": {"paths": ["/grpc.health.v1.Health/Check"],
                    "headers": [{"key": "authorization", "values": ["Bearer s3cr3t"]}]}}]}"#;
    let tls = ServerTlsConfig::new(&server.cert, &server.key).client_ca_pem(ca.pem());
    let reporter = HealthReporter::new();
    let addr = common::serve(
        Server::builder()
            .tls_config(tls)
            .add_interceptor(AuthzInterceptor::from_json(policy).unwrap())
            .add_service(reporter.service()),
    )
    .await;

    let mut cmd = tokio::process::Command::new(authz_client());
    cmd.arg(format!("--server_addr={addr}"))
        .arg(format!("--ca={ca_path}"))
        .arg(format!("--cert={}", write("a.pem", &a_cert)))
        .arg(format!("--key={}", write("a.key", &a_key)))
        .arg(format!("--other_cert={}", write("o.pem", &o_cert)))
        .arg(format!("--other_key={}", write("o.key", &o_key)))
        .arg("--token=s3cr3t")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("go client finished")
        .expect("go client runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "go peer failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
