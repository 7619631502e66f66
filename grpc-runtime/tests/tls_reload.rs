//! Server certificate rotation without a restart (issue 16): a [`TlsReloader`] swaps the
//! certificate new connections get while open connections keep theirs; a file watcher
//! reloads when the PEM files change and keeps the current material when the new files
//! are broken. Our server and client over real TLS on 127.0.0.1.

mod common;

use std::time::Duration;

use common::pki::TestCa;
use common::*;
use grpc_runtime::server::{ServerTlsConfig, TlsReloader};
use grpc_runtime::{Channel, ClientTlsConfig, Request};

/// A CA and leaf certificates it signs, by DNS name: (ca_pem, [(cert_pem, key_pem)]).
fn pki(names: &[&str]) -> (String, Vec<(String, String)>) {
    let ca = TestCa::new("rotation test CA");
    let leaves = names
        .iter()
        .map(|n| {
            let id = ca.server(&[n]);
            (id.cert, id.key)
        })
        .collect();
    (ca.pem(), leaves)
}

/// A channel that verifies the server as `name`, connected (or the connect error).
async fn connect(addr: std::net::SocketAddr, ca: &str, name: &str) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate_pem(ca)
        .domain_name(name);
    Channel::builder(format!("https://{addr}"))
        .tls_config(tls)
        .connect()
        .await
        .map_err(|e| e.to_string())
}

async fn echo_ok(ch: &Channel) {
    let r = ch
        .unary::<EchoRequest, EchoReply>(
            "/test.Echo/Unary",
            Request::new(EchoRequest {
                message: "hi".into(),
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(r.unwrap().get_ref().message, "hi");
}

#[tokio::test]
async fn reload_changes_the_certificate_of_new_connections_only() {
    let (ca, leaves) = pki(&["a.test", "b.test"]);
    let reloader = TlsReloader::new();
    let tls = ServerTlsConfig::new(&leaves[0].0, &leaves[0].1).reloader(reloader.clone());
    let srv = start(|b| b.tls_config(tls)).await;

    let old = connect(srv.addr, &ca, "a.test").await.unwrap();
    echo_ok(&old).await;
    assert!(connect(srv.addr, &ca, "b.test").await.is_err());

    reloader
        .reload(&ServerTlsConfig::new(&leaves[1].0, &leaves[1].1))
        .unwrap();
    // New connections get b.test's certificate...
    let new = connect(srv.addr, &ca, "b.test").await.unwrap();
    echo_ok(&new).await;
    let err = connect(srv.addr, &ca, "a.test").await.unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("certificate"),
        "{err}"
    );
    // ...while the connection made before goes on.
    echo_ok(&old).await;

    // A configuration that does not build is refused; the server keeps b.test.
    assert!(reloader
        .reload(&ServerTlsConfig::new(&leaves[0].0, &leaves[1].1))
        .is_err());
    echo_ok(&connect(srv.addr, &ca, "b.test").await.unwrap()).await;
}

#[tokio::test]
async fn a_file_watcher_reloads_changed_files_and_keeps_the_old_on_bad_ones() {
    let (ca, leaves) = pki(&["a.test", "b.test"]);
    let dir = std::env::temp_dir().join(format!("grpc-tls-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &leaves[0].0).unwrap();
    std::fs::write(&key, &leaves[0].1).unwrap();

    let reloader = TlsReloader::new();
    let tls = ServerTlsConfig::from_pem_files(&cert, &key)
        .unwrap()
        .reloader(reloader.clone());
    let srv = start(|b| b.tls_config(tls)).await;
    let (c, k) = (cert.clone(), key.clone());
    let watch = reloader.watch_files(
        vec![cert.clone(), key.clone()],
        Duration::from_millis(20),
        move || ServerTlsConfig::from_pem_files(&c, &k),
    );
    echo_ok(&connect(srv.addr, &ca, "a.test").await.unwrap()).await;

    // A broken key (e.g. a half-written file): the watcher keeps a.test.
    std::fs::write(&key, "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    echo_ok(&connect(srv.addr, &ca, "a.test").await.unwrap()).await;

    // Both files renewed: within a few polls new connections see b.test.
    std::fs::write(&cert, &leaves[1].0).unwrap();
    std::fs::write(&key, &leaves[1].1).unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        if connect(srv.addr, &ca, "b.test").await.is_ok() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the watcher never installed the new certificate");
    assert!(connect(srv.addr, &ca, "a.test").await.is_err());
    watch.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
