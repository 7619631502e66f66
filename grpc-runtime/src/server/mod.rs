//! The gRPC server: [`Server::builder`] and its settings, the [`Service`]
//! trait generated servers implement, the router, per-connection HTTP/2
//! handling, per-call validation and context, interceptors, graceful
//! shutdown, and connection management (gRFC A8/A9: keepalive PINGs, ping-abuse
//! enforcement with GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"), max connection
//! idle / age / age grace with a two-phase GOAWAY drain).

pub mod authz;
mod call;
mod conn;
mod dispatch;
#[cfg(feature = "tower")]
mod fallback;
#[cfg(any(feature = "grpc-web", feature = "tower"))]
mod http_conn;
mod interceptor;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tls")]
mod tls;
// Without TLS no connection carries a TLS session: uninhabited stand-ins keep the
// connection code free of feature gates.
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
#[cfg(feature = "grpc-web")]
pub(crate) mod web;
pub(crate) mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;

/// A call's request body: the h2 stream, or gRPC-Web's decoded chunks.
pub(crate) use crate::streaming::RecvBody as CallBody;
pub use call::ServerCall;
#[cfg(feature = "tower")]
pub use fallback::RequestBody;
#[cfg(feature = "tower")]
pub use http_conn::{BoxBody, BoxError};
pub use interceptor::{interceptor_fn, CallHead, Interceptor, InterceptorFn, Next};
#[cfg(feature = "tower")]
pub use layer::GrpcRoutes;
#[cfg(not(feature = "tls"))]
pub(crate) use tls::TlsInfo;
#[cfg(feature = "tls")]
pub use tls::{ServerTlsConfig, TlsInfo, TlsReloader, DEFAULT_TLS_HANDSHAKE_TIMEOUT};
#[cfg(feature = "grpc-web")]
pub use web::{
    AllowedOrigins, GrpcWebConfig, DEFAULT_CORS_MAX_AGE, DEFAULT_HTTP1_MAX_BUF_SIZE,
    DEFAULT_HTTP1_MAX_HEADERS,
};

use crate::codec::{DEFAULT_MAX_RECV_MESSAGE_SIZE, DEFAULT_MAX_SEND_MESSAGE_SIZE};
use crate::compression::{CompressionEncoding, EncodingSet};
use crate::latch::wait_until;
use crate::request::{BoxFuture, MethodDescriptor};
use call::CallConfig;

/// A service the server can route to; implemented by generated
/// `XxxServer<T>` wrappers.
pub trait Service: Send + Sync + 'static {
    /// Full service name, e.g. `"helloworld.Greeter"`.
    fn name(&self) -> &'static str;
    /// Methods of the service (for reflection, logging, method-exists checks).
    fn methods(&self) -> &'static [MethodDescriptor];
    /// Handles one call to `method` (the part after the last '/').
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()>;
    /// The encoded `google.protobuf.FileDescriptorSet` describing this service (its
    /// proto files and their imports), for server reflection
    /// ([`ServerBuilder::add_reflection`]). Generated services return their package's
    /// `FILE_DESCRIPTOR_SET`; the default is `None` (not listed by reflection).
    fn file_descriptor_set(&self) -> Option<&'static [u8]> {
        None
    }
}

/// Default header list size we advertise (SETTINGS_MAX_HEADER_LIST_SIZE) and enforce on
/// request heads: 8 KiB, the size gRPC's PROTOCOL-HTTP2 suggests and C core's soft limit
/// (grpc-go advertises 16 MiB). See [`ServerBuilder::max_header_list_size`].
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 8 * 1024;

/// Default bound on streams a client opened and reset before the server accepted them
/// ([`ServerBuilder::max_pending_accept_reset_streams`]): above legitimate cancel bursts
/// (a fan-out of 200 calls cancelled at once survives), low enough that a rapid-reset
/// attacker is cut off every 256 streams (scripts/rapid-reset.sh, docs/reliability.md).
pub const DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 256;

/// Default [`ServerBuilder::header_read_timeout`]: a request header block begun must be
/// complete within this. The same as the time a new connection has to send the HTTP/2
/// preface.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the default settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Adds the reflection services for `services` (see [`ServerBuilder::add_reflection`]).
fn add_reflection(services: &mut HashMap<&'static str, Arc<dyn Service>>) -> std::io::Result<()> {
    use crate::services::reflection::ReflectionBuilder;
    let mut builder = ReflectionBuilder::new();
    let mut listed: Vec<String> = Vec::new();
    for (name, service) in services.iter() {
        listed.push(name.to_string());
        if let Some(set) = service.file_descriptor_set() {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
    }
    let reflection = builder.list_only(listed).build().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("server reflection: {e}"),
        )
    })?;
    let (v1, v1alpha) = (reflection.v1(), reflection.v1alpha());
    services.insert(v1.name(), Arc::new(v1));
    services.insert(v1alpha.name(), Arc::new(v1alpha));
    Ok(())
}

