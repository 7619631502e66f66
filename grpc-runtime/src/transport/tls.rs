//! Client TLS configuration: rustls (ring provider) with ALPN `h2`, custom CA roots from
//! PEM, an optional client identity (mutual TLS) and a server-name override for tests
//! (e.g. `foo.test.google.fr`).

use std::io;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{TransportError, TransportErrorKind};

/// TLS settings of a client channel.
///
/// At least one CA certificate must be added with [`ClientTlsConfig::ca_certificate_pem`]
/// (this crate ships no system root store), or a complete rustls config supplied with
/// [`ClientTlsConfig::rustls_config`].
#[derive(Clone, Default)]
pub struct ClientTlsConfig {
    ca_pem: Vec<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
    custom: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("ca_certificates", &self.ca_pem.len())
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl ClientTlsConfig {
    /// An empty TLS configuration (add roots before use).
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificate(s) in `pem` (PEM text, one or more certificates).
    pub fn ca_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.ca_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Presents a client certificate chain and private key (both PEM) for mutual TLS.
    pub fn identity_pem(mut self, cert_chain_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        self.identity = Some((cert_chain_pem.as_ref().to_vec(), key_pem.as_ref().to_vec()));
        self
    }

    /// Verifies the server certificate against `domain` (and sends it as SNI) instead of
    /// the host of the target URI. Tests use this for names like `foo.test.google.fr`.
    pub fn domain_name(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Uses a complete rustls client configuration. ALPN is forced to `h2`.
    pub fn rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.custom = Some(config);
        self
    }

    /// The server-name override, if any.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Builds the rustls connector (validating the PEM inputs).
    pub(crate) fn connector(&self) -> Result<TlsConnector, TransportError> {
        let cfg_err = |m: String| TransportError::new(TransportErrorKind::Config, m);
        let mut config = if let Some(custom) = &self.custom {
            (**custom).clone()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for pem in &self.ca_pem {
                let mut found = false;
                for cert in rustls_pemfile::certs(&mut io::Cursor::new(pem)) {
                    let cert = cert.map_err(|e| cfg_err(format!("invalid CA PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| cfg_err(format!("invalid CA certificate: {e}")))?;
                    found = true;
                }
                if !found {
                    return Err(cfg_err("CA PEM holds no certificate".into()));
                }
            }
            if roots.is_empty() {
                return Err(cfg_err(
                    "TLS needs at least one CA certificate (ClientTlsConfig::ca_certificate_pem)".into(),
                ));
            }
            let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err(format!("TLS setup: {e}")))?
            .with_root_certificates(roots);
            match &self.identity {
                None => builder.with_no_client_auth(),
                Some((chain_pem, key_pem)) => {
                    let chain: Vec<CertificateDer<'static>> =
                        rustls_pemfile::certs(&mut io::Cursor::new(chain_pem))
                            .collect::<Result<_, _>>()
                            .map_err(|e| cfg_err(format!("invalid client certificate PEM: {e}")))?;
                    let key: PrivateKeyDer<'static> =
                        rustls_pemfile::private_key(&mut io::Cursor::new(key_pem))
                            .map_err(|e| cfg_err(format!("invalid client key PEM: {e}")))?
                            .ok_or_else(|| cfg_err("client key PEM holds no private key".into()))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| cfg_err(format!("invalid client identity: {e}")))?
                }
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// Runs the TLS handshake on `tcp` for `server_name` and checks that ALPN chose `h2`.
pub(crate) async fn handshake(
    connector: &TlsConnector,
    server_name: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, TransportError> {
    let tls_err = |m: String| TransportError::new(TransportErrorKind::Tls, m);
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| TransportError::new(TransportErrorKind::Config, format!("invalid TLS server name {server_name:?}: {e}")))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| tls_err(format!("TLS handshake with {server_name}: {e}")))?;
    let alpn = stream.get_ref().1.alpn_protocol();
    if alpn != Some(b"h2".as_slice()) {
        return Err(tls_err(format!(
            "server {server_name} did not negotiate ALPN h2 (got {:?})",
            alpn.map(String::from_utf8_lossy)
        )));
    }
    Ok(stream)
}
