//! Transport: everything below the gRPC layer on the client side of a connection.
//!
//! This module owns establishing one HTTP/2 client connection: the socket (TCP with
//! `TCP_NODELAY`, or a unix socket), optional TLS (rustls with ALPN `h2` required), the
//! HTTP/2 handshake with our SETTINGS, and the background task that drives the h2
//! connection. The connection handle itself is crate-private (the channel's subchannels
//! own connections; h2 stays out of the public API). What users name lives here:
//! [`TransportError`] (what connecting returns), [`Address`], [`BackoffConfig`],
//! [`BDP_LIMIT`], the keepalive bounds and, with the `tls` feature, `ClientTlsConfig`.
//!
//! Nothing here knows about protobuf, gRPC status codes or metadata.

mod address;
mod backoff;
pub(crate) mod bdp;
mod connect;
pub(crate) mod engine;
pub(crate) mod frame_tap;
#[cfg(feature = "tls")]
pub(crate) mod pem;
pub(crate) mod send;
#[cfg(feature = "tls")]
mod tls;
pub(crate) mod write_batch;

pub use address::Address;
pub use backoff::BackoffConfig;
pub(crate) use backoff::{jitter, random_unit, scale as backoff_scale, Backoff};
pub use bdp::BDP_LIMIT;
pub(crate) use connect::{
    connect_counted, Connection, ConnectionClosed, KeepaliveConfig, TransportConfig,
};
pub use connect::{DEFAULT_KEEPALIVE_TIMEOUT, MIN_KEEPALIVE_TIME};
#[cfg(feature = "tls")]
pub use tls::ClientTlsConfig;

/// The message of the [`TransportError`] an `https://` target (or another use of TLS)
/// gets when this build has no TLS.
#[cfg(not(feature = "tls"))]
pub(crate) const TLS_NOT_COMPILED_IN: &str =
    "TLS support is not compiled in: enable grpc-runtime's `tls` feature";

/// Budget (bytes of per-frame overhead) for small DATA frames buffered unread on one
/// connection, given to h2's `data_frame_budget` on both client and server. h2's default
/// (half a connection window) closes a connection that receives a burst of tiny or padded
/// frames with ENHANCE_YOUR_CALM, which grpc's negative HTTP/2 `data_frame_padding` case
/// and ordinary small-message streams can trigger; payload memory stays bounded by flow
/// control either way.
pub(crate) const DATA_FRAME_BUDGET: usize = 64 * 1024 * 1024;

use std::fmt;

/// Why establishing or using a connection failed.
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    message: String,
}

/// Broad category of a [`TransportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The address could not be resolved or parsed.
    Resolve,
    /// The socket could not be connected.
    Connect,
    /// Connecting (socket + TLS + HTTP/2 handshake) took longer than the connect timeout.
    Timeout,
    /// The TLS handshake failed or the peer did not negotiate ALPN `h2`.
    Tls,
    /// The HTTP/2 handshake or the connection failed.
    Http2,
    /// The configuration is invalid (bad certificate PEM, unsupported URI, ...).
    Config,
}

impl TransportError {
    /// Creates an error of `kind` with a readable message.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    /// The error's category.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for TransportError {}
