//! `Endpoint`: the builder for a [`Channel`] (target, timeouts, TLS, HTTP/2 settings,
//! compression, message size limits, user agent, interceptors).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::balancer::PickFirst;
use super::interceptor::{Interceptor, Interceptors};
use super::channel::Channel;
use super::subchannel::SubchannelConfig;
use super::target::Target;
use crate::compression::{CompressionEncoding, EncodingSet};
use crate::transport::{ClientTlsConfig, TransportConfig, TransportError, TransportErrorKind};

use crate::codec::{DEFAULT_MAX_RECV_MESSAGE_SIZE, DEFAULT_MAX_SEND_MESSAGE_SIZE};

/// Per-call settings shared by every call on a channel.
#[derive(Clone)]
pub(crate) struct CallConfig {
    pub(crate) user_agent: HeaderValue,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_recv_message_size: usize,
    pub(crate) max_send_message_size: usize,
    pub(crate) send_compression: Option<CompressionEncoding>,
    /// `grpc-accept-encoding` we send (None: identity only, header omitted).
    pub(crate) accept_header: Option<HeaderValue>,
    /// Encodings assumed accepted by a server that has not sent `grpc-accept-encoding`.
    pub(crate) assumed_server_accept: EncodingSet,
    pub(crate) interceptors: Interceptors,
}

/// Builder for a [`Channel`]; obtained from [`Channel::builder`].
#[derive(Clone)]
pub struct Endpoint {
    target: String,
    transport: TransportConfig,
    authority: Option<String>,
    user_agent: Option<String>,
    timeout: Option<Duration>,
    max_recv_message_size: usize,
    max_send_message_size: usize,
    send_compression: Option<CompressionEncoding>,
    accept: EncodingSet,
    assumed_server_accept: EncodingSet,
    interceptors: Interceptors,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Channel {
    /// Starts building a channel to `target`: `http://host:port`, `https://host:port`,
    /// `unix:/path/to/socket` (also `unix:///path`), `dns:///host:port` or `host:port`.
    pub fn builder(target: impl Into<String>) -> Endpoint {
        Endpoint::new(target)
    }
}

impl Endpoint {
    /// A builder for `target` with default settings.
    pub fn new(target: impl Into<String>) -> Self {
        Endpoint {
            target: target.into(),
            transport: TransportConfig::default(),
            authority: None,
            user_agent: None,
            timeout: None,
            max_recv_message_size: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send_message_size: DEFAULT_MAX_SEND_MESSAGE_SIZE,
            send_compression: None,
            accept: EncodingSet::all(),
            assumed_server_accept: EncodingSet::none(),
            interceptors: Interceptors::default(),
        }
    }

    /// Bounds each connection attempt (socket + TLS + HTTP/2 handshake); default 20 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.transport.connect_timeout = d;
        self
    }

    /// A default deadline applied to calls that set none (and inherit none).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Uses TLS with this configuration (implied `https`; required for `https` targets).
    pub fn tls_config(mut self, tls: ClientTlsConfig) -> Self {
        self.transport.tls = Some(tls);
        self
    }

