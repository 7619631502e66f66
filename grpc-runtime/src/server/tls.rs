//! Built-in server TLS: [`ServerTlsConfig`] (certificate chain + key from
//! PEM, ALPN `h2`, optional client authentication against a CA) and the
//! per-connection handshake the server runs before HTTP/2 when TLS is set.
//!
//! The rustls configuration is always built with the `ring` provider passed
//! explicitly, never a process-default provider.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// ALPN protocol id of HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// How long a TLS handshake may take before the connection is dropped.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings of a server: its certificate chain and private key (PEM),
/// optionally the CA(s) client certificates must chain to (mutual TLS).
///
/// ALPN `h2` is always advertised, and by default a connection that did not
/// negotiate `h2` is closed after the handshake (see
/// [`ServerTlsConfig::allow_missing_alpn`]).
#[derive(Clone)]
pub struct ServerTlsConfig {
    cert_chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Vec<Vec<u8>>,
    client_auth_optional: bool,
    allow_missing_alpn: bool,
    handshake_timeout: Duration,
    custom: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("client_ca_certificates", &self.client_ca_pem.len())
            .field("client_auth_optional", &self.client_auth_optional)
            .field("allow_missing_alpn", &self.allow_missing_alpn)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("custom", &self.custom.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTlsConfig {
    /// TLS with the certificate chain `cert_chain_pem` (leaf first) and its
    /// private key `key_pem` (PKCS#8, PKCS#1 or SEC1 PEM). Inputs are
    /// validated when the server starts (or by [`ServerTlsConfig::build`]).
    pub fn new(cert_chain_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        ServerTlsConfig {
            cert_chain_pem: cert_chain_pem.as_ref().to_vec(),
            key_pem: key_pem.as_ref().to_vec(),
            client_ca_pem: Vec::new(),
            client_auth_optional: false,
            allow_missing_alpn: false,
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            custom: None,
        }
    }

    /// Reads the certificate chain and key PEM files (e.g. the interop
    /// server's `--tls_cert_file` / `--tls_key_file`). The error names the
    /// file that could not be read.
    pub fn from_pem_files(cert_chain: impl AsRef<std::path::Path>, key: impl AsRef<std::path::Path>) -> io::Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display())))
        };
        Ok(ServerTlsConfig::new(read(cert_chain.as_ref())?, read(key.as_ref())?))
    }

    /// Uses a complete rustls server configuration instead of the PEM inputs
    /// (its ALPN list is replaced by `h2`).
    pub fn from_rustls_config(config: Arc<rustls::ServerConfig>) -> Self {
        let mut c = ServerTlsConfig::new(Vec::new(), Vec::new());
        c.custom = Some(config);
        c
    }

    /// Requires client certificates signed by the CA certificate(s) in `pem`
    /// (may be called more than once). Clients without a valid certificate
    /// fail the handshake unless [`ServerTlsConfig::client_auth_optional`].
    pub fn client_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.client_ca_pem.push(pem.as_ref().to_vec());
        self
    }

    /// With a client CA set: also accept clients that present no certificate
    /// (a certificate that is presented must still be valid). Default off.
    pub fn client_auth_optional(mut self, optional: bool) -> Self {
        self.client_auth_optional = optional;
        self
    }

    /// Accept clients that offer no ALPN at all (HTTP/2 with prior
    /// knowledge over TLS). Default off: gRPC requires ALPN `h2`. A client
    /// offering only other protocols is always refused.
    pub fn allow_missing_alpn(mut self, allow: bool) -> Self {
        self.allow_missing_alpn = allow;
        self
    }

    /// Time allowed for the TLS handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Builds the rustls configuration (ring provider, ALPN `h2`),
    /// validating the PEM inputs. Errors are `InvalidInput` with a readable
    /// message.
    pub fn build(&self) -> io::Result<Arc<rustls::ServerConfig>> {
        let err = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let mut config = if let Some(custom) = &self.custom {
            (**custom).clone()
        } else {
            let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut io::Cursor::new(&self.cert_chain_pem))
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("invalid server certificate PEM: {e}")))?;
            if chain.is_empty() {
                return Err(err("server certificate PEM holds no certificate".into()));
            }
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut io::Cursor::new(&self.key_pem))
                .map_err(|e| err(format!("invalid server key PEM: {e}")))?
                .ok_or_else(|| err("server key PEM holds no private key".into()))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| err(format!("TLS setup: {e}")))?;
            let builder = if self.client_ca_pem.is_empty() {
                builder.with_no_client_auth()
            } else {
                let mut roots = rustls::RootCertStore::empty();
                for pem in &self.client_ca_pem {
                    let mut found = false;
                    for cert in rustls_pemfile::certs(&mut io::Cursor::new(pem)) {
                        let cert = cert.map_err(|e| err(format!("invalid client CA PEM: {e}")))?;
                        roots.add(cert).map_err(|e| err(format!("invalid client CA certificate: {e}")))?;
                        found = true;
                    }
                    if !found {
                        return Err(err("client CA PEM holds no certificate".into()));
                    }
                }
                let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if self.client_auth_optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().map_err(|e| err(format!("client certificate verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            };
            builder
                .with_single_cert(chain, key)
                .map_err(|e| err(format!("invalid server certificate or key: {e}")))?
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// The acceptor and the per-connection rules the server applies.
    pub(crate) fn acceptor(&self) -> io::Result<TlsServerSide> {
        Ok(TlsServerSide {
            acceptor: TlsAcceptor::from(self.build()?),
            allow_missing_alpn: self.allow_missing_alpn,
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// What a running server needs to accept TLS connections.
#[derive(Clone)]
pub(crate) struct TlsServerSide {
    acceptor: TlsAcceptor,
    allow_missing_alpn: bool,
    handshake_timeout: Duration,
}

/// Certificates a client presented (leaf first), shared by its calls.
pub(crate) type PeerCertificates = Arc<[CertificateDer<'static>]>;

impl TlsServerSide {
    /// Runs the handshake on `io` and checks ALPN. `Err` is a readable
    /// reason; the caller logs it and drops the connection.
    pub(crate) async fn accept<IO>(&self, io: IO) -> Result<(TlsStream<IO>, Option<PeerCertificates>), String>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
            Err(_) => return Err("TLS handshake timed out".into()),
        };
        let conn = stream.get_ref().1;
        match conn.alpn_protocol() {
            Some(ALPN_H2) => {}
            None if self.allow_missing_alpn => {}
            other => {
                return Err(format!(
                    "client did not negotiate ALPN h2 (got {:?})",
                    other.map(String::from_utf8_lossy)
                ))
            }
        }
        let certs = conn
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>().into());
        Ok((stream, certs))
    }
}
