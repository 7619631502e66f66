//! Built-in server TLS over real sockets: a raw h2 client over tokio-rustls
//! with a test CA made by rcgen; ALPN, mutual TLS, and bad clients that must
//! only lose their own connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pki::TestCa;
use common::*;
use grpc_runtime::server::{Server, ServerTlsConfig};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Pki {
    ca_pem: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let ca = TestCa::new("grpc-rust test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let client = ca.client("test client");
    Pki {
        ca_pem: ca.pem(),
        server_cert: server.cert,
        server_key: server.key,
        client_cert: client.cert,
        client_key: client.key,
    }
}

fn client_config(pki: &Pki, alpn: &[&[u8]], identity: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = if identity {
        let chain = rustls_pemfile::certs(&mut pki.client_cert.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        let key = rustls_pemfile::private_key(&mut pki.client_key.as_bytes())
            .unwrap()
            .unwrap();
        b.with_client_auth_cert(chain, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// TLS connect; returns the negotiated ALPN or the handshake error.
async fn tls_connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn h2_over_tls(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> H2 {
    let tls = tls_connect(addr, cfg).await.unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN must negotiate h2"
    );
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    }
}

async fn unary(c: &mut H2, addr: std::net::SocketAddr, msg: &str) -> RawResponse {
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/test.Echo/Unary", addr.port()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    call(c, head, &[frame(&req(msg))]).await
}

fn reply(r: &RawResponse) -> String {
    assert_eq!(r.grpc_status().as_deref(), Some("0"), "{r:?}");
    let m = r.messages();
    assert_eq!(m.len(), 1);
    decode::<EchoReply>(&m[0].1).message
}

#[tokio::test]
async fn tls_unary_with_alpn_h2() {
    let pki = pki();
    let tls = ServerTlsConfig::new(&pki.server_cert, &pki.server_key);
    let srv = start(|b| b.tls_config(tls)).await;
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], false)).await;
    let r = unary(&mut c, srv.addr, "hello over tls").await;
    assert_eq!(r.status, 200);
    assert_eq!(reply(&r), "hello over tls");
    // no client certificate -> none visible to the handler
    assert_eq!(
        reply(&unary(&mut c, srv.addr, "peer-certs?").await),
        "certs=0"
    );
    // the client's (TCP) peer address is still known
    let peer = reply(&unary(&mut c, srv.addr, "peer?").await);
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
}

#[tokio::test]
async fn plaintext_client_against_tls_port_fails_and_server_keeps_serving() {
    let pki = pki();
    let srv =
        start(|b| b.tls_config(ServerTlsConfig::new(&pki.server_cert, &pki.server_key))).await;

    // A plaintext HTTP/2 client: the server reads the preface as a bad TLS
    // record and closes; the h2 handshake or the first call must fail.
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let failed = match tokio::time::timeout(Duration::from_secs(5), h2::client::handshake(tcp))
        .await
        .unwrap()
    {
        Err(_) => true,
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let head = grpc_head(srv.addr, "/test.Echo/Unary", &[]);
            let res = async {
                let mut client = client.clone().ready().await?;
                let (resp, mut send) = client.send_request(head, false)?;
                send.send_data(frame(&req("x")), true)?;
                resp.await
            };
            tokio::time::timeout(Duration::from_secs(5), res)
                .await
                .unwrap()
                .is_err()
        }
    };
    assert!(failed, "a plaintext call must not succeed on a TLS port");

    // Raw bytes: the server answers the garbage with (at most) a TLS alert and closes.
    let mut tcp = TcpStream::connect(srv.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        n.is_err() || buf.len() < 64,
        "expected a close (maybe with an alert), got {buf:?}"
    );
    if let Some(first) = buf.first() {
        assert_eq!(
            *first, 0x15,
            "only a TLS alert record may come back: {buf:?}"
        );
    }

    // The server is still serving TLS clients.
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], false)).await;
    assert_eq!(
        reply(&unary(&mut c, srv.addr, "still here").await),
        "still here"
    );
    assert!(!srv.handle.is_finished());
}

