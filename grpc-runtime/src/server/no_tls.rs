//! Stand-ins for the server's TLS types when the `tls` feature is off: no
//! connection carries a TLS session, so they have no values.

/// A TLS session's details; uninhabited without the `tls` feature.
pub(crate) enum TlsInfo {}

/// What a connection learned from its TLS handshake (never present here).
pub(crate) type PeerCertificates = std::sync::Arc<TlsInfo>;