/// State shared by every connection and call of a server.
pub(crate) struct Shared {
    pub(crate) services: HashMap<&'static str, Arc<dyn Service>>,
    pub(crate) interceptors: Arc<[Arc<dyn Interceptor>]>,
    pub(crate) call_config: Arc<CallConfig>,
    /// Encodings we can decode in requests.
    pub(crate) accept_encodings: EncodingSet,
    /// Encodings we may use for responses.
    pub(crate) send_encodings: EncodingSet,
    pub(crate) default_compression: Option<CompressionEncoding>,
    pub(crate) cancel_grace: Duration,
    pub(crate) h2: h2::server::Builder,
    /// TLS, when set: every accepted transport is handshaken first.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tls::TlsServerSide>,
    /// Keepalive, ping enforcement and connection age/idle limits.
    pub(crate) conn_mgmt: conn::ConnManagement,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: larger request heads end their call with
    /// RESOURCE_EXHAUSTED.
    pub(crate) max_header_list_size: u32,
    /// gRPC-Web, when on: HTTP/1.1 is served too and gRPC-Web requests on either.
    #[cfg(feature = "grpc-web")]
    pub(crate) web: Option<Arc<web::GrpcWebConfig>>,
    /// A stats plugin (OpenTelemetry): `None` costs each call one check.
    pub(crate) stats: Option<Arc<dyn crate::stats::ServerStatsHandler>>,
    /// This server's connections with calls in flight (the write batching rule).
    pub(crate) busy_connections: Arc<crate::transport::write_batch::BusyConnections>,
    /// The service answering requests that are not gRPC (nor gRPC-Web), when set: HTTP/1.1
    /// is served too.
    #[cfg(feature = "tower")]
    pub(crate) fallback: Option<fallback::Fallback>,
    /// The gRPC router inside the tower layers of [`ServerBuilder::layer`], when set:
    /// every gRPC call (and, without a fallback, every other request) goes through it.
    #[cfg(feature = "tower")]
    pub(crate) layered: Option<fallback::Fallback>,
}

impl Shared {
    /// Whether HTTP/1.1 connections are served (gRPC-Web or a fallback service is on):
    /// plaintext connections are sniffed for the HTTP/2 preface and TLS offers
    /// `http/1.1` in ALPN.
    #[cfg(any(feature = "grpc-web", feature = "tower"))]
    fn serves_http1(&self) -> bool {
        #[cfg(feature = "grpc-web")]
        if self.web.is_some() {
            return true;
        }
        #[cfg(feature = "tower")]
        if self.fallback.is_some() {
            return true;
        }
        false
    }
}