#[tokio::test]
async fn non_h2_alpn_is_refused_per_connection() {
    let pki = pki();
    let srv =
        start(|b| b.tls_config(ServerTlsConfig::new(&pki.server_cert, &pki.server_key))).await;
    // Offers only http/1.1: rustls refuses during the handshake (no_application_protocol).
    let r = tls_connect(srv.addr, client_config(&pki, &[b"http/1.1"], false)).await;
    let refused = match r {
        Err(_) => true,
        // TLS 1.3: the alert may only be seen on the first read.
        Ok(mut s) => {
            let mut b = [0u8; 16];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
                    .await
                    .unwrap(),
                Err(_) | Ok(0)
            )
        }
    };
    assert!(refused);
    // No ALPN at all: refused by default (closed after the handshake).
    let mut s = tls_connect(srv.addr, client_config(&pki, &[], false))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let mut b = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(read, Err(_) | Ok(0)),
        "connection without ALPN must be closed: {read:?}"
    );
    // h2 clients are unaffected.
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"http/1.1", b"h2"], false)).await;
    assert_eq!(reply(&unary(&mut c, srv.addr, "ok").await), "ok");
}

#[tokio::test]
async fn missing_alpn_allowed_when_configured() {
    let pki = pki();
    let tls = ServerTlsConfig::new(&pki.server_cert, &pki.server_key).allow_missing_alpn(true);
    let srv = start(|b| b.tls_config(tls)).await;
    let s = tls_connect(srv.addr, client_config(&pki, &[], false))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let (mut c, conn) = h2::client::handshake(s).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    assert_eq!(
        reply(&unary(&mut c, srv.addr, "prior knowledge").await),
        "prior knowledge"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = pki();
    let tls = ServerTlsConfig::new(&pki.server_cert, &pki.server_key).client_ca_pem(&pki.ca_pem);
    let srv = start(|b| b.tls_config(tls)).await;

    // Without a certificate: refused (TLS 1.3 reports it on first use).
    let failed = match tls_connect(srv.addr, client_config(&pki, &[b"h2"], false)).await {
        Err(_) => true,
        Ok(s) => match h2::client::handshake(s).await {
            Err(_) => true,
            Ok((c, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let head = grpc_head(srv.addr, "/test.Echo/Unary", &[]);
                let res = async {
                    let mut c = c.ready().await?;
                    let (resp, mut send) = c.send_request(head, false)?;
                    send.send_data(frame(&req("x")), true)?;
                    resp.await
                };
                tokio::time::timeout(Duration::from_secs(5), res)
                    .await
                    .unwrap()
                    .is_err()
            }
        },
    };
    assert!(failed, "a client without a certificate must be refused");

    // A certificate from another CA: refused too.
    let other = pki_with_foreign_client(&pki);
    let failed = match tls_connect(srv.addr, client_config(&other, &[b"h2"], true)).await {
        Err(_) => true,
        Ok(mut s) => {
            let mut b = [0u8; 16];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
                    .await
                    .unwrap(),
                Err(_) | Ok(0)
            )
        }
    };
    assert!(
        failed,
        "a client certificate from an unknown CA must be refused"
    );

    // With a valid certificate: the handler sees it.
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], true)).await;
    assert_eq!(
        reply(&unary(&mut c, srv.addr, "peer-certs?").await),
        "certs=1"
    );
}

/// Same server CA (so the client trusts the server) but a client cert signed
/// by a different CA.
fn pki_with_foreign_client(pki: &Pki) -> Pki {
    let foreign = self::pki();
    Pki {
        ca_pem: pki.ca_pem.clone(),
        server_cert: pki.server_cert.clone(),
        server_key: pki.server_key.clone(),
        client_cert: foreign.client_cert,
        client_key: foreign.client_key,
    }
}

#[tokio::test]
async fn optional_client_auth_accepts_both() {
    let pki = pki();
    let tls = ServerTlsConfig::new(&pki.server_cert, &pki.server_key)
        .client_ca_pem(&pki.ca_pem)
        .client_auth_optional(true);
    let srv = start(|b| b.tls_config(tls)).await;
    let mut anon = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], false)).await;
    assert_eq!(
        reply(&unary(&mut anon, srv.addr, "peer-certs?").await),
        "certs=0"
    );
    let mut authed = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], true)).await;
    assert_eq!(
        reply(&unary(&mut authed, srv.addr, "peer-certs?").await),
        "certs=1"
    );
}

