//! Built-in server TLS: [`ServerTlsConfig`] (certificate chain + key from
//! PEM, ALPN `h2`, optional client authentication against a CA), its rotation at run
//! time ([`TlsReloader`]: new connections get the new certificate, open ones go on) and
//! the per-connection handshake the server runs before HTTP/2 when TLS is set.
//!
//! The rustls configuration is always built with the `ring` provider passed
//! explicitly, never a process-default provider.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::transport::pem;

/// ALPN protocol id of HTTP/2.
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The protocol a TLS connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    H2,
    /// `http/1.1` (offered only with gRPC-Web on).
    #[cfg_attr(not(feature = "grpc-web"), allow(dead_code))]
    Http1,
    /// None (allowed by `allow_missing_alpn`, or with gRPC-Web on: then sniffed).
    None,
}

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
    reloader: Option<TlsReloader>,
}

impl std::fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("client_ca_certificates", &self.client_ca_pem.len())
            .field("client_auth_optional", &self.client_auth_optional)
            .field("allow_missing_alpn", &self.allow_missing_alpn)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("custom", &self.custom.is_some())
            .field("reloadable", &self.reloader.is_some())
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
            reloader: None,
        }
    }

    /// Reads the certificate chain and key PEM files (e.g. the interop
    /// server's `--tls_cert_file` / `--tls_key_file`). The error names the
    /// file that could not be read.
    pub fn from_pem_files(
        cert_chain: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> io::Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display())))
        };
        Ok(ServerTlsConfig::new(
            read(cert_chain.as_ref())?,
            read(key.as_ref())?,
        ))
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

    /// Lets `reloader` replace this configuration's certificate, key and client CAs
    /// while the server runs: connections accepted after a
    /// [`TlsReloader::reload`] use the new material, open ones continue with theirs.
    /// ALPN and handshake rules stay those of this configuration.
    pub fn reloader(mut self, reloader: TlsReloader) -> Self {
        self.reloader = Some(reloader);
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
            let chain =
                pem::certificates(&self.cert_chain_pem, "server certificate").map_err(err)?;
            let key = pem::private_key(&self.key_pem, "server key").map_err(err)?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| err(format!("TLS setup: {e}")))?;
            let builder = if self.client_ca_pem.is_empty() {
                builder.with_no_client_auth()
            } else {
                let roots = pem::root_store(&self.client_ca_pem, "client CA").map_err(err)?;
                let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                if self.client_auth_optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| err(format!("client certificate verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            };
            builder
                .with_single_cert(chain, key)
                .map_err(|e| err(format!("invalid server certificate or key: {e}")))?
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// As [`ServerTlsConfig::build`], offering ALPN `http/1.1` after `h2` when `http1`.
    fn build_alpn(&self, http1: bool) -> io::Result<Arc<rustls::ServerConfig>> {
        let config = self.build()?;
        if !http1 {
            return Ok(config);
        }
        let mut config = (*config).clone();
        config.alpn_protocols.push(ALPN_HTTP1.to_vec());
        Ok(Arc::new(config))
    }

    /// The acceptor and the per-connection rules the server applies; `http1`: gRPC-Web is
    /// on (ALPN `http/1.1` offered and accepted, no ALPN sniffed).
    pub(crate) fn acceptor(&self, http1: bool) -> io::Result<TlsServerSide> {
        let built = TlsAcceptor::from(self.build_alpn(http1)?);
        let acceptor = match &self.reloader {
            None => AcceptorSource::Fixed(built),
            Some(r) => {
                r.offer_http1
                    .store(http1, std::sync::atomic::Ordering::Release);
                // A reload made before the server started wins over the initial config.
                let mut slot = r.slot.write().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(built);
                AcceptorSource::Reloadable(Arc::clone(&r.slot))
            }
        };
        Ok(TlsServerSide {
            acceptor,
            allow_missing_alpn: self.allow_missing_alpn || http1,
            http1,
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// Rotates a running server's TLS material (certificate chain, key, client CAs) without
/// a restart: give it to [`ServerTlsConfig::reloader`], then call
/// [`TlsReloader::reload`] with a new configuration, or let
/// [`TlsReloader::watch_files`] do so whenever the PEM files change. New connections use
/// the new material; connections already open keep theirs. A configuration that fails to
/// build is refused and the server keeps the one it has.
///
/// ```no_run
/// use std::time::Duration;
/// use grpc_runtime::server::{Server, ServerTlsConfig, TlsReloader};
///
/// # async fn f() -> std::io::Result<()> {
/// let reloader = TlsReloader::new();
/// let tls = ServerTlsConfig::from_pem_files("server.pem", "server.key")?.reloader(reloader.clone());
/// // Re-read the files within a minute of each change (e.g. after cert-manager renewed them).
/// let _watch = reloader.watch_files(
///     vec!["server.pem".into(), "server.key".into()],
///     Duration::from_secs(60),
///     || ServerTlsConfig::from_pem_files("server.pem", "server.key"),
/// );
/// Server::builder().tls_config(tls).serve("[::]:443".parse().unwrap()).await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct TlsReloader {
    slot: Arc<RwLock<Option<TlsAcceptor>>>,
    /// Set by a server with gRPC-Web on: reloaded configurations offer ALPN `http/1.1` too.
    offer_http1: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader").finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// A reloader not yet attached to a server.
    pub fn new() -> TlsReloader {
        TlsReloader::default()
    }

    /// Builds `config` (validating it) and makes it the one new connections get. On error
    /// nothing changes.
    pub fn reload(&self, config: &ServerTlsConfig) -> io::Result<()> {
        let http1 = self.offer_http1.load(std::sync::atomic::Ordering::Acquire);
        let acceptor = TlsAcceptor::from(config.build_alpn(http1)?);
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(acceptor);
        tracing::info!("server TLS configuration reloaded");
        Ok(())
    }

    /// Checks `paths` every `interval` and, when any of them changed (modification time
    /// or size), reloads with the configuration `load` builds. A failure (a file half
    /// written, a key that does not match) is logged and the current configuration kept;
    /// the next change is tried again. Runs on the current tokio runtime until the
    /// returned task is aborted.
    pub fn watch_files<F>(
        &self,
        paths: Vec<PathBuf>,
        interval: Duration,
        load: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> io::Result<ServerTlsConfig> + Send + 'static,
    {
        let this = self.clone();
        let stamp = move |paths: &[PathBuf]| -> Vec<Option<(SystemTime, u64)>> {
            paths
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())))
                })
                .collect()
        };
        tokio::spawn(async move {
            let mut seen = stamp(&paths);
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = stamp(&paths);
                if now == seen {
                    continue;
                }
                seen = now;
                match load().and_then(|cfg| this.reload(&cfg)) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the current configuration")
                    }
                }
            }
        })
    }
}

