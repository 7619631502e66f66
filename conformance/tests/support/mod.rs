//! Helpers shared by the conformance integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use conformance::client::certs_dir;
use conformance::server::{serve, tls_config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Starts our interop server on an ephemeral port; dropping the sender stops it.
pub async fn start_server(tls: bool) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.then(|| {
        tls_config(
            &certs_dir().join("server1.pem"),
            &certs_dir().join("server1.key"),
        )
        .unwrap()
    });
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(listener, acceptor, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx)
}
