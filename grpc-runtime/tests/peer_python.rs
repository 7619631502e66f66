//! Python grpcio (a gRPC implementation we did not write) against our
//! server: health Check/List/Watch, reflection (grpcio's v1alpha descriptor
//! database), TLS with ALPN h2 and mutual TLS. Needs a Python with grpcio,
//! grpcio-health-checking and grpcio-reflection: set `GRPC_RUST_PYTHON`, or
//! the venv the peers scripts build (`~/.cache/grpc-rust/peers/py/venv`) is
//! used. Ignored by default because of that external dependency:
//! `cargo test -p grpc-runtime --test peer_python -- --ignored`.

use std::path::PathBuf;
use std::time::Duration;

use grpc_runtime::server::{Server, ServerTlsConfig};
use grpc_runtime::services::health::HealthReporter;
use grpc_runtime::services::reflection::ReflectionBuilder;
use tokio::net::TcpListener;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GRPC_RUST_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/grpc-rust/peers/py/venv/bin/python")
}

#[tokio::test]
#[ignore = "needs Python grpcio (GRPC_RUST_PYTHON or the peers venv)"]
async fn python_health_reflection_tls() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "peer test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let ckey = rcgen::KeyPair::generate().unwrap();
    let mut cparams = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    cparams.distinguished_name.push(rcgen::DnType::CommonName, "peer test client");
    let client = cparams.signed_by(&ckey, &ca, &ca_key).unwrap();
    let dir = std::env::temp_dir().join(format!("grpc-rust-peer-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, client.pem()).unwrap();
    std::fs::write(&key_path, ckey.serialize_pem()).unwrap();

    let reporter = HealthReporter::new();
    reporter.set_serving("test.Echo");
    let reflection = ReflectionBuilder::new()
        .register_encoded_file_descriptor_set(grpc_runtime::services::health::FILE_DESCRIPTOR_SET)
        .build()
        .unwrap();
    let builder = || {
        Server::builder().add_service(reporter.service()).add_service(reflection.v1()).add_service(reflection.v1alpha())
    };
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_port, tls_port) = (plain.local_addr().unwrap().port(), tls.local_addr().unwrap().port());
    tokio::spawn(builder().serve_with_incoming(plain));
    tokio::spawn(builder().tls_config(ServerTlsConfig::new(leaf.pem(), key.serialize_pem())).serve_with_incoming(tls));
    let mtls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mtls_port = mtls.local_addr().unwrap().port();
    let mtls_config = ServerTlsConfig::new(leaf.pem(), key.serialize_pem()).client_ca_pem(ca.pem());
    tokio::spawn(builder().tls_config(mtls_config).serve_with_incoming(mtls));

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python_services.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).arg(plain_port.to_string()).arg(tls_port.to_string()).arg(&ca_path);
    cmd.arg(mtls_port.to_string()).arg(&cert_path).arg(&key_path).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("python finished").expect("python runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "python peer failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