    /// Sets `TCP_NODELAY` (on by default).
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.transport.tcp_nodelay = on;
        self
    }

    /// Per-stream receive window we advertise (SETTINGS_INITIAL_WINDOW_SIZE).
    pub fn initial_stream_window_size(mut self, size: u32) -> Self {
        self.transport.http2.initial_stream_window_size = size;
        self
    }

    /// Connection-level receive window.
    pub fn initial_connection_window_size(mut self, size: u32) -> Self {
        self.transport.http2.initial_connection_window_size = size;
        self
    }

    /// SETTINGS_MAX_FRAME_SIZE we advertise (16384 ..= 16777215).
    pub fn max_frame_size(mut self, size: u32) -> Self {
        self.transport.http2.max_frame_size = size;
        self
    }

    /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise (default 8 KiB).
    pub fn max_header_list_size(mut self, size: u32) -> Self {
        self.transport.http2.max_header_list_size = size;
        self
    }

    /// Overrides the `:authority` sent on every call (default: the target's host:port).
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// Prepends `prefix` to the user agent: `"<prefix> grpc-rust/<version>"`.
    pub fn user_agent(mut self, prefix: impl Into<String>) -> Self {
        self.user_agent = Some(prefix.into());
        self
    }

    /// Largest message accepted from the server (default 4 MiB); larger ones fail the
    /// call with RESOURCE_EXHAUSTED.
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_recv_message_size = limit;
        self
    }

    /// Largest message we send (default unlimited); larger ones fail the call with
    /// RESOURCE_EXHAUSTED before anything is sent.
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_send_message_size = limit;
        self
    }

    /// Compresses request messages with `encoding` by default (a call can override it
    /// with `Request::set_compression`).
    ///
    /// The client never compresses in an encoding the server did not advertise: until a
    /// response on the connection carried `grpc-accept-encoding`, only the encodings
    /// declared with [`Endpoint::assume_server_accepts`] are used (none by default), so
    /// the first call on a new connection may go out uncompressed.
    pub fn send_compressed(mut self, encoding: CompressionEncoding) -> Self {
        self.send_compression = Some(encoding);
        self
    }

    /// The encodings advertised in `grpc-accept-encoding` (default: every encoding this
    /// crate implements). Responses in an encoding we implement are decoded either way.
    pub fn accept_compressed(mut self, encodings: EncodingSet) -> Self {
        self.accept = encodings;
        self
    }

    /// Encodings to assume the server accepts until it says otherwise with
    /// `grpc-accept-encoding` (default: none). Some servers (grpc-go among them) only send
    /// `grpc-accept-encoding` when rejecting an encoding, so a client that knows its
    /// server can declare it here; a rejection (UNIMPLEMENTED with
    /// `grpc-accept-encoding`) then corrects the assumption for later calls.
    pub fn assume_server_accepts(mut self, encodings: EncodingSet) -> Self {
        self.assumed_server_accept = encodings;
        self
    }

    /// Adds a client interceptor. Interceptors run in the order added: the first added
    /// is the outermost (its `start` runs first, its `finish` last).
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.0.push(std::sync::Arc::new(interceptor));
        self
    }

    fn build(self) -> Result<Channel, TransportError> {
        let cfg_err = |m: String| TransportError::new(TransportErrorKind::Config, m);
        let target = Target::parse(&self.target)?;
        if target.tls && self.transport.tls.is_none() {
            return Err(cfg_err(format!(
                "target {} is https but no TLS configuration was given (Endpoint::tls_config)",
                self.target
            )));
        }
        let mut target = target;
        if self.transport.tls.is_some() {
            target.tls = true;
        }
        if let Some(tls) = &self.transport.tls {
            tls.connector()?; // validate PEM inputs now rather than on first call
        }
        let ua = match &self.user_agent {
            Some(p) => format!("{p} grpc-rust/{}", env!("CARGO_PKG_VERSION")),
            None => format!("grpc-rust/{}", env!("CARGO_PKG_VERSION")),
        };
        let user_agent = HeaderValue::try_from(ua).map_err(|_| cfg_err("user agent is not a valid header value".into()))?;
        let authority = self.authority.clone().unwrap_or_else(|| target.authority.clone());
        http::uri::Authority::try_from(authority.as_str())
            .map_err(|_| cfg_err(format!("invalid authority {authority:?}")))?;
        let sub_config = Arc::new(SubchannelConfig { transport: self.transport.clone(), server_name: target.host.clone() });
        let resolver = target.resolver();
        let balancer = Arc::new(PickFirst::new(sub_config));
        let config = CallConfig {
            user_agent,
            timeout: self.timeout,
            max_recv_message_size: self.max_recv_message_size,
            max_send_message_size: self.max_send_message_size,
            send_compression: self.send_compression,
            accept_header: if self.accept == EncodingSet::none() {
                None
            } else {
                HeaderValue::try_from(self.accept.to_header_value()).ok()
            },
            assumed_server_accept: self.assumed_server_accept,
            interceptors: self.interceptors,
        };
        Ok(Channel::from_parts(target, authority, resolver, balancer, config))
    }

    /// Builds the channel and connects before returning (fails if the first connection
    /// cannot be established).
    pub async fn connect(self) -> Result<Channel, TransportError> {
        let ch = self.build()?;
        ch.connect_now().await?;
        Ok(ch)
    }

    /// Builds the channel without connecting; the first call connects.
    pub fn connect_lazy(self) -> Result<Channel, TransportError> {
        self.build()
    }
}
