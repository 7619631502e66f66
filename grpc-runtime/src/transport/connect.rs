//! Establishing one HTTP/2 client connection and driving it in a background task.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use super::bdp::{self, SharedPing};
use super::engine::{Action, Engine, Keepalive, Rules};
use super::frame_tap::{Activity, CallGuard, FrameTap};
#[cfg(feature = "tls")]
use super::tls::{self, ClientTlsConfig};
use super::write_batch::{BusyConnections, WriteBatch};
use super::{Address, TransportError, TransportErrorKind};

/// Our HTTP/2 SETTINGS and send-side buffering for a client connection.
#[derive(Debug, Clone)]
pub struct Http2Settings {
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise (per-stream receive window).
    pub initial_stream_window_size: u32,
    /// The connection-level receive window (raised with a WINDOW_UPDATE after the preface).
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE we advertise (16 KiB ..= 16 MiB - 1).
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise (8 KiB default, per DESIGN section 7).
    pub max_header_list_size: u32,
    /// How many bytes h2 buffers per stream before `poll_capacity` stops granting more.
    pub max_send_buffer_size: usize,
    /// BDP-based adaptive windows (default on): PINGs sent while DATA arrives estimate the
    /// bandwidth-delay product and grow both receive windows up to 16 MiB
    /// ([`super::BDP_LIMIT`]), never below the configured initial windows.
    pub adaptive_window: bool,
}

impl Default for Http2Settings {
    fn default() -> Self {
        Http2Settings {
            // 1 MiB per stream, 2 MiB per connection: large enough for a single stream to
            // run well over loopback/LAN, small enough that a slow reader bounds memory;
            // adaptive windows grow them on long fat links (docs/flow-control.md).
            initial_stream_window_size: 1024 * 1024,
            initial_connection_window_size: 2 * 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_header_list_size: 8 * 1024,
            max_send_buffer_size: 1024 * 1024,
            adaptive_window: true,
        }
    }
}

/// Everything needed to open one connection to an [`Address`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Upper bound on socket connect + TLS handshake + HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// Whether to set `TCP_NODELAY` (on by default).
    pub tcp_nodelay: bool,
    /// HTTP/2 settings.
    pub http2: Http2Settings,
    /// TLS, when the target is `https`. Needs the `tls` feature.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: Option<ClientTlsConfig>,
    /// Client keepalive (gRFC A8); `None` (the default) sends no keepalive PINGs.
    pub keepalive: Option<KeepaliveConfig>,
}

/// Client keepalive settings (gRFC A8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Send a PING after the connection has been silent (nothing read) for this long.
    pub time: Duration,
    /// Close the connection when a PING is not answered within this (default 20 s).
    pub timeout: Duration,
    /// Also ping while no call is open (default false: a connection without calls
    /// sends no PINGs; the first call after a long silence sends one first).
    pub without_calls: bool,
}

/// gRFC A8: client keepalive times below this are raised to it.
pub const MIN_KEEPALIVE_TIME: Duration = Duration::from_secs(10);
/// gRFC A8 default KEEPALIVE_TIMEOUT.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_secs(20),
            tcp_nodelay: true,
            http2: Http2Settings::default(),
            #[cfg(feature = "tls")]
            tls: None,
            keepalive: None,
        }
    }
}

/// Why a connection's driver task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// The connection ended cleanly (all handles dropped, or the peer closed after GOAWAY).
    Eof,
    /// The peer sent GOAWAY and then closed the connection.
    GoAway {
        /// The HTTP/2 error code of the GOAWAY (RFC 9113 section 7: 0 is NO_ERROR,
        /// 0xb is ENHANCE_YOUR_CALM).
        code: u32,
        /// The GOAWAY's opaque debug data (e.g. `too_many_pings`); empty if none.
        debug_data: Bytes,
    },
    /// An I/O or protocol error ended the connection.
    Error(String),
    /// The owner marked the connection dead (for example after a failed `send_request`).
    Abandoned(String),
    /// A keepalive PING went unanswered for the keepalive timeout (gRFC A8).
    KeepaliveTimeout,
}

/// The HTTP/2 error code ENHANCE_YOUR_CALM (RFC 9113 section 7).
const ENHANCE_YOUR_CALM: u32 = 0xb;

impl ConnectionClosed {
    /// Whether the peer closed with GOAWAY(ENHANCE_YOUR_CALM, `too_many_pings`): our
    /// keepalive was too frequent for it (gRFC A8).
    pub fn is_too_many_pings(&self) -> bool {
        matches!(self, ConnectionClosed::GoAway { code, debug_data }
            if *code == ENHANCE_YOUR_CALM && &debug_data[..] == b"too_many_pings")
    }
}

