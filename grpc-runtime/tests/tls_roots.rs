//! Which CA certificates a client trusts (issue 16): an `https://` target without a TLS
//! configuration uses the system store (rustls-native-certs, which honours
//! `SSL_CERT_FILE`), and roots a build lacks the feature for are a clear configuration
//! error. Real TLS handshakes against a raw h2 server with a test CA. One test function:
//! it sets `SSL_CERT_FILE` for this process.

mod common;

use common::pki::test_pki;
use common::raw_h2::*;
use grpc_runtime::transport::TransportErrorKind;
use grpc_runtime::{Channel, ClientTlsConfig, Request};

const PATH: &str = "/test.Echo/Call";

/// Answers with the request's text.
fn echo_handler() -> Handler {
    handler(|req: http::Request<h2::RecvStream>, send| async move {
        let mut body = req.into_body();
        let Ok(data) = read_body(&mut body).await else {
            return;
        };
        let text = unframe(&data)
            .iter()
            .map(|(_, p)| <Echo as prost::Message>::decode(&p[..]).unwrap().text)
            .collect::<String>();
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
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("system roots")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "system roots");
    // Explicitly, mixed with a PEM root.
    let tls = ClientTlsConfig::new()
        .with_native_roots()
        .ca_certificate_pem(&ca);
    Channel::builder(&target)
        .tls_config(tls)
        .connect()
        .await
        .unwrap();
    std::env::remove_var("SSL_CERT_FILE");
    let _ = std::fs::remove_dir_all(&dir);

    // Compiled-in roots need their feature (off in this build): a clear error at build.
    #[cfg(not(feature = "tls-webpki-roots"))]
    {
        let err = Channel::builder(&target)
            .tls_config(ClientTlsConfig::new().with_webpki_roots())
            .connect_lazy()
            .unwrap_err();
        assert_eq!(err.kind(), TransportErrorKind::Config);
        assert!(err.to_string().contains("tls-webpki-roots"), "{err}");
    }
}

/// TLS errors a person understands (issue 18): a self-signed CA certificate used as the
/// server's own certificate, an unknown issuer and a name mismatch each say what to do.
#[tokio::test]
async fn certificate_errors_say_how_to_fix_them() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    // The classic mistake: one self-signed CA certificate as the server certificate.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_as_leaf = p.self_signed(&key).unwrap();
    let srv = raw_tls_server(
        echo_handler(),
        tls_acceptor(&ca_as_leaf.pem(), &key.serialize_pem(), &[b"h2"]),
    )
    .await;
    let tls = ClientTlsConfig::new().ca_certificate_pem(ca_as_leaf.pem());
    let err = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .connect()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("presents a CA certificate"),
        "{err}"
    );

    let (ca, cert, key) = test_pki(&["foo.test"]);
    let srv = raw_tls_server(echo_handler(), tls_acceptor(&cert, &key, &[b"h2"])).await;
    let (other_ca, _, _) = test_pki(&["x"]);
    let err = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(ClientTlsConfig::new().ca_certificate_pem(other_ca))
        .connect()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not chain to a CA this client trusts"),
        "{err}"
    );
    let err = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(ClientTlsConfig::new().ca_certificate_pem(&ca))
        .connect()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ClientTlsConfig::domain_name"),
        "{err}"
    );
}