/// Server settings and services; finish with one of the `serve*` methods.
pub struct ServerBuilder {
    services: HashMap<&'static str, Arc<dyn Service>>,
    interceptors: Vec<Arc<dyn Interceptor>>,
    max_concurrent_streams: Option<u32>,
    max_pending_accept_reset_streams: usize,
    max_recv: usize,
    max_send: usize,
    max_header_list_size: u32,
    initial_stream_window: Option<u32>,
    initial_connection_window: Option<u32>,
    max_frame_size: Option<u32>,
    default_compression: Option<CompressionEncoding>,
    accept_encodings: EncodingSet,
    send_encodings: EncodingSet,
    grace_period: Duration,
    cancel_grace: Duration,
    tcp_nodelay: bool,
    #[cfg(feature = "tls")]
    tls: Option<ServerTlsConfig>,
    shutdown_hooks: Vec<Box<dyn FnOnce() + Send>>,
    conn_mgmt: conn::ConnManagement,
    /// Serve reflection for every service added ([`ServerBuilder::add_reflection`]).
    reflection: bool,
    #[cfg(feature = "grpc-web")]
    web: Option<web::GrpcWebConfig>,
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::otel::OpenTelemetry>,
    #[cfg(feature = "tower")]
    fallback: Option<fallback::Fallback>,
    #[cfg(feature = "tower")]
    layered: Option<fallback::Fallback>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            services: HashMap::new(),
            interceptors: Vec::new(),
            max_concurrent_streams: None,
            max_pending_accept_reset_streams: DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS,
            max_recv: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send: DEFAULT_MAX_SEND_MESSAGE_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            initial_stream_window: None,
            initial_connection_window: None,
            max_frame_size: None,
            default_compression: None,
            accept_encodings: EncodingSet::all(),
            send_encodings: EncodingSet::all(),
            grace_period: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(1),
            tcp_nodelay: true,
            #[cfg(feature = "tls")]
            tls: None,
            shutdown_hooks: Vec::new(),
            conn_mgmt: conn::ConnManagement::default(),
            reflection: false,
            #[cfg(feature = "grpc-web")]
            web: None,
            #[cfg(feature = "opentelemetry")]
            otel: None,
            #[cfg(feature = "tower")]
            fallback: None,
            #[cfg(feature = "tower")]
            layered: None,
        }
    }
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("ServerBuilder");
        f.field("services", &self.services.keys().collect::<Vec<_>>())
            .field("interceptors", &self.interceptors.len())
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("max_recv", &self.max_recv)
            .field("max_send", &self.max_send);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls);
        f.field("shutdown_hooks", &self.shutdown_hooks.len())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Registers a service (many services may share one server). A second
    /// service with the same name replaces the first.
    pub fn add_service(mut self, service: impl Service) -> Self {
        let name = service.name();
        if self.services.insert(name, Arc::new(service)).is_some() {
            tracing::warn!(
                service = name,
                "service registered twice; the last one wins"
            );
        }
        self
    }

    /// Serves server reflection (`grpc.reflection.v1` and `v1alpha`) listing every
    /// service added to this server, before or after this call (health and reflection
    /// included), and describing their proto files: grpc-go's `reflection.Register(s)`.
    /// Services describe themselves through [`Service::file_descriptor_set`] (generated
    /// services do). To add descriptor sets of your own, build the reflection services
    /// with [`crate::services::reflection::ReflectionBuilder`] instead.
    ///
    /// ```no_run
    /// # use grpc_runtime::server::Server;
    /// # async fn f() -> std::io::Result<()> {
    /// let health = grpc_runtime::services::health::HealthReporter::new();
    /// Server::builder().add_service(health.service()).add_reflection().serve("[::]:50051".parse().unwrap()).await
    /// # }
    /// ```
    pub fn add_reflection(mut self) -> Self {
        self.reflection = true;
        self
    }

    /// Adds an interceptor; the first added is the outermost.
    pub fn add_interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS per connection (default: unlimited, as grpc-go and
    /// grpc C core: neither advertises a limit). A stream the client opens beyond it is
    /// refused with RST_STREAM(REFUSED_STREAM) before any handler runs (our client and
    /// grpc-go's queue calls within the advertised limit instead, and retry a refused
    /// one transparently).
    ///
    /// What each open stream can make the server hold, so what a client can park per
    /// connection times this limit: the request head (within
    /// [`ServerBuilder::max_header_list_size`], 8 KiB by default), the call's task, the
    /// request bytes h2 has received and the handler has not read (within the stream's
    /// flow-control window: 64 KiB by default, more once adaptive windows grow it, and
    /// within the connection window overall), and one partly received message being
    /// assembled (within [`ServerBuilder::max_receive_message_size`], 4 MiB by
    /// default). Servers open to untrusted clients should set a limit (a few hundred is
    /// common); docs/reliability.md has the figures.
    ///
    /// ```
    /// use grpc_runtime::Server;
    ///
    /// // At most 4 x (4 MiB + 64 KiB + 8 KiB) of request data parked per connection.
    /// let builder = Server::builder().max_concurrent_streams(4);
    /// # drop(builder);
    /// ```
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = Some(max);
        self
    }

    /// How many streams the client may open and reset before the server got to them
    /// (default 256, [`DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS`]); one more closes the
    /// connection with GOAWAY(ENHANCE_YOUR_CALM). A client cancelling a fan-out of calls
    /// at once does exactly this, so the limit is above such bursts (h2's own default of
    /// 20 killed every call on the connection at the 21st); it still bounds what a
    /// rapid-reset attacker (CVE-2023-44487) can park on a connection: at most this many
    /// request heads, each within [`ServerBuilder::max_header_list_size`], until the
    /// connection task's next turn accepts (and at once ends) them. Higher values let
    /// bigger bursts through and cost more CPU under attack; docs/reliability.md has
    /// the measurements.
    pub fn max_pending_accept_reset_streams(mut self, max: usize) -> Self {
        self.max_pending_accept_reset_streams = max;
        self
    }

    /// Largest request message accepted (default 4 MiB); larger ones end
    /// the call with RESOURCE_EXHAUSTED.
    pub fn max_receive_message_size(mut self, bytes: usize) -> Self {
        self.max_recv = bytes;
        self
    }

    /// Largest response message sent (default unlimited); larger ones end
    /// the call with RESOURCE_EXHAUSTED.
    pub fn max_send_message_size(mut self, bytes: usize) -> Self {
        self.max_send = bytes;
        self
    }

    /// The largest request head (pseudo-headers and metadata, counted as HTTP/2 counts a
    /// header list: name + value + 32 bytes per field) a call may carry; advertised as
    /// SETTINGS_MAX_HEADER_LIST_SIZE (default 8 KiB, [`DEFAULT_MAX_HEADER_LIST_SIZE`]).
    ///
    /// A larger head ends that call alone with RESOURCE_EXHAUSTED as a Trailers-Only
    /// response ("request metadata size N exceeds the limit of L bytes"); the
    /// connection and its other calls go on. Only a head over four times the limit (the
    /// hard cap, where h2 stops decoding) closes the connection, with
    /// GOAWAY(ENHANCE_YOUR_CALM). Well-behaved clients (ours, grpc-go's) check the
    /// advertised value and fail such calls before sending them. docs/reliability.md
    /// compares the defaults with grpc-go's and C core's.
    ///
    /// ```
    /// let builder = grpc_runtime::server::Server::builder().max_header_list_size(16 * 1024);
    /// # let _ = builder;
    /// ```
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.max_header_list_size = bytes;
        self
    }

    /// BDP-based adaptive receive windows (default on): while request DATA arrives, PINGs
    /// measure the bandwidth-delay product and both windows grow to twice the estimate, up
    /// to 16 MiB ([`crate::transport::BDP_LIMIT`]) and never below the initial windows.
    /// Off: the initial windows stay fixed. See docs/flow-control.md.
    pub fn adaptive_window(mut self, on: bool) -> Self {
        self.conn_mgmt.adaptive_window = on;
        self
    }

    /// Initial HTTP/2 stream window (default: h2's 64 KiB).
    pub fn initial_stream_window_size(mut self, bytes: u32) -> Self {
        self.initial_stream_window = Some(bytes);
        self
    }

    /// Initial HTTP/2 connection window (default: h2's 64 KiB).
    pub fn initial_connection_window_size(mut self, bytes: u32) -> Self {
        self.initial_connection_window = Some(bytes);
        self
    }

    /// SETTINGS_MAX_FRAME_SIZE (default 16 KiB).
    pub fn max_frame_size(mut self, bytes: u32) -> Self {
        self.max_frame_size = Some(bytes);
        self
    }

    /// Compress responses with `encoding` by default when the client accepts
    /// it (the request's own encoding is preferred when the client sent one).
    pub fn default_compression(mut self, encoding: Option<CompressionEncoding>) -> Self {
        self.default_compression = encoding;
        self
    }

    /// Encodings accepted for requests (default: all); a request in another
    /// encoding fails with UNIMPLEMENTED listing these.
    pub fn accept_encodings(mut self, set: EncodingSet) -> Self {
        self.accept_encodings = set;
        self
    }

    /// Encodings the server may use for responses (default: all).
    pub fn send_encodings(mut self, set: EncodingSet) -> Self {
        self.send_encodings = set;
        self
    }

    /// How long in-flight calls may run after shutdown starts before they
    /// are cancelled (default 30 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How long a cancelled handler (client reset, deadline, forced
    /// shutdown) keeps running so it can observe the cancellation before it
    /// is dropped (default 1 s).
    pub fn handler_cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// TCP_NODELAY on accepted sockets (default on).
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.tcp_nodelay = on;
        self
    }

    /// Serves TLS (rustls, ALPN `h2`) on every `serve*` method: each
    /// accepted transport (TCP, unix, or from
    /// [`ServerBuilder::serve_with_incoming_stream`]) is handshaken before
    /// HTTP/2. A failed handshake or a client that did not negotiate `h2`
    /// closes that connection only (logged at debug level). An invalid
    /// certificate or key makes the `serve*` method return `InvalidInput`.
    /// Needs the `tls` feature (on by default).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_config(mut self, tls: ServerTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Runs `hook` when graceful shutdown starts, before GOAWAY is sent
    /// (e.g. `move || health_reporter.shutdown()` so health watchers see
    /// NOT_SERVING while their streams are still open). Hooks run in the
    /// order added.
    pub fn on_shutdown(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.shutdown_hooks.push(Box::new(hook));
        self
    }

    /// Sends a keepalive PING after the connection has been silent (nothing read) for
    /// this long (default 2 hours, gRFC A8/A9); see [`ServerBuilder::keepalive_timeout`].
    pub fn keepalive_time(mut self, time: Duration) -> Self {
        self.conn_mgmt.keepalive_time = Some(time);
        self
    }

    /// Closes a connection whose keepalive PING is not answered within this (default 20 s).
    pub fn keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.conn_mgmt.keepalive_timeout = timeout;
        self
    }

    /// The shortest interval between client PINGs the server tolerates (default 5 min,
    /// gRFC A8). A PING sooner than this after the previous one is a strike (our sending
    /// HEADERS or DATA resets the count); more than 2 strikes earn
    /// GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") and the connection is closed.
    pub fn permit_keepalive_time(mut self, time: Duration) -> Self {
        self.conn_mgmt.permit_keepalive_time = time;
        self
    }

    /// Whether clients may send keepalive PINGs while they have no call open (default
    /// false: such PINGs are strikes unless 2 hours apart, as in grpc-go).
    pub fn permit_keepalive_without_calls(mut self, permit: bool) -> Self {
        self.conn_mgmt.permit_keepalive_without_calls = permit;
        self
    }

    /// Gracefully closes (two-phase GOAWAY) a connection that had no open call for this
    /// long (default: never; gRFC A9 MAX_CONNECTION_IDLE).
    pub fn max_connection_idle(mut self, idle: Duration) -> Self {
        self.conn_mgmt.max_connection_idle = Some(idle);
        self
    }

    /// Gracefully closes (two-phase GOAWAY) each connection after about this long,
    /// jittered by +-10% so a fleet of clients does not reconnect at once (default:
    /// never; gRFC A9 MAX_CONNECTION_AGE). Calls in flight may finish within
    /// [`ServerBuilder::max_connection_age_grace`].
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.conn_mgmt.max_connection_age = Some(age);
        self
    }

    /// How long calls in flight may run after a connection reached its maximum age;
    /// then the connection is closed (default: unlimited; gRFC A9 MAX_CONNECTION_AGE_GRACE).
    pub fn max_connection_age_grace(mut self, grace: Duration) -> Self {
        self.conn_mgmt.max_connection_age_grace = Some(grace);
        self
    }

    /// How long a request header block may take to arrive (default 20 s,
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]): from the first byte of its HEADERS frame until
    /// the last byte of the frame that ends it (the HEADERS frame itself, or its last
    /// CONTINUATION); an incomplete frame header of any frame counts too. A connection
    /// that is slower (a client trickling a header block to hold the server's resources,
    /// a "slowloris") is closed with GOAWAY(NO_ERROR, "header_read_timeout"); the
    /// server's other connections are not affected. Idle time between requests and
    /// request bodies are not timed (keepalive and
    /// [`ServerBuilder::max_connection_idle`] cover those). `Duration::MAX` disables it.
    ///
    /// The HTTP/2 counterpart of Go's `http.Server.ReadHeaderTimeout` and hyper's HTTP/1
    /// `header_read_timeout` (30 s by default) and nginx's `client_header_timeout` (60 s);
    /// grpc-go has none (its `ConnectionTimeout` covers the handshake only) and neither
    /// has hyper's HTTP/2 server. 20 s matches the time a new connection has to send the
    /// HTTP/2 preface and gRFC A8's keepalive timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use grpc_runtime::Server;
    ///
    /// let builder = Server::builder().header_read_timeout(Duration::from_secs(5));
    /// # drop(builder);
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.conn_mgmt.header_read_timeout = (timeout != Duration::MAX).then_some(timeout);
        self
    }

    /// Serves gRPC-Web (gRPC's PROTOCOL-WEB.md: what browsers can speak) on the same port
    /// and with the same services, interceptors and limits as native gRPC (default: off).
    ///
    /// With it on, a plaintext connection whose first bytes are not the HTTP/2 preface is
    /// served as HTTP/1.1 (hyper's server), and TLS offers ALPN `http/1.1` after `h2`;
    /// requests with content-type `application/grpc-web[+proto]` or
    /// `application/grpc-web-text[+proto]` (base64) are answered in gRPC-Web over HTTP/1.1
    /// and HTTP/2 alike, CORS preflights (`OPTIONS`) are answered per `config`. Unary and
    /// server-streaming methods work; client-streaming and bidi methods answer
    /// UNIMPLEMENTED (browsers cannot stream requests). Native gRPC is untouched. Needs the
    /// `grpc-web` cargo feature (on by default). See docs/grpc-web.md.
    ///
    /// ```
    /// use grpc_runtime::server::{GrpcWebConfig, Server};
    ///
    /// let builder = Server::builder().grpc_web(GrpcWebConfig::new().allow_origins(["https://app.example"]));
    /// # drop(builder);
    /// ```
    #[cfg(feature = "grpc-web")]
    pub fn grpc_web(mut self, config: GrpcWebConfig) -> Self {
        self.web = Some(config);
        self
    }

    /// Records OpenTelemetry metrics (gRFC A66) for every call and, when the plugin has a
    /// tracer, makes a span per call whose parent is the trace context the client
    /// propagated in the request metadata; the handler runs with that span's context
    /// current, so calls it makes continue the trace (grpc-go's
    /// `opentelemetry.ServerOption`). See [`crate::otel`].
    ///
    /// ```
    /// # fn f(provider: &impl opentelemetry::metrics::MeterProvider) {
    /// let otel = grpc_runtime::otel::OpenTelemetry::builder().meter_provider(provider).build();
    /// let server = grpc_runtime::Server::builder().opentelemetry(otel);
    /// # let _ = server; }
    /// ```
    #[cfg(feature = "opentelemetry")]
    pub fn opentelemetry(mut self, otel: crate::otel::OpenTelemetry) -> Self {
        self.otel = Some(otel);
        self
    }

    /// Answers every request of the server's port that is not gRPC with `service`: any
    /// tower `Service` taking an `http::Request<`[`RequestBody`]`>`, an axum `Router`
    /// for one, over HTTP/2 and over HTTP/1.1 (which this turns on, served by hyper as
    /// for gRPC-Web). A request goes to it when its content-type is not
    /// `application/grpc*` (and, with [`ServerBuilder::grpc_web`] on, neither
    /// `application/grpc-web*` nor a gRPC-Web CORS preflight, one asking for
    /// `x-grpc-web`, `x-user-agent` or a `grpc-` header); gRPC calls are routed as
    /// without it. Needs the `tower` cargo feature.
    ///
    /// The name is axum's (`Router::fallback_service`): the service that answers what
    /// nothing else does. Its response body is streamed within HTTP/2 flow control and
    /// its trailers are forwarded; a service error answers HTTP 500 for that request
    /// alone. Calling this again replaces the service. See docs/tower.md.
    ///
    /// Each request carries the connection's details in its extensions, as a gRPC
    /// handler finds them in its [`ServerContext`](crate::ServerContext): the peer's
    /// `std::net::SocketAddr` (not over unix sockets; axum: `Extension<SocketAddr>`, or
    /// copy it into `ConnectInfo` with a `map_request` middleware, docs/tower.md) and,
    /// over TLS, an `Arc<`[`TlsInfo`]`>` (the client's certificates among them).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use grpc_runtime::server::{RequestBody, Server};
    ///
    /// // Any tower service fits; an axum `Router` is the usual one.
    /// let rest = tower::service_fn(|req: http::Request<RequestBody>| async move {
    ///     let peer = req.extensions().get::<std::net::SocketAddr>();
    ///     let text = format!("no gRPC here: {} (from {peer:?})", req.uri().path());
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text))))
    /// });
    /// let builder = Server::builder().fallback_service(rest);
    /// # drop(builder);
    /// ```
    #[cfg(feature = "tower")]
    pub fn fallback_service<S, B>(mut self, service: S) -> Self
    where
        S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.fallback = Some(Arc::new(fallback::Erase(service)));
        self
    }

    /// Wraps the server's gRPC router ([`GrpcRoutes`]) in a tower [`Layer`](tower_layer::Layer):
    /// tower-http's `TraceLayer`, tower's `ConcurrencyLimitLayer` and `LoadShedLayer`,
    /// `TimeoutLayer`s, or a `tower::ServiceBuilder` stacking several (call this once;
    /// a second call replaces the first). Every gRPC call goes through the layers (and,
    /// without a [`fallback_service`](ServerBuilder::fallback_service), every other
    /// request of the port, which the router answers as without layers: HTTP 415/405).
    /// gRPC-Web calls (and their CORS preflights) go through them too, as they arrived
    /// (`application/grpc-web*`, over HTTP/1.1 or HTTP/2), answered in gRPC-Web; the
    /// fallback service's requests do not. Needs the `tower` cargo feature.
    ///
    /// What the layers return becomes that call's gRPC answer, sent Trailers-Only: tower's
    /// load-shed `Overloaded` is `UNAVAILABLE`, tower's timeout `Elapsed` and an HTTP 408
    /// (tower-http's `TimeoutLayer`) are `DEADLINE_EXCEEDED`, a [`crate::Status`] error is
    /// itself, other errors `UNKNOWN`, other HTTP answers as clients map HTTP statuses.
    /// A layer holds a call from the request until the response head (the first message
    /// or, for a unary call, the reply), as tower's middleware holds any response future.
    /// The body's messages and trailers stream through.
    ///
    /// Without a layer the native call path is untouched (one `Option` check per
    /// stream). With one, each call costs the layers' own work plus a request extension,
    /// two boxed futures, a boxed body and a task of its own. See docs/tower.md.
    ///
    /// ```
    /// use grpc_runtime::server::Server;
    ///
    /// let layers = tower::ServiceBuilder::new()
    ///     .load_shed()
    ///     .concurrency_limit(64);
    /// let builder = Server::builder().layer(layers);
    /// # drop(builder);
    /// ```
    #[cfg(feature = "tower")]
    pub fn layer<L, B>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<GrpcRoutes>,
        L::Service: tower_service::Service<http::Request<RequestBody>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<http::Request<RequestBody>>>::Future: Send + 'static,
        <L::Service as tower_service::Service<http::Request<RequestBody>>>::Error:
            Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let service = layer.layer(GrpcRoutes::default());
        self.layered = Some(Arc::new(fallback::Erase(service)));
        self
    }

    fn into_shared(self) -> std::io::Result<Arc<Shared>> {
        #[allow(unused_mut)]
        let mut http1 = false;
        #[cfg(feature = "grpc-web")]
        {
            http1 |= self.web.is_some();
        }
        #[cfg(feature = "tower")]
        {
            http1 |= self.fallback.is_some();
        }
        #[cfg(feature = "tls")]
        let tls = match &self.tls {
            Some(t) => Some(t.acceptor(http1)?),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let _ = http1;
        let mut h2 = h2::server::Builder::new();
        h2.max_header_list_size(self.max_header_list_size);
        // Over-size request heads reach us (fields removed) so that we answer them with a
        // gRPC status rather than h2's HTTP 431 (third_party/h2/PATCHES.md).
        h2.accept_oversized_requests(true);
        // Many small request DATA frames are legitimate gRPC traffic (see
        // transport::DATA_FRAME_BUDGET); h2's default would close the connection.
        h2.data_frame_budget(crate::transport::DATA_FRAME_BUDGET);
        if let Some(n) = self.max_concurrent_streams {
            h2.max_concurrent_streams(n);
        }
        h2.max_pending_accept_reset_streams(self.max_pending_accept_reset_streams);
        if let Some(n) = self.initial_stream_window {
            h2.initial_window_size(n);
        }
        if let Some(n) = self.initial_connection_window {
            h2.initial_connection_window_size(n);
        }
        let mut conn_mgmt = self.conn_mgmt;
        conn_mgmt.stream_window = self.initial_stream_window.unwrap_or(conn::DEFAULT_WINDOW);
        conn_mgmt.connection_window = self
            .initial_connection_window
            .unwrap_or(conn::DEFAULT_WINDOW);
        conn_mgmt.seal();
        if let Some(n) = self.max_frame_size {
            h2.max_frame_size(n);
        }
        let mut services = self.services;
        if self.reflection {
            add_reflection(&mut services)?;
        }
        Ok(Arc::new(Shared {
            busy_connections: Arc::default(),
            services,
            interceptors: self.interceptors.into(),
            call_config: Arc::new(CallConfig {
                max_recv: self.max_recv,
                max_send: self.max_send,
            }),
            accept_encodings: self.accept_encodings,
            send_encodings: self.send_encodings,
            default_compression: self.default_compression,
            cancel_grace: self.cancel_grace,
            h2,
            #[cfg(feature = "tls")]
            tls,
            conn_mgmt,
            max_header_list_size: self.max_header_list_size,
            #[cfg(feature = "grpc-web")]
            web: self.web.map(Arc::new),
            #[cfg(feature = "opentelemetry")]
            stats: self.otel.map(|o| o.server_handler()),
            #[cfg(not(feature = "opentelemetry"))]
            stats: None,
            #[cfg(feature = "tower")]
            fallback: self.fallback,
            #[cfg(feature = "tower")]
            layered: self.layered,
        }))
    }

    /// Fails early (before binding) on an invalid TLS configuration.
    fn check_tls(&self) -> std::io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(t) = &self.tls {
            t.build()?;
        }
        Ok(())
    }

    /// Binds `addr` and serves until the process ends or an I/O error on
    /// the listener.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        self.check_tls()?;
        let listener = TcpListener::bind(addr).await?;
        self.serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    }

    /// Binds `addr` and serves until `signal` completes, then shuts down
    /// gracefully (see [`ServerBuilder::serve_with_incoming_shutdown`]).
    pub async fn serve_with_shutdown(
        self,
        addr: SocketAddr,
        signal: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        self.check_tls()?;
        let listener = TcpListener::bind(addr).await?;
        self.serve_with_incoming_shutdown(listener, signal).await
    }

    /// Serves connections accepted on an existing listener.
    pub async fn serve_with_incoming(self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves an existing listener until `signal` completes. Then: stop
    /// accepting, send GOAWAY on every connection (two-phase, with a PING),
    /// let in-flight calls finish for the grace period, then cancel what is
    /// left. New calls after the GOAWAY are refused (REFUSED_STREAM), so
    /// clients can retry elsewhere.
    pub async fn serve_with_incoming_shutdown(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let nodelay = self.tcp_nodelay;
        let incoming = futures_util::stream::unfold(listener, move |l| async move {
            let item = l.accept().await.map(|(stream, peer)| {
                if nodelay {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("set_nodelay failed: {e}");
                    }
                }
                (stream, Some(peer))
            });
            Some((item, l))
        });
        self.serve_with_incoming_stream(incoming, signal).await
    }

    /// Binds a unix socket at `path` and serves until `signal` completes.
    pub async fn serve_unix_with_shutdown(
        self,
        path: impl AsRef<Path>,
        signal: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        self.check_tls()?;
        let listener = UnixListener::bind(path)?;
        self.serve_unix_incoming_shutdown(listener, signal).await
    }

    /// Serves an existing unix listener until `signal` completes.
    pub async fn serve_unix_incoming_shutdown(
        self,
        listener: UnixListener,
        signal: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            let item = l.accept().await.map(|(stream, _)| (stream, None));
            Some((item, l))
        });
        self.serve_with_incoming_stream(incoming, signal).await
    }

    /// Serves connections from any stream of accepted transports (e.g. TLS
    /// streams after their handshake) with their peer address, until
    /// `signal` completes or the stream ends; then shuts down gracefully as
    /// [`ServerBuilder::serve_with_incoming_shutdown`] does. Accept errors
    /// are logged and skipped.
    pub async fn serve_with_incoming_stream<S, IO>(
        mut self,
        incoming: S,
        signal: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()>
    where
        S: futures_core::Stream<Item = std::io::Result<(IO, Option<SocketAddr>)>> + Send,
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let grace = self.grace_period;
        let hooks = std::mem::take(&mut self.shutdown_hooks);
        run(self.into_shared()?, incoming, signal, grace, hooks).await
    }
}

