//! `interop_server --use_tls --client_ca_file=... --authz_policy=...` end to end: the binary
//! requires a client certificate from our test CA and enforces a gRFC A43 policy whose
//! principal is the subject of `conformance/certs/client.pem` (an openssl certificate
//! without SANs) as grpc-go prints it.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conformance::client::certs_dir;
use conformance::flags::Flags;
use conformance::pb::test_service_client::TestServiceClient;
use conformance::pb::{Empty, SimpleRequest};
use conformance::server::{ServerConfig, SERVER_BOOL_FLAGS, SERVER_FLAGS};
use grpc_runtime::{Channel, ClientTlsConfig, Code};

fn config(args: &[&str]) -> Result<ServerConfig, String> {
    Flags::parse(args.iter().copied(), SERVER_FLAGS, SERVER_BOOL_FLAGS)
        .and_then(|f| ServerConfig::from_flags(&f))
}

#[test]
fn flags_parse() {
    let c = config(&[
        "--use_tls",
        "--client_ca_file=/ca.pem",
        "--authz_policy",
        "/p.json",
    ])
    .unwrap();
    assert_eq!(c.client_ca_file, Some(PathBuf::from("/ca.pem")));
    assert_eq!(c.authz_policy, Some(PathBuf::from("/p.json")));
    let c = config(&[]).unwrap();
    assert_eq!((c.client_ca_file, c.authz_policy), (None, None));
    assert!(config(&["--client_ca_file=/ca.pem"])
        .unwrap_err()
        .contains("--client_ca_file needs --use_tls"));
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn channel(port: u16, identity: bool) -> Result<Channel, String> {
    let certs = certs_dir();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate_pem(std::fs::read(certs.join("ca.pem")).unwrap())
        .domain_name("foo.test.google.fr");
    if identity {
        tls = tls.identity_pem(
            std::fs::read(certs.join("client.pem")).unwrap(),
            std::fs::read(certs.join("client.key")).unwrap(),
        );
    }
    Channel::builder(format!("https://127.0.0.1:{port}"))
        .tls_config(tls)
        .connect()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mutual_tls_and_an_authorization_policy() {
    let dir = std::env::temp_dir().join(format!("interop-authz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"name": "interop",
            "allow_rules": [{"name": "test-client-empty-call",
                             "source": {"principals": ["CN=grpc-rust test client,O=grpc-rust,C=XX"]},
                             "request": {"paths": ["/grpc.testing.TestService/EmptyCall"]}}]}"#,
    )
    .unwrap();
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca = certs_dir().join("ca.pem");
    let _server = Child(
        Command::new(env!("CARGO_BIN_EXE_interop_server"))
            .args(["--port", &port.to_string(), "--host=127.0.0.1", "--use_tls"])
            .arg(format!("--client_ca_file={}", ca.display()))
            .arg(format!("--authz_policy={}", policy.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "interop_server did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = TestServiceClient::new(channel(port, true).await.unwrap());
    client.empty_call(Empty {}).await.unwrap();
    let e = client
        .unary_call(SimpleRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::PermissionDenied, "unauthorized RPC request rejected")
    );

    // Without a client certificate the handshake (or the first call) fails.
    if let Ok(ch) = channel(port, false).await {
        let e = TestServiceClient::new(ch)
            .empty_call(Empty {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_policy_file_stops_the_server_at_startup() {
    let dir = std::env::temp_dir().join(format!("interop-authz-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "grpc-x", "values": ["1"]}]}}]}"#).unwrap();
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_interop_server"))
        .args(["--port", &port.to_string(), "--host=127.0.0.1"])
        .arg(format!("--authz_policy={}", policy.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--authz_policy: invalid authorization policy: allow_rules[0].request.headers[0].key"
        ),
        "{err}"
    );
}
