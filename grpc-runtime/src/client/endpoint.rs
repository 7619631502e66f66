//! `Endpoint`: the builder for a [`Channel`] (target, timeouts, TLS, HTTP/2 settings,
//! compression, message size limits, user agent, interceptors).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::channel::Channel;
use super::control::{self, ControlConfig};
use super::credentials::CallCredentials;
use super::interceptor::{Interceptor, Interceptors};
use super::lb::{LbPolicyBuilder, PolicySet};
use super::resolver::{self, ResolverBuilder, ResolverOptions, ResolverTarget};
use super::service_config::ServiceConfig;
use super::subchannel::SubchannelConfig;
use crate::compression::{CompressionEncoding, EncodingSet};
#[cfg(feature = "tls")]
use crate::transport::ClientTlsConfig;
use crate::transport::{
    BackoffConfig, KeepaliveConfig, TransportConfig, TransportError, TransportErrorKind,
    DEFAULT_KEEPALIVE_TIMEOUT, MIN_KEEPALIVE_TIME,
};

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
    /// Call credentials of every call, in the order added.
    pub(crate) call_credentials: Vec<Arc<dyn CallCredentials>>,
    /// Replay-buffer bounds of retryable streaming calls (gRFC A6).
    pub(crate) retry_buffer_per_call: usize,
    pub(crate) retry_buffer_per_channel: usize,
    /// A stats plugin (OpenTelemetry): `None` costs each call one check.
    pub(crate) stats: Option<Arc<dyn crate::stats::ClientStatsHandler>>,
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
    call_credentials: Vec<Arc<dyn CallCredentials>>,
    keepalive_time: Option<Duration>,
    keepalive_timeout: Duration,
    keepalive_without_calls: bool,
    backoff: BackoffConfig,
    idle_timeout: Option<Duration>,
    resolvers: Vec<Arc<dyn ResolverBuilder>>,
    policies: PolicySet,
    default_service_config: Option<String>,
    resolver_options: ResolverOptions,
    retry_buffer: (usize, usize),
    ignore_resolver_config: bool,
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::otel::OpenTelemetry>,
}