/// A server's shutdown, shared with its connections: how far it has gone (a stage that
/// only rises) and how many connections are still open. Each connection holds a
/// [`ConnGuard`]; no per-connection allocation beyond that `Arc` clone.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    stage: AtomicU8,
    changed: Notify,
    open: AtomicUsize,
    all_closed: Notify,
}

/// Serving normally.
pub(crate) const RUNNING: u8 = 0;
/// GOAWAY every connection; calls in flight go on.
pub(crate) const GRACEFUL: u8 = 1;
/// The grace period is over: cancel the calls in flight.
pub(crate) const FORCE: u8 = 2;
/// Drop every connection now (the server's future ended or was dropped).
pub(crate) const ABORT: u8 = 3;

impl Shutdown {
    /// Raises the stage to at least `stage` and wakes every connection.
    fn raise(&self, stage: u8) {
        self.stage.fetch_max(stage, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// The current stage.
    pub(crate) fn stage(&self) -> u8 {
        self.stage.load(Ordering::Acquire)
    }

    /// Resolves with the stage once it is above `seen`.
    pub(crate) fn past(&self, seen: u8) -> impl Future<Output = u8> + '_ {
        wait_until(&self.changed, move || {
            Some(self.stage()).filter(|&stage| stage > seen)
        })
    }

    /// Counts a new connection until the returned guard is dropped.
    fn track(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnGuard(Arc::clone(self))
    }

    /// The number of open connections.
    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves once no connection is open.
    fn closed(&self) -> impl Future<Output = ()> + '_ {
        wait_until(&self.all_closed, || (self.open() == 0).then_some(()))
    }
}