struct Shared {
    id: u64,
    address: Address,
    closed: watch::Sender<Option<ConnectionClosed>>,
    peer_accept_encoding: Mutex<Option<http::HeaderValue>>,
    activity: Arc<Activity>,
}

/// A live (or recently live) HTTP/2 client connection: cheap to clone.
#[derive(Clone)]
pub struct Connection {
    send: SendRequest<Bytes>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .field("address", &self.shared.address)
            .field("closed", &*self.shared.closed.borrow())
            .finish()
    }
}

impl Connection {
    /// A handle for starting one stream; clone per call. Await `ready()` on it before
    /// `send_request` so MAX_CONCURRENT_STREAMS is respected.
    pub(crate) fn send_request(&self) -> SendRequest<Bytes> {
        self.send.clone()
    }

    /// Process-unique id of this connection (for logs and tests).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The address this connection was made to.
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Whether the connection has ended or was marked dead.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// Why the connection ended, if it has.
    pub fn closed_reason(&self) -> Option<ConnectionClosed> {
        self.shared.closed.borrow().clone()
    }

    /// Resolves when the connection ends (or is marked dead), with the reason.
    pub fn closed(&self) -> impl Future<Output = ConnectionClosed> + Send + 'static {
        let mut rx = self.shared.closed.subscribe();
        async move {
            loop {
                if let Some(reason) = rx.borrow_and_update().clone() {
                    return reason;
                }
                if rx.changed().await.is_err() {
                    return ConnectionClosed::Eof;
                }
            }
        }
    }

    /// Marks the connection dead so that new calls use a new connection. Streams already
    /// open on it continue until they finish.
    pub fn mark_closed(&self, why: impl Into<String>) {
        mark(&self.shared, ConnectionClosed::Abandoned(why.into()));
    }

    /// Counts a call open on this connection until the guard is dropped (keepalive
    /// without calls, write batching; see [`Activity::call_started`]).
    pub(crate) fn call_started(&self) -> CallGuard {
        self.shared.activity.call_started()
    }

    /// Number of calls open on this connection ([`Connection::call_started`]).
    #[cfg(test)]
    pub(crate) fn active_calls(&self) -> usize {
        self.shared.activity.active_calls()
    }

    /// The last `grpc-accept-encoding` the server sent on this connection, if any.
    pub fn peer_accept_encoding(&self) -> Option<http::HeaderValue> {
        self.shared.peer_accept_encoding.lock().ok()?.clone()
    }

    /// Records the server's `grpc-accept-encoding` seen in a response on this connection.
    pub fn set_peer_accept_encoding(&self, value: http::HeaderValue) {
        if let Ok(mut slot) = self.shared.peer_accept_encoding.lock() {
            if slot.as_ref() != Some(&value) {
                *slot = Some(value);
            }
        }
    }
}

fn mark(shared: &Shared, why: ConnectionClosed) {
    shared.closed.send_if_modified(|slot| {
        if slot.is_none() {
            debug!(connection = shared.id, address = %shared.address, reason = ?why, "connection closed");
            *slot = Some(why);
            true
        } else {
            false
        }
    });
}