/// Where the server's acceptor comes from.
#[derive(Clone)]
enum AcceptorSource {
    Fixed(TlsAcceptor),
    Reloadable(Arc<RwLock<Option<TlsAcceptor>>>),
}

/// What a running server needs to accept TLS connections.
#[derive(Clone)]
pub(crate) struct TlsServerSide {
    acceptor: AcceptorSource,
    allow_missing_alpn: bool,
    http1: bool,
    handshake_timeout: Duration,
}

/// What a TLS connection's handshake established, shared by its calls; present for every
/// TLS connection, so calls can tell TLS from plaintext ([`crate::ServerContext::is_tls`]).
pub(crate) type PeerCertificates = Arc<TlsInfo>;

/// The TLS session of the connection a server call arrived on
/// ([`crate::ServerContext::tls_info`]): the client's certificate chain and the
/// negotiated protocol version, cipher suite and ALPN protocol.
///
/// ```
/// # fn handler(ctx: &grpc_runtime::ServerContext) {
/// if let Some(tls) = ctx.tls_info() {
///     tracing::info!(version = tls.protocol_version(), cipher = tls.cipher_suite(), "TLS call");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    certificates: Vec<CertificateDer<'static>>,
    protocol_version: Option<&'static str>,
    cipher_suite: Option<&'static str>,
    alpn: Option<Vec<u8>>,
}

impl TlsInfo {
    /// The certificate chain the client presented (DER, leaf first); empty when it
    /// presented none.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The protocol version, e.g. `"TLSv1_3"` (rustls's names); `""` if unknown.
    pub fn protocol_version(&self) -> &'static str {
        self.protocol_version.unwrap_or("")
    }

    /// The cipher suite, e.g. `"TLS13_AES_256_GCM_SHA384"`; `""` if unknown.
    pub fn cipher_suite(&self) -> &'static str {
        self.cipher_suite.unwrap_or("")
    }

    /// The ALPN protocol negotiated (`h2`, or `http/1.1` for gRPC-Web), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }
}

impl TlsServerSide {
    /// Runs the handshake on `io` and checks ALPN. `Err` is a readable
    /// reason; the caller logs it and drops the connection.
    /// The certificates are always `Some` (empty without a client certificate).
    pub(crate) async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(TlsStream<IO>, Option<PeerCertificates>, Alpn), String>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = match &self.acceptor {
            AcceptorSource::Fixed(a) => a.clone(),
            AcceptorSource::Reloadable(slot) => {
                match slot.read().unwrap_or_else(|e| e.into_inner()).clone() {
                    Some(a) => a,
                    None => return Err("no TLS configuration installed".into()),
                }
            }
        };
        let stream = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
            Err(_) => return Err("TLS handshake timed out".into()),
        };
        let conn = stream.get_ref().1;
        let alpn = match conn.alpn_protocol() {
            Some(ALPN_H2) => Alpn::H2,
            Some(ALPN_HTTP1) if self.http1 => Alpn::Http1,
            None if self.allow_missing_alpn => Alpn::None,
            other => {
                return Err(format!(
                    "client did not negotiate ALPN h2 (got {:?})",
                    other.map(String::from_utf8_lossy)
                ))
            }
        };
        let info = TlsInfo {
            certificates: conn
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
            protocol_version: conn.protocol_version().and_then(|v| v.as_str()),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str()),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        Ok((stream, Some(Arc::new(info)), alpn))
    }
}