/// Default channel idle timeout (grpc-go: 30 minutes).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Starts building a channel to `target`, in any form of the gRPC naming doc:
    /// `dns:///host:port` (or plain `host:port`), `ipv4:a:p[,b:p...]`,
    /// `ipv6:[a]:p[,...]`, `unix:path`, `unix:///abs/path`, `unix-abstract:name`,
    /// `passthrough:///host:port`, any scheme with a registered resolver
    /// ([`crate::client::resolver::register`], [`Endpoint::resolver`]), and
    /// `http://host:port` / `https://host:port` (DNS, plaintext or TLS).
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
            assumed_server_accept: EncodingSet::all(),
            interceptors: Interceptors::default(),
            call_credentials: Vec::new(),
            keepalive_time: None,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            keepalive_without_calls: false,
            backoff: BackoffConfig::default(),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            resolvers: Vec::new(),
            policies: PolicySet::default(),
            default_service_config: None,
            resolver_options: ResolverOptions::default(),
            retry_buffer: (
                super::DEFAULT_PER_CALL_RETRY_BUFFER,
                super::DEFAULT_CHANNEL_RETRY_BUFFER,
            ),
            ignore_resolver_config: false,
            #[cfg(feature = "opentelemetry")]
            otel: None,
        }
    }

    /// Ignores service configs that the resolver supplies, so the channel always uses
    /// [`Endpoint::default_service_config`] (grpc-go's `WithDisableServiceConfig`; the
    /// interop client does this with `--service_config_json`).
    pub fn ignore_resolver_service_config(mut self, ignore: bool) -> Self {
        self.ignore_resolver_config = ignore;
        self
    }

    /// Bounds of the buffers that keep a streaming call's sent messages for replay while
    /// a retry policy may still retry it: per call (default 256 KiB, as grpc-go) and for
    /// all calls of the channel together (default 16 MiB, as grpc-java). Past either, the
    /// call commits to its current attempt and is not retried (gRFC A6).
    pub fn retry_buffer_size(mut self, per_call: usize, per_channel: usize) -> Self {
        self.retry_buffer = (per_call, per_channel);
        self
    }

    /// Uses `builder` for targets of its scheme on this channel only (before the
    /// process-wide registry; grpc-go's `WithResolvers`).
    pub fn resolver(mut self, builder: impl ResolverBuilder) -> Self {
        self.resolvers.push(Arc::new(builder));
        self
    }

    /// Makes the LB policy `builder` selectable by name on this channel (before the
    /// process-wide registry, [`crate::client::lb::register`]). Select it with
    /// [`Endpoint::default_service_config`] or a resolver's service config.
    pub fn lb_policy(mut self, builder: impl LbPolicyBuilder) -> Self {
        self.policies.add(Arc::new(builder));
        self
    }

    /// The service config (gRFC A2 JSON) used while the resolver provides none:
    /// `loadBalancingConfig`, per-method `timeout`, `waitForReady`, message size limits,
    /// `retryPolicy` / `hedgingPolicy`, `retryThrottling`. Invalid JSON or values fail
    /// [`Endpoint::connect`] / [`Endpoint::connect_lazy`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let channel = grpc_runtime::Channel::builder("ipv4:127.0.0.1:50051,127.0.0.1:50052")
    ///     .default_service_config(r#"{
    ///         "loadBalancingConfig": [{"round_robin": {}}],
    ///         "methodConfig": [{"name": [{"service": "helloworld.Greeter"}], "timeout": "2s"}]
    ///     }"#)
    ///     .connect_lazy()?;
    /// # let _ = channel; Ok(()) }
    /// ```
    pub fn default_service_config(mut self, json: impl Into<String>) -> Self {
        self.default_service_config = Some(json.into());
        self
    }

    /// Shorthand for a default service config selecting `policy` (`"pick_first"`, the
    /// default, or `"round_robin"`, or a registered policy) with its default config.
    pub fn load_balancing_policy(self, policy: &str) -> Self {
        let json = serde_json::json!({ "loadBalancingConfig": [{ policy: {} }] }).to_string();
        self.default_service_config(json)
    }

    /// Minimum time between two DNS resolutions asked for by the channel (default 30 s,
    /// as grpc-go); resolutions happen when a connection is lost or every backend fails.
    pub fn dns_min_resolution_interval(mut self, interval: Duration) -> Self {
        self.resolver_options.min_resolution_interval = interval;
        self
    }

    /// Reconnect backoff after failed connection attempts (default: 1 s, x1.6, jitter
    /// 0.2, at most 120 s, per gRPC's connection-backoff.md). While backing off the
    /// channel is TRANSIENT_FAILURE: calls fail fast with UNAVAILABLE unless they are
    /// wait-for-ready ([`crate::Request::set_wait_for_ready`]).
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// After this long without calls the channel releases its connections (and its
    /// resolver and LB policy) and goes IDLE (default 30 min); the next call rebuilds
    /// them. Checked once per timeout as grpc-go does, so a channel goes IDLE between one
    /// and two timeouts after its last call. `None` disables it.
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sends a keepalive PING after the connection has been silent (nothing read) for
    /// this long, and closes it when the PING is not answered within
    /// [`Endpoint::keepalive_timeout`]; its calls then fail with UNAVAILABLE and the
    /// channel reconnects (gRFC A8). Off by default. Values under 10 s are raised to 10 s.
    /// Servers limit how often they accept PINGs (grpc-go and ours: 5 min by default);
    /// a server answering GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") makes the channel
    /// double this time for its next connections.
    pub fn keepalive_time(mut self, time: Duration) -> Self {
        self.keepalive_time = Some(time.max(MIN_KEEPALIVE_TIME));
        self
    }

    /// Like [`Endpoint::keepalive_time`] without the 10 s minimum. For tests only: real
    /// servers treat such frequent PINGs as abuse.
    pub fn keepalive_time_unchecked_for_tests(mut self, time: Duration) -> Self {
        self.keepalive_time = Some(time);
        self
    }

    /// How long to wait for a keepalive PING's answer before closing the connection
    /// (default 20 s).
    pub fn keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// Whether keepalive PINGs are sent while no call is open (default false).
    pub fn keepalive_without_calls(mut self, on: bool) -> Self {
        self.keepalive_without_calls = on;
        self
    }

    /// Bounds each connection attempt (socket + TLS + HTTP/2 handshake); default 20 s.
    /// This is also connection-backoff.md's MIN_CONNECT_TIMEOUT: once the backoff delay
    /// grows beyond it, an attempt may take up to the backoff delay.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.transport.connect_timeout = d;
        self
    }

    /// A default deadline applied to calls that set none (and inherit none).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Uses TLS with this configuration (implied `https`; required for `https` targets
    /// unless the `tls-native-roots` feature supplies the system's roots). Needs the `tls`
    /// feature (on by default).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, tls: ClientTlsConfig) -> Self {
        self.transport.tls = Some(tls);
        self
    }

    /// Sets `TCP_NODELAY` (on by default).
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.transport.tcp_nodelay = on;
        self
    }

    /// Per-stream receive window we advertise (SETTINGS_INITIAL_WINDOW_SIZE; default
    /// 1 MiB, the starting point of adaptive windows).
    pub fn initial_stream_window_size(mut self, size: u32) -> Self {
        self.transport.http2.initial_stream_window_size = size;
        self
    }

    /// Connection-level receive window (default 2 MiB).
    pub fn initial_connection_window_size(mut self, size: u32) -> Self {
        self.transport.http2.initial_connection_window_size = size;
        self
    }

    /// BDP-based adaptive receive windows (default on): while DATA arrives, PINGs measure
    /// the bandwidth-delay product and both windows grow to twice the estimate, up to
    /// 16 MiB ([`crate::transport::BDP_LIMIT`]) and never below the initial windows set
    /// above. Off: the initial windows stay fixed. See docs/flow-control.md.
    pub fn adaptive_window(mut self, on: bool) -> Self {
        self.transport.http2.adaptive_window = on;
        self
    }

    /// SETTINGS_MAX_FRAME_SIZE we advertise (16384 ..= 16777215).
    pub fn max_frame_size(mut self, size: u32) -> Self {
        self.transport.http2.max_frame_size = size;
        self
    }

    /// The largest response head (headers, trailers or Trailers-Only, counted as HTTP/2
    /// counts a header list: name + value + 32 bytes per field) we accept; advertised as
    /// SETTINGS_MAX_HEADER_LIST_SIZE (default 8 KiB, as gRPC's PROTOCOL-HTTP2 suggests and
    /// C core and grpc-java use; grpc-go advertises 16 MiB). A larger response head fails
    /// that call with INTERNAL; the connection goes on.
    ///
    /// The other direction is the server's: a call whose own request head is over the
    /// server's advertised limit fails with INTERNAL before anything is sent, as in
    /// grpc-go ("header list size to send violates the maximum size ...").
    ///
    /// ```
    /// let endpoint = grpc_runtime::Endpoint::new("http://127.0.0.1:50051").max_header_list_size(16 * 1024);
    /// # let _ = endpoint;
    /// ```
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
    /// Until a response on the connection carried `grpc-accept-encoding`, the client
    /// assumes the encodings of [`Endpoint::assume_server_accepts`] (by default every
    /// encoding this crate implements, as grpc-go and grpc-java clients do: many servers,
    /// grpc-go among them, advertise only when rejecting). Once the server advertised a
    /// set, the client never compresses in an encoding outside it; a rejection
    /// (UNIMPLEMENTED with `grpc-accept-encoding`) narrows the set for later calls.
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
    /// `grpc-accept-encoding` (default: all encodings this crate implements; pass
    /// `EncodingSet::none()` to compress only after the server advertised). Some servers (grpc-go among them) only send
    /// `grpc-accept-encoding` when rejecting an encoding, so a client that knows its
    /// server can declare it here; a rejection (UNIMPLEMENTED with
    /// `grpc-accept-encoding`) then corrects the assumption for later calls.
    pub fn assume_server_accepts(mut self, encodings: EncodingSet) -> Self {
        self.assumed_server_accept = encodings;
        self
    }

    /// Records OpenTelemetry metrics (gRFC A66) for every call on this channel and, when
    /// the plugin has a tracer, makes a span per call and propagates its context in the
    /// request metadata (grpc-go's `opentelemetry.DialOption`). See [`crate::otel`].
    ///
    /// ```
    /// # fn f(provider: &impl opentelemetry::metrics::MeterProvider) -> Result<(), grpc_runtime::transport::TransportError> {
    /// let otel = grpc_runtime::otel::OpenTelemetry::builder().meter_provider(provider).build();
    /// let channel = grpc_runtime::Channel::builder("localhost:50051").opentelemetry(otel).connect_lazy()?;
    /// # let _ = channel; Ok(()) }
    /// ```
    #[cfg(feature = "opentelemetry")]
    pub fn opentelemetry(mut self, otel: crate::otel::OpenTelemetry) -> Self {
        self.otel = Some(otel);
        self
    }

    /// Adds a client interceptor. Interceptors run in the order added: the first added
    /// is the outermost (its `start` runs first, its `finish` last).
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.0.push(std::sync::Arc::new(interceptor));
        self
    }

    /// Adds call credentials sent with every call on this channel (grpc-go's
    /// `WithPerRPCCredentials`); several run in the order added, before a call's own
    /// ([`crate::Request::set_call_credentials`]). Credentials that need transport
    /// security (the default) fail calls on a plaintext connection with
    /// UNAUTHENTICATED before anything is sent; see [`crate::client::credentials`].
    ///
    /// ```
    /// use grpc_runtime::client::credentials::MetadataCredentials;
    /// use grpc_runtime::{Channel, ClientTlsConfig};
    ///
    /// # fn f(ca_pem: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let channel = Channel::builder("https://api.example.com:443")
    ///     .tls_config(ClientTlsConfig::new().ca_certificate_pem(ca_pem))
    ///     .call_credentials(MetadataCredentials::bearer_token("s3cr3t")?)
    ///     .connect_lazy()?;
    /// # let _ = channel; Ok(()) }
    /// ```
    pub fn call_credentials(mut self, credentials: impl CallCredentials) -> Self {
        self.call_credentials.push(Arc::new(credentials));
        self
    }

    /// The resolver target and its builder: a registered scheme (channel-local first),
    /// `http(s)://host:port` as DNS, anything else as `dns:///target`.
    fn resolve_target(
        &self,
    ) -> Result<(ResolverTarget, Arc<dyn ResolverBuilder>, bool), TransportError> {
        let bad = |why: String| {
            TransportError::new(
                TransportErrorKind::Config,
                format!("invalid target {:?}: {why}", self.target),
            )
        };
        let find = |scheme: &str| {
            self.resolvers
                .iter()
                .rev()
                .find(|r| r.scheme().eq_ignore_ascii_case(scheme))
                .cloned()
                .or_else(|| resolver::lookup(scheme))
        };
        let dns = || find("dns").ok_or_else(|| bad("no dns resolver registered".into()));
        for (prefix, tls) in [("http://", false), ("https://", true)] {
            if let Some(rest) = self.target.strip_prefix(prefix) {
                let hostport = rest.strip_suffix('/').unwrap_or(rest);
                if hostport.is_empty() || hostport.contains('/') || hostport.contains('@') {
                    return Err(bad("expected host:port".into()));
                }
                let port = if tls { "443" } else { "80" };
                let endpoint = match has_port(hostport) {
                    Some(true) => hostport.to_string(),
                    Some(false) => format!("{hostport}:{port}"),
                    None => return Err(bad("malformed host or port".into())),
                };
                return Ok((ResolverTarget::new("dns", "", endpoint), dns()?, tls));
            }
        }
        if let Some(t) = ResolverTarget::parse(&self.target) {
            if let Some(b) = find(t.scheme()) {
                return Ok((t, b, false));
            }
            if self.target.contains("://") {
                return Err(bad(format!(
                    "no resolver is registered for the scheme {:?}",
                    t.scheme()
                )));
            }
        }
        Ok((
            ResolverTarget::new("dns", "", self.target.clone()),
            dns()?,
            false,
        ))
    }

    /// The stats plugin of this channel's calls, if any.
    #[cfg(feature = "opentelemetry")]
    fn stats_handler(&self) -> Option<Arc<dyn crate::stats::ClientStatsHandler>> {
        let otel = self.otel.as_ref()?;
        Some(otel.client_handler(&self.canonical_target()))
    }

    /// The target in canonical form for the `grpc.target` attribute (gRFC A66): as
    /// written when it names a scheme we resolve (or is `http(s)://`), else with the
    /// `dns:///` that [`Endpoint::resolve_target`] assumes.
    #[cfg(feature = "opentelemetry")]
    fn canonical_target(&self) -> String {
        if self.target.starts_with("http://") || self.target.starts_with("https://") {
            return self.target.clone();
        }
        let known = ResolverTarget::parse(&self.target).is_some_and(|t| {
            self.resolvers
                .iter()
                .any(|r| r.scheme().eq_ignore_ascii_case(t.scheme()))
                || resolver::lookup(t.scheme()).is_some()
        });
        if known {
            self.target.clone()
        } else {
            format!("dns:///{}", self.target)
        }
    }

    #[cfg(not(feature = "opentelemetry"))]
    fn stats_handler(&self) -> Option<Arc<dyn crate::stats::ClientStatsHandler>> {
        None
    }

    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    fn build(mut self) -> Result<Channel, TransportError> {
        let cfg_err = |m: String| TransportError::new(TransportErrorKind::Config, m);
        let (rtarget, resolver, https) = self.resolve_target()?;
        resolver
            .validate(&rtarget)
            .map_err(|e| cfg_err(format!("invalid target {:?}: {e}", self.target)))?;
        #[cfg(not(feature = "tls"))]
        if https {
            return Err(TransportError::new(
                TransportErrorKind::Config,
                format!(
                    "target {}: {}",
                    self.target,
                    crate::transport::TLS_NOT_COMPILED_IN
                ),
            ));
        }
        #[cfg(feature = "tls")]
        if https && self.transport.tls.is_none() {
            // `https://` without a configuration: the system's CA certificates.
            if cfg!(feature = "tls-native-roots") {
                self.transport.tls = Some(ClientTlsConfig::new().with_native_roots());
            } else {
                return Err(cfg_err(format!(
                    "target {} is https but no TLS configuration was given (Endpoint::tls_config) \
                     and the tls-native-roots feature is off",
                    self.target
                )));
            }
        }
        #[cfg(feature = "tls")]
        let tls = https || self.transport.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        // Built (PEM validated, system roots read) now rather than on every connection.
        #[cfg(feature = "tls")]
        if let Some(cfg) = self.transport.tls.take() {
            self.transport.tls = Some(cfg.prepared()?);
        }
        let ua = match &self.user_agent {
            Some(p) => format!("{p} grpc-rust/{}", env!("CARGO_PKG_VERSION")),
            None => format!("grpc-rust/{}", env!("CARGO_PKG_VERSION")),
        };
        let user_agent = HeaderValue::try_from(ua)
            .map_err(|_| cfg_err("user agent is not a valid header value".into()))?;
        // The http(s) forms send the authority as written (with the port only if given).
        let written = ["http://", "https://"]
            .iter()
            .find_map(|p| self.target.strip_prefix(p))
            .map(|r| r.strip_suffix('/').unwrap_or(r).to_string());
        let authority = self
            .authority
            .clone()
            .or(written)
            .unwrap_or_else(|| resolver.default_authority(&rtarget));
        http::uri::Authority::try_from(authority.as_str())
            .map_err(|_| cfg_err(format!("invalid authority {authority:?}")))?;
        let default_service_config = match &self.default_service_config {
            None => ServiceConfig::empty(),
            Some(json) => {
                let sc = ServiceConfig::parse(json).map_err(|e| {
                    cfg_err(format!("invalid default service config: {}", e.message()))
                })?;
                self.policies
                    .select(&sc)
                    .map_err(|e| cfg_err(format!("invalid default service config: {e}")))?;
                sc
            }
        };
        let mut transport = self.transport.clone();
        transport.keepalive = self.keepalive_time.map(|time| KeepaliveConfig {
            time,
            timeout: self.keepalive_timeout,
            without_calls: self.keepalive_without_calls,
        });
        let server_name = server_name_of(&authority);
        let scheme = if tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let subchannels = Arc::new(SubchannelConfig::new(
            transport,
            server_name,
            self.backoff,
            authority.clone(),
            scheme,
        ));
        let stats = self.stats_handler();
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
            call_credentials: self.call_credentials,
            retry_buffer_per_call: self.retry_buffer.0,
            retry_buffer_per_channel: self.retry_buffer.1,
            stats,
        };
        let control = control::new(ControlConfig {
            target: rtarget,
            resolver,
            resolver_options: self.resolver_options,
            policies: self.policies,
            default_service_config,
            ignore_resolver_config: self.ignore_resolver_config,
            subchannel: Arc::clone(&subchannels),
            idle_timeout: self.idle_timeout,
        });
        Ok(Channel::from_parts(
            self.target,
            tls,
            authority,
            config,
            control,
            subchannels,
        ))
    }

    /// Builds the channel and connects before returning (fails if the first connection
    /// cannot be established).
    pub async fn connect(self) -> Result<Channel, TransportError> {
        let ch = self.build()?;
        ch.connect_now().await?;
        Ok(ch)
    }

    /// Builds the channel without connecting; the first call connects. Needs no tokio
    /// runtime (the channel's control task starts with its first use).
    pub fn connect_lazy(self) -> Result<Channel, TransportError> {
        self.build()
    }
}

/// Whether `host[:port]` / `[v6][:port]` carries a port; `None` when malformed.
fn has_port(hostport: &str) -> Option<bool> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some(false),
            p => p.strip_prefix(':')?.parse::<u16>().ok().map(|_| true),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => p.parse::<u16>().ok().map(|_| true),
        Some(_) => None,
        None => Some(false),
    }
}

/// The TLS server name of an authority: the host without port or brackets.
fn server_name_of(authority: &str) -> String {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, _)) = rest.split_once(']') {
            return host.to_string();
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => authority.to_string(),
    }
}
