//! Client TLS configuration: rustls (ring provider) with ALPN `h2`, the CA roots to trust
//! (custom PEM, the operating system's store, or Mozilla's compiled-in set), an optional
//! client identity (mutual TLS) and a server-name override (e.g. `foo.test.google.fr`).

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{pem, TransportError, TransportErrorKind};

/// TLS settings of a client channel.
///
/// Roots to trust: CA certificates from PEM ([`ClientTlsConfig::ca_certificate_pem`]), the
/// operating system's store ([`ClientTlsConfig::with_native_roots`], feature
/// `tls-native-roots`, on by default), Mozilla's set compiled in
/// ([`ClientTlsConfig::with_webpki_roots`], feature `tls-webpki-roots`), any mix of them,
/// or a complete rustls config ([`ClientTlsConfig::rustls_config`]). An `https://` target
/// without a TLS configuration uses the system store.
///
/// ```
/// use grpc_runtime::{Channel, ClientTlsConfig};
///
/// # fn f(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), Box<dyn std::error::Error>> {
/// // A private CA and a client certificate (mutual TLS):
/// let tls = ClientTlsConfig::new().ca_certificate_pem(ca_pem).identity_pem(cert_pem, key_pem);
/// let channel = Channel::builder("https://orders.internal:8443").tls_config(tls).connect_lazy()?;
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct ClientTlsConfig {
    ca_pem: Vec<Vec<u8>>,
    native_roots: bool,
    webpki_roots: bool,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
    custom: Option<Arc<rustls::ClientConfig>>,
    /// Built once when the channel is built; every connection reuses it.
    built: Option<TlsConnector>,
}

impl std::fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("ca_certificates", &self.ca_pem.len())
            .field("native_roots", &self.native_roots)
            .field("webpki_roots", &self.webpki_roots)
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

    /// Also trusts the operating system's CA certificates (read with rustls-native-certs
    /// when the channel is built; `SSL_CERT_FILE` / `SSL_CERT_DIR` override the location).
    /// Needs the `tls-native-roots` feature (default); without it the channel fails to
    /// build with a configuration error saying so.
    pub fn with_native_roots(mut self) -> Self {
        self.native_roots = true;
        self
    }

    /// Also trusts Mozilla's CA certificates, compiled into the binary (webpki-roots):
    /// for hosts without a system store. Needs the `tls-webpki-roots` feature; without it
    /// the channel fails to build with a configuration error saying so.
    pub fn with_webpki_roots(mut self) -> Self {
        self.webpki_roots = true;
        self
    }

    /// Presents a client certificate chain and private key (both PEM) for mutual TLS.
    pub fn identity_pem(
        mut self,
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Self {
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

    /// This configuration with its connector built (PEM inputs validated, system roots
    /// read) once, for every connection of the channel.
    pub(crate) fn prepared(mut self) -> Result<Self, TransportError> {
        self.built = None;
        self.built = Some(self.connector()?);
        Ok(self)
    }

    /// The rustls connector: the one [`ClientTlsConfig::prepared`] built, else a new one.
    pub(crate) fn connector(&self) -> Result<TlsConnector, TransportError> {
        if let Some(c) = &self.built {
            return Ok(c.clone());
        }
        let cfg_err = |m: String| TransportError::new(TransportErrorKind::Config, m);
        let mut config = if let Some(custom) = &self.custom {
            (**custom).clone()
        } else {
            let mut roots = pem::root_store(&self.ca_pem, "CA").map_err(cfg_err)?;
            if self.native_roots {
                add_native_roots(&mut roots)?;
            }
            if self.webpki_roots {
                add_webpki_roots(&mut roots)?;
            }
            if roots.is_empty() {
                return Err(cfg_err(
                    "TLS needs CA certificates to trust: ClientTlsConfig::ca_certificate_pem, \
                     with_native_roots or with_webpki_roots"
                        .into(),
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
                    let chain =
                        pem::certificates(chain_pem, "client certificate").map_err(cfg_err)?;
                    let key = pem::private_key(key_pem, "client key").map_err(cfg_err)?;
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

#[cfg(feature = "tls-native-roots")]
fn add_native_roots(roots: &mut rustls::RootCertStore) -> Result<(), TransportError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping part of the system CA store");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system CA certificates loaded");
    if added == 0 {
        return Err(TransportError::new(
            TransportErrorKind::Config,
            format!(
                "no usable CA certificate in the system store ({} errors reading it)",
                found.errors.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(feature = "tls-native-roots"))]
fn add_native_roots(_roots: &mut rustls::RootCertStore) -> Result<(), TransportError> {
    Err(TransportError::new(
        TransportErrorKind::Config,
        "system CA certificates need grpc-runtime's `tls-native-roots` feature".to_string(),
    ))
}

#[cfg(feature = "tls-webpki-roots")]
fn add_webpki_roots(roots: &mut rustls::RootCertStore) -> Result<(), TransportError> {
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(())
}

#[cfg(not(feature = "tls-webpki-roots"))]
fn add_webpki_roots(_roots: &mut rustls::RootCertStore) -> Result<(), TransportError> {
    Err(TransportError::new(
        TransportErrorKind::Config,
        "compiled-in CA certificates need grpc-runtime's `tls-webpki-roots` feature".to_string(),
    ))
}

/// What to do about a certificate the handshake refused, in words a person acts on.
fn handshake_hint(e: &io::Error) -> &'static str {
    use rustls::CertificateError as C;
    let Some(rustls::Error::InvalidCertificate(cert)) =
        e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return "";
    };
    match cert {
        C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            " (the server presents a CA certificate, basicConstraints CA:TRUE, as its own \
             certificate; give the server a leaf certificate signed by that CA and trust the CA \
             with ClientTlsConfig::ca_certificate_pem)"
        }
        // A CA of the same name but another key also gives BadSignature.
        C::UnknownIssuer | C::BadSignature => {
            " (the server's certificate does not chain to a CA this client trusts: add its CA \
             with ClientTlsConfig::ca_certificate_pem, or with_native_roots for public CAs)"
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            " (the certificate does not name the host dialled: connect with a name it lists, or \
             set the name to verify with ClientTlsConfig::domain_name)"
        }
        C::Expired | C::ExpiredContext { .. } => " (the server's certificate has expired)",
        _ => "",
    }
}

/// Runs the TLS handshake on `tcp` for `server_name` and checks that ALPN chose `h2`.
pub(crate) async fn handshake(
    connector: &TlsConnector,
    server_name: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, TransportError> {
    let tls_err = |m: String| TransportError::new(TransportErrorKind::Tls, m);
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        TransportError::new(
            TransportErrorKind::Config,
            format!("invalid TLS server name {server_name:?}: {e}"),
        )
    })?;
    let stream = connector.connect(name, tcp).await.map_err(|e| {
        tls_err(format!(
            "TLS handshake with {server_name}: {e}{}",
            handshake_hint(&e)
        ))
    })?;
    let alpn = stream.get_ref().1.alpn_protocol();
    if alpn != Some(b"h2".as_slice()) {
        return Err(tls_err(format!(
            "server {server_name} did not negotiate ALPN h2 (got {:?})",
            alpn.map(String::from_utf8_lossy)
        )));
    }
    Ok(stream)
}
