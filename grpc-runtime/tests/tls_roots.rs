//! Which CA certificates a client trusts (issue 16): an `https://` target without a TLS
//! configuration uses the system store (rustls-native-certs, which honours
//! `SSL_CERT_FILE`), and roots a build lacks the feature for are a clear configuration
//! error. Real TLS handshakes against a raw h2 server with a test CA. One test function:
//! it sets `SSL_CERT_FILE` for this process.

mod client_support;

use client_support::*;
use grpc_runtime::transport::TransportErrorKind;
use grpc_runtime::{Channel, ClientTlsConfig, Request};

const PATH: &str = "/test.Echo/Call";

/// Answers with the request's text.
fn echo_handler() -> Handler {
    handler(|req: http::Request<h2::RecvStream>, send| async move {
        let mut body = req.into_body();
        let Ok(data) = read_body(&mut body).await else { return };
        let text = unframe(&data).iter().map(|(_, p)| <Echo as prost::Message>::decode(&p[..]).unwrap().text).collect::<String>();
        respond(send, vec![frame_msg(&echo(&text))], 0, "").await;
    })
}

#[tokio::test]
async fn https_targets_default_to_the_system_roots() {
    let (ca, cert, key) = test_pki(&["127.0.0.1", "localhost"]);
    let srv = raw_tls_server(echo_handler(), tls_acceptor(&cert, &key, &[b"h2"])).await;
    let target = format!("https://{}", srv.addr);

    // The system store does not know the test CA: the handshake is refused (before, the
    // channel would not build: "no TLS configuration").
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");
    // (A host without any system store fails to build the connector instead.)
    let err = Channel::builder(&target).connect().await.unwrap_err();
    match err.kind() {
        TransportErrorKind::Tls => assert!(err.to_string().contains("UnknownIssuer"), "{err}"),
        _ => assert!(err.to_string().contains("system store"), "{err}"),
    }

    // A system store that holds it (SSL_CERT_FILE): the same target connects.
    let dir = std::env::temp_dir().join(format!("grpc-roots-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ca.pem");
    std::fs::write(&file, &ca).unwrap();
    std::env::set_var("SSL_CERT_FILE", &file);
    let ch = Channel::builder(&target).connect().await.unwrap();
    let r = ch.unary::<Echo, Echo>(PATH, Request::new(echo("system roots"))).await.unwrap();
    assert_eq!(r.get_ref().text, "system roots");
    // Explicitly, mixed with a PEM root.
    let tls = ClientTlsConfig::new().with_native_roots().ca_certificate_pem(&ca);
    Channel::builder(&target).tls_config(tls).connect().await.unwrap();
    std::env::remove_var("SSL_CERT_FILE");
    let _ = std::fs::remove_dir_all(&dir);

    // Compiled-in roots need their feature (off in this build): a clear error at build.
    #[cfg(not(feature = "tls-webpki-roots"))]
    {
        let err = Channel::builder(&target).tls_config(ClientTlsConfig::new().with_webpki_roots()).connect_lazy().unwrap_err();
        assert_eq!(err.kind(), TransportErrorKind::Config);
        assert!(err.to_string().contains("tls-webpki-roots"), "{err}");
    }
}