#[tokio::test]
async fn stalled_handshake_does_not_block_others_and_times_out() {
    let pki = pki();
    let tls = ServerTlsConfig::new(&pki.server_cert, &pki.server_key)
        .handshake_timeout(Duration::from_millis(300));
    let srv = start(|b| b.tls_config(tls)).await;
    // Connects and says nothing.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    // Others are served meanwhile.
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], false)).await;
    assert_eq!(
        reply(&unary(&mut c, srv.addr, "not blocked").await),
        "not blocked"
    );
    // The silent one is closed after the handshake timeout.
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut b))
        .await
        .expect("closed by the server");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_pending_handshake() {
    let pki = pki();
    let mut srv =
        start(|b| b.tls_config(ServerTlsConfig::new(&pki.server_cert, &pki.server_key))).await;
    let _silent = TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.shutdown();
    let res = tokio::time::timeout(Duration::from_secs(3), &mut srv.handle)
        .await
        .expect("shutdown finished");
    res.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_certificate_or_key_fails_serve() {
    let pki = pki();
    let cases = [
        ServerTlsConfig::new("not a pem", &pki.server_key),
        ServerTlsConfig::new(&pki.server_cert, "no key here"),
        // key of another certificate
        ServerTlsConfig::new(&pki.server_cert, &pki.client_key),
        ServerTlsConfig::new(&pki.server_cert, &pki.server_key).client_ca_pem("garbage"),
    ];
    for tls in cases {
        assert!(tls.build().is_err());
        let err = Server::builder()
            .tls_config(tls)
            .serve_with_shutdown("127.0.0.1:0".parse().unwrap(), async {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}

#[tokio::test]
async fn config_from_pem_files_and_rustls_config() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("grpc-rust-tls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("key.pem"), &pki.server_key).unwrap();
    let tls = ServerTlsConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let err =
        ServerTlsConfig::from_pem_files(dir.join("missing.pem"), dir.join("key.pem")).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let srv = start(|b| b.tls_config(tls)).await;
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], false)).await;
    assert_eq!(reply(&unary(&mut c, srv.addr, "files").await), "files");

    // A user-built rustls config (with other ALPN ids): ALPN is forced to h2.
    let mut custom = (*ServerTlsConfig::new(&pki.server_cert, &pki.server_key)
        .build()
        .unwrap())
    .clone();
    custom.alpn_protocols = vec![b"http/1.1".to_vec()];
    let srv2 = start(|b| b.tls_config(ServerTlsConfig::from_rustls_config(Arc::new(custom)))).await;
    let mut c = h2_over_tls(srv2.addr, client_config(&pki, &[b"h2"], false)).await;
    assert_eq!(reply(&unary(&mut c, srv2.addr, "custom").await), "custom");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn streaming_over_tls() {
    let pki = pki();
    let srv =
        start(|b| b.tls_config(ServerTlsConfig::new(&pki.server_cert, &pki.server_key))).await;
    let mut c = h2_over_tls(srv.addr, client_config(&pki, &[b"h2"], false)).await;
    let head = grpc_head(srv.addr, "/test.Echo/ServerStream", &[]);
    let r = call(
        &mut c,
        head,
        &[frame(&EchoRequest {
            message: "s".into(),
            count: 50,
            sleep_ms: 0,
        })],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
    let msgs = r.messages();
    assert_eq!(msgs.len(), 50);
    for (i, (_, p)) in msgs.iter().enumerate() {
        assert!(decode::<EchoReply>(p)
            .message
            .starts_with(&format!("s-{i}-")));
    }
}

#[tokio::test]
async fn tls_on_a_unix_socket() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("grpc-rust-tls-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let (etx, _erx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder()
        .add_service(echo_server::EchoServer::new(TestEcho { events: etx }))
        .tls_config(ServerTlsConfig::new(&pki.server_cert, &pki.server_key))
        .serve_unix_with_shutdown(path.clone(), async {
            let _ = stopped.await;
        });
    let handle = tokio::spawn(server);
    let mut unix = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::UnixStream::connect(&path).await {
            unix = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connector = tokio_rustls::TlsConnector::from(client_config(&pki, &[b"h2"], false));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), unix.unwrap())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut c, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let fake: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert_eq!(
        reply(&unary(&mut c, fake, "over unix+tls").await),
        "over unix+tls"
    );
    // A plaintext h2 client on the same socket fails.
    let plain = tokio::net::UnixStream::connect(&path).await.unwrap();
    let failed = match tokio::time::timeout(Duration::from_secs(5), h2::client::handshake(plain))
        .await
        .unwrap()
    {
        Err(_) => true,
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let res = async {
                let mut client = client.ready().await?;
                let (resp, mut send) =
                    client.send_request(grpc_head(fake, "/test.Echo/Unary", &[]), false)?;
                send.send_data(frame(&req("x")), true)?;
                resp.await
            };
            tokio::time::timeout(Duration::from_secs(5), res)
                .await
                .unwrap()
                .is_err()
        }
    };
    assert!(failed);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