/// One open connection of a server: the server's [`Shutdown`], and the count of open
/// connections, decremented when the connection's task ends.
#[derive(Debug)]
pub(crate) struct ConnGuard(Arc<Shutdown>);

impl std::ops::Deref for ConnGuard {
    type Target = Shutdown;
    fn deref(&self) -> &Shutdown {
        &self.0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// Raises [`ABORT`] when the accept loop's future ends or is dropped, so no connection
/// outlives its server.
struct AbortOnDrop(Arc<Shutdown>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.raise(ABORT);
    }
}

async fn run<S, IO>(
    shared: Arc<Shared>,
    incoming: S,
    signal: impl Future<Output = ()> + Send,
    grace: Duration,
    shutdown_hooks: Vec<Box<dyn FnOnce() + Send>>,
) -> std::io::Result<()>
where
    S: futures_core::Stream<Item = std::io::Result<(IO, Option<SocketAddr>)>> + Send,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::StreamExt;
    let shutdown = Arc::new(Shutdown::default());
    let _abort = AbortOnDrop(Arc::clone(&shutdown));
    tokio::pin!(signal);
    // Boxed (not stack-pinned) so dropping it below really closes the listener.
    let mut incoming = Box::pin(incoming);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            accepted = incoming.next() => match accepted {
                Some(Ok((io, peer))) => {
                    let (shared, guard) = (shared.clone(), shutdown.track());
                    #[cfg(feature = "tls")]
                    let tls = shared.tls.clone();
                    #[cfg(not(feature = "tls"))]
                    let tls: Option<std::convert::Infallible> = None;
                    match tls {
                        #[cfg(any(feature = "grpc-web", feature = "tower"))]
                        None if shared.serves_http1() => {
                            tokio::spawn(http_conn::serve_sniffed(io, peer, None, shared, guard));
                        }
                        None => {
                            tokio::spawn(conn::serve_connection(io, peer, None, shared, guard));
                        }
                        #[cfg(not(feature = "tls"))]
                        Some(never) => match never {},
                        #[cfg(feature = "tls")]
                        Some(tls) => {
                            // The handshake runs in the connection's task so a
                            // slow or hostile client never stalls accepting.
                            tokio::spawn(async move {
                                let accepted = tokio::select! {
                                    r = tls.accept(io) => r,
                                    _ = guard.past(RUNNING) => Err("server shutting down".into()),
                                };
                                match accepted {
                                    #[cfg(any(feature = "grpc-web", feature = "tower"))]
                                    Ok((io, certs, alpn)) if shared.serves_http1() && alpn != tls::Alpn::H2 => {
                                        if alpn == tls::Alpn::Http1 {
                                            http_conn::serve_http1(io, peer, certs, shared, guard).await
                                        } else {
                                            http_conn::serve_sniffed(io, peer, certs, shared, guard).await
                                        }
                                    }
                                    Ok((io, certs, _)) => conn::serve_connection(io, peer, certs, shared, guard).await,
                                    Err(reason) => tracing::debug!(?peer, "closing connection: {reason}"),
                                }
                            });
                        }
                    }
                }
                Some(Err(e)) => {
                    // Per-connection accept errors (e.g. EMFILE, ECONNABORTED)
                    // must not stop the server; back off briefly.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => break,
            }
        }
    }
    // Stop accepting: drop the listener before draining.
    drop(incoming);
    for hook in shutdown_hooks {
        hook();
    }
    tracing::debug!(
        connections = shutdown.open(),
        "shutting down: sending GOAWAY"
    );
    shutdown.raise(GRACEFUL);
    if tokio::time::timeout(grace, shutdown.closed())
        .await
        .is_err()
    {
        tracing::debug!(
            connections = shutdown.open(),
            "grace period over: cancelling in-flight calls"
        );
        shutdown.raise(FORCE);
        let limit = shared.cancel_grace.saturating_add(Duration::from_secs(1));
        if tokio::time::timeout(limit, shutdown.closed())
            .await
            .is_err()
        {
            tracing::debug!(
                connections = shutdown.open(),
                "connections still open; dropping them"
            );
        }
    }
    // `_abort` drops every connection left.
    Ok(())
}
