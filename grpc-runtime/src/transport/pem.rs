//! PEM loading for both sides' TLS: certificate chains, private keys and CA root stores
//! from PEM text, with errors that say which input is wrong and how. The client
//! (`transport/tls.rs`) and the server (`server/tls.rs`) build their rustls
//! configurations from these; each wraps the message in its own error type.
//!
//! Every function takes `what`, the name of the input as the user knows it ("server
//! certificate", "client CA", ...), and puts it in the message.

use std::io;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in `pem` (one or more, in order: leaf first for a chain). Errors:
/// unreadable PEM, or no certificate in it (with a hint when it holds a private key
/// instead).
pub(crate) fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut io::Cursor::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid {what} PEM: {e}"))?;
    if certs.is_empty() {
        let hint = if holds_private_key(pem) {
            " (it holds a private key: are the certificate and key inputs swapped?)"
        } else {
            ""
        };
        return Err(format!("{what} PEM holds no certificate{hint}"));
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1). Errors: unreadable PEM, or
/// no private key in it (with a hint when it holds a certificate instead).
pub(crate) fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    match rustls_pemfile::private_key(&mut io::Cursor::new(pem)) {
        Ok(Some(key)) => Ok(key),
        Err(e) => Err(format!("invalid {what} PEM: {e}")),
        Ok(None) => {
            let holds_certificate = rustls_pemfile::certs(&mut io::Cursor::new(pem))
                .next()
                .is_some_and(|c| c.is_ok());
            let hint = if holds_certificate {
                " (it holds a certificate: are the certificate and key inputs swapped?)"
            } else {
                ""
            };
            Err(format!("{what} PEM holds no private key{hint}"))
        }
    }
}

/// A root store of the CA certificates in each of `pems` (each must hold at least one).
/// Errors: a PEM that is unreadable or holds no certificate, or a certificate rustls
/// cannot use as a trust anchor.
pub(crate) fn root_store(pems: &[Vec<u8>], what: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for cert in certificates(pem, what)? {
            roots
                .add(cert)
                .map_err(|e| format!("invalid {what} certificate: {e}"))?;
        }
    }
    Ok(roots)
}

fn holds_private_key(pem: &[u8]) -> bool {
    matches!(
        rustls_pemfile::private_key(&mut io::Cursor::new(pem)),
        Ok(Some(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A CERTIFICATE block whose base64 is fine but whose DER is not a certificate.
    const NOT_DER: &str =
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    /// A block with a body that is not base64.
    const BAD_BASE64: &str = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";

    #[test]
    fn certificates_and_key_load() {
        let (cert, key) = pki();
        assert_eq!(
            certificates(cert.as_bytes(), "server certificate")
                .unwrap()
                .len(),
            1
        );
        private_key(key.as_bytes(), "server key").unwrap();
        assert_eq!(root_store(&[cert.into_bytes()], "CA").unwrap().len(), 1);
    }

    #[test]
    fn empty_or_garbage_pem_holds_no_certificate() {
        for pem in ["", "not a pem at all\n"] {
            assert_eq!(
                certificates(pem.as_bytes(), "server certificate").unwrap_err(),
                "server certificate PEM holds no certificate"
            );
            assert_eq!(
                private_key(pem.as_bytes(), "server key").unwrap_err(),
                "server key PEM holds no private key"
            );
            assert_eq!(
                root_store(&[pem.as_bytes().to_vec()], "client CA").unwrap_err(),
                "client CA PEM holds no certificate"
            );
        }
    }

    #[test]
    fn swapped_certificate_and_key_say_so() {
        let (cert, key) = pki();
        let e = certificates(key.as_bytes(), "server certificate").unwrap_err();
        assert!(
            e.starts_with("server certificate PEM holds no certificate (it holds a private key"),
            "{e}"
        );
        let e = private_key(cert.as_bytes(), "client key").unwrap_err();
        assert!(
            e.starts_with("client key PEM holds no private key (it holds a certificate"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_pem_is_invalid() {
        let e = certificates(BAD_BASE64.as_bytes(), "CA").unwrap_err();
        assert!(e.starts_with("invalid CA PEM: "), "{e}");
        let bad_key = BAD_BASE64.replace("CERTIFICATE", "PRIVATE KEY");
        let e = private_key(bad_key.as_bytes(), "server key").unwrap_err();
        assert!(e.starts_with("invalid server key PEM: "), "{e}");
    }

    #[test]
    fn a_certificate_that_is_not_a_trust_anchor_is_refused() {
        let e = root_store(&[NOT_DER.as_bytes().to_vec()], "CA").unwrap_err();
        assert!(e.starts_with("invalid CA certificate: "), "{e}");
    }

    #[test]
    fn every_pem_of_a_root_store_must_hold_a_certificate() {
        let (cert, _) = pki();
        let e = root_store(&[cert.into_bytes(), Vec::new()], "CA").unwrap_err();
        assert_eq!(e, "CA PEM holds no certificate");
    }
}