/// gRFC A8 client keepalive, by the rules of an [`Engine`]. Returns `true` when a PING
/// went unanswered for the timeout (the caller closes the connection), `false` when the
/// connection ended first.
///
/// A task of its own beside the connection's driver: the PING handle is shared with the
/// BDP task behind a mutex, and a keepalive PING waits for a BDP PING in flight (whose
/// answer counts against the timeout too).
async fn keepalive_loop(
    pp: SharedPing,
    activity: Arc<Activity>,
    ka: KeepaliveConfig,
    mut closed: watch::Receiver<Option<ConnectionClosed>>,
) -> bool {
    let rules = Rules {
        keepalive: Some(Keepalive {
            time: ka.time,
            timeout: ka.timeout,
            without_calls: ka.without_calls,
        }),
        ..Rules::default()
    };
    let mut engine = Engine::new(&rules, Instant::now(), true);
    loop {
        if closed.borrow().is_some() {
            return false;
        }
        let Some(at) = engine.next_deadline(&rules, activity.active_calls()) else {
            // Dormant until a call starts; then the engine pings at once if the
            // connection has been silent for longer than `time`.
            tokio::select! {
                _ = activity.call_opened().wait() => {}
                _ = closed.changed() => {}
            }
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = closed.changed() => continue,
        }
        let now = Instant::now();
        match engine.poll_timer(
            &rules,
            now,
            activity.last_read(),
            activity.active_calls(),
            None,
        ) {
            Some(Action::SendPing) => {
                debug!("sending keepalive PING");
                let ping = async { pp.lock().await.ping(h2::Ping::opaque()).await };
                let answer_by = crate::timeout::instant_after(now, ka.timeout);
                match tokio::time::timeout_at(answer_by, ping).await {
                    Ok(Ok(_)) => {
                        engine.on_pong(&rules, Instant::now(), activity.last_read());
                    }
                    Ok(Err(_)) => return false,
                    // The engine's deadline has passed: the next turn closes.
                    Err(_) => {}
                }
            }
            Some(Action::Close(_)) => return true,
            Some(Action::Drain(_)) | None => {}
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Opens a connection to `address` for a client channel: socket, optional TLS (verifying
/// `server_name`), HTTP/2 handshake with our settings, then spawns the connection driver
/// on the current tokio runtime. The whole sequence is bounded by
/// `config.connect_timeout`. `busy` counts the channel's connections with calls in flight
/// (the write batching rule, `super::write_batch`).
pub(crate) async fn connect_counted(
    address: &Address,
    server_name: &str,
    config: &TransportConfig,
    busy: Arc<BusyConnections>,
) -> Result<Connection, TransportError> {
    let fut = connect_inner(address, server_name, config, busy);
    match tokio::time::timeout(config.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::new(
            TransportErrorKind::Timeout,
            format!(
                "connecting to {address} timed out after {:?}",
                config.connect_timeout
            ),
        )),
    }
}

async fn connect_inner(
    address: &Address,
    server_name: &str,
    config: &TransportConfig,
    busy: Arc<BusyConnections>,
) -> Result<Connection, TransportError> {
    let connect_err = |e: std::io::Error| {
        TransportError::new(
            TransportErrorKind::Connect,
            format!("connect to {address}: {e}"),
        )
    };
    #[cfg(not(feature = "tls"))]
    let _ = server_name;
    match address {
        Address::Tcp(sa) => {
            let tcp = TcpStream::connect(sa).await.map_err(connect_err)?;
            if config.tcp_nodelay {
                tcp.set_nodelay(true).map_err(connect_err)?;
            }
            #[cfg(feature = "tls")]
            if let Some(tls_cfg) = &config.tls {
                let connector = tls_cfg.connector()?;
                let name = tls_cfg.domain().unwrap_or(server_name);
                let stream = tls::handshake(&connector, name, tcp).await?;
                return handshake(stream, address, config, busy).await;
            }
            handshake(tcp, address, config, busy).await
        }
        #[cfg(unix)]
        Address::Unix(path) => {
            #[cfg(feature = "tls")]
            if config.tls.is_some() {
                return Err(TransportError::new(
                    TransportErrorKind::Config,
                    "TLS over unix sockets is not supported",
                ));
            }
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(connect_err)?;
            handshake(stream, address, config, busy).await
        }
        #[cfg(target_os = "linux")]
        Address::UnixAbstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            #[cfg(feature = "tls")]
            if config.tls.is_some() {
                return Err(TransportError::new(
                    TransportErrorKind::Config,
                    "TLS over unix sockets is not supported",
                ));
            }
            let sa =
                std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(connect_err)?;
            // A unix-socket connect completes (or is refused) at once.
            let std_stream =
                std::os::unix::net::UnixStream::connect_addr(&sa).map_err(connect_err)?;
            std_stream.set_nonblocking(true).map_err(connect_err)?;
            let stream = tokio::net::UnixStream::from_std(std_stream).map_err(connect_err)?;
            handshake(stream, address, config, busy).await
        }
    }
}

async fn handshake<T>(
    io: T,
    address: &Address,
    config: &TransportConfig,
    busy: Arc<BusyConnections>,
) -> Result<Connection, TransportError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = &config.http2;
    let activity = Activity::new(None, busy);
    let io = FrameTap::new(
        WriteBatch::new(io, Arc::clone(&activity)),
        Arc::clone(&activity),
        true,
    );
    let (send, mut conn) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(s.initial_stream_window_size)
        .initial_connection_window_size(s.initial_connection_window_size)
        .max_frame_size(s.max_frame_size)
        .max_header_list_size(s.max_header_list_size)
        .max_send_buffer_size(s.max_send_buffer_size)
        // h2 closes the connection (ENHANCE_YOUR_CALM, "too_many_data_frames") once about
        // half a connection window of tiny DATA frames sits unread; gRPC peers legitimately
        // send many small or padded frames (grpc's data_frame_padding case), so allow far
        // more. Memory stays bounded by flow control plus this per-frame overhead budget.
        .data_frame_budget(crate::transport::DATA_FRAME_BUDGET)
        .handshake::<FrameTap<WriteBatch<T>>, Bytes>(io)
        .await
        .map_err(|e| {
            TransportError::new(
                TransportErrorKind::Http2,
                format!("HTTP/2 handshake with {address}: {e}"),
            )
        })?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (closed, _) = watch::channel(None);
    let mut ping_pong = conn.ping_pong();
    let shared = Arc::new(Shared {
        id,
        address: address.clone(),
        closed,
        peer_accept_encoding: Mutex::new(None),
        activity: Arc::clone(&activity),
    });
    let driver_shared = Arc::clone(&shared);
    let span = tracing::debug_span!("h2_client_connection", connection = id, address = %address);
    // Keepalive and the BDP estimator share the PING handle; the handshake PING below
    // uses it first.
    let (ka_tx, ka_rx) = tokio::sync::oneshot::channel::<()>();
    let keepalive = config.keepalive;
    // New adaptive windows from the BDP estimator; the driver applies them.
    let (win_tx, mut win_rx) = watch::channel(s.initial_stream_window_size);
    let conn_window = s.initial_connection_window_size;
    tokio::spawn(
        async move {
            let ka_fired = async {
                match ka_rx.await {
                    Ok(()) => (),
                    // No keepalive: never fires.
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::pin!(ka_fired);
            let mut windows_open = true;
            let why = loop {
                tokio::select! {
                    r = &mut conn => break match r {
                        Ok(()) => ConnectionClosed::Eof,
                        Err(e) if e.is_go_away() && e.is_remote() => ConnectionClosed::GoAway {
                            code: e.reason().unwrap_or(h2::Reason::NO_ERROR).into(),
                            debug_data: driver_shared
                                .activity
                                .peer_goaway()
                                .map(|(_, debug)| debug)
                                .unwrap_or_default(),
                        },
                        Err(e) => ConnectionClosed::Error(e.to_string()),
                    },
                    // Dropping the h2 connection fails its streams (UNAVAILABLE for the calls).
                    () = &mut ka_fired => break ConnectionClosed::KeepaliveTimeout,
                    changed = win_rx.changed(), if windows_open => match changed {
                        Ok(()) => {
                            let window = *win_rx.borrow_and_update();
                            conn.set_target_window_size(bdp::connection_window(window, conn_window));
                            if let Err(e) = conn.set_initial_window_size(window) {
                                debug!("raising the stream window to {window} failed: {e}");
                            }
                        }
                        Err(_) => windows_open = false,
                    },
                }
            };
            if why.is_too_many_pings() {
                warn!(
                    connection = driver_shared.id,
                    address = %driver_shared.address,
                    "server sent GOAWAY(ENHANCE_YOUR_CALM, too_many_pings): keepalive is too frequent for it"
                );
            }
            mark(&driver_shared, why);
        }
        .instrument(span),
    );
    // Wait until the server has spoken HTTP/2: its SETTINGS precede the PING ack, so
    // when this returns we know its limits (MAX_CONCURRENT_STREAMS in particular) and
    // that the peer is really an HTTP/2 server. Bounded by the caller's connect timeout.
    if let Some(pp) = ping_pong.as_mut() {
        if let Err(e) = pp.ping(h2::Ping::opaque()).await {
            mark(&shared, ConnectionClosed::Error(e.to_string()));
            return Err(TransportError::new(
                TransportErrorKind::Http2,
                format!("HTTP/2 handshake with {address}: no answer to the initial PING: {e}"),
            ));
        }
    }
    let ping_pong: Option<SharedPing> = ping_pong.map(|pp| Arc::new(tokio::sync::Mutex::new(pp)));
    if let (true, Some(pp)) = (s.adaptive_window, &ping_pong) {
        let span = tracing::debug_span!("h2_client_bdp", connection = id);
        tokio::spawn(
            bdp::run(
                Arc::clone(pp),
                Arc::clone(&activity),
                s.initial_stream_window_size,
                win_tx,
            )
            .instrument(span),
        );
    }
    if let (Some(ka), Some(pp)) = (keepalive, ping_pong) {
        let activity = Arc::clone(&activity);
        let closed = shared.closed.subscribe();
        let span = tracing::debug_span!("h2_client_keepalive", connection = id);
        tokio::spawn(
            async move {
                if keepalive_loop(pp, activity, ka, closed).await {
                    debug!(
                        "keepalive PING not answered within {:?}; closing the connection",
                        ka.timeout
                    );
                    let _ = ka_tx.send(());
                }
            }
            .instrument(span),
        );
    }
    debug!(connection = id, address = %address, "connection established");
    Ok(Connection { send, shared })
}
