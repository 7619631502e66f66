//! Establishing one HTTP/2 client connection and driving it in one background task
//! (h2's connection, the first PING, keepalive and adaptive windows).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use super::bdp;
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

/// Drives one client connection in a single task, as the server's connection task
/// does: h2's connection future, the PING handle (the first PING proves the peer speaks
/// HTTP/2, then keepalive and BDP samples, one in flight at a time) and the rules of an
/// [`Engine`] (gRFC A8 keepalive, adaptive windows). No lock, task or future per PING.
/// `ready` hears whether the first PING was answered. When the connection ends, the
/// reason is published to the [`Connection`]s.
async fn drive<T>(
    mut conn: h2::client::Connection<T, Bytes>,
    rules: Rules,
    conn_window: u32,
    shared: Arc<Shared>,
    ready: oneshot::Sender<Result<(), String>>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let activity = &shared.activity;
    let mut ping = conn.ping_pong();
    let mut engine = Engine::new(&rules, Instant::now(), ping.is_some());
    if engine.samples_bdp() {
        activity.enable_bdp();
    }
    if rules.keepalive.is_some() {
        // A keepalive without calls is dormant; the first call wakes it.
        activity.wake_on_first_call();
    }
    // The first PING, whose answer `ready` waits for. Until it comes, the engine sends
    // none of its own (h2 allows one user PING in flight).
    let mut ready = Some(ready);
    let mut first_ping = false;
    match ping.as_mut().map(|pp| pp.send_ping(h2::Ping::opaque())) {
        Some(Ok(())) => first_ping = true,
        Some(Err(e)) => {
            if let Some(r) = ready.take() {
                let _ = r.send(Err(e.to_string()));
            }
            ping = None;
            engine.pings_failed();
        }
        None => {
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
            }
        }
    }
    // One timer for the engine's deadlines, re-armed only when the earliest changes.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed = false;
    let why = loop {
        let next = engine.next_deadline(&rules, activity.active_calls());
        if next != armed.then(|| timer.deadline()) {
            if let Some(at) = next {
                timer.as_mut().reset(at);
            }
            armed = next.is_some();
        }
        // A client's only deadlines are keepalive's: without one, keepalive (if on) is
        // dormant until a call opens.
        let dormant = next.is_none() && rules.keepalive.is_some();
        tokio::select! {
            r = &mut conn => break match r {
                Ok(()) => ConnectionClosed::Eof,
                Err(e) if e.is_go_away() && e.is_remote() => ConnectionClosed::GoAway {
                    code: e.reason().unwrap_or(h2::Reason::NO_ERROR).into(),
                    debug_data: activity
                        .peer_goaway()
                        .map(|(_, debug)| debug)
                        .unwrap_or_default(),
                },
                Err(e) => ConnectionClosed::Error(e.to_string()),
            },
            // A call opened on a connection without calls: keepalive wakes up (the loop
            // recomputes its deadline, a PING at once after a long silence).
            () = std::future::poll_fn(|cx| activity.call_opened().poll_take(cx)), if dormant => {}
            () = std::future::poll_fn(|cx| activity.bdp_wanted().poll_take(cx)), if !first_ping && engine.wants_bdp_ping() => {
                bdp::send_sample_ping(&mut engine, ping.as_mut());
            }
            pong = std::future::poll_fn(|cx| match ping.as_mut() {
                Some(pp) => pp.poll_pong(cx),
                None => Poll::Pending,
            }), if first_ping || engine.ping_in_flight() => {
                if first_ping {
                    first_ping = false;
                    if let Some(r) = ready.take() {
                        let _ = r.send(pong.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                    }
                }
                if let Some(window) = bdp::on_pong(&mut engine, &rules, activity, &mut ping, pong) {
                    conn.set_target_window_size(bdp::connection_window(window, conn_window));
                    if let Err(e) = conn.set_initial_window_size(window) {
                        debug!("raising the stream window to {window} failed: {e}");
                    }
                }
            }
            _ = &mut timer, if armed && !first_ping => {
                let now = Instant::now();
                let (last_read, calls) = (activity.last_read(), activity.active_calls());
                let mut timed_out = false;
                while let Some(action) = engine.poll_timer(&rules, now, last_read, calls, None) {
                    match action {
                        Action::SendPing => {
                            debug!("sending keepalive PING");
                            let sent = ping.as_mut().is_some_and(|pp| pp.send_ping(h2::Ping::opaque()).is_ok());
                            if !sent {
                                engine.pings_failed();
                            }
                        }
                        Action::Close(_) => {
                            timed_out = true;
                            break;
                        }
                        // A client has no max age or idle rules.
                        Action::Drain(_) => {}
                    }
                }
                if timed_out {
                    debug!(
                        timeout = ?rules.keepalive.map(|k| k.timeout),
                        "keepalive PING not answered in time; closing the connection"
                    );
                    // Dropping the h2 connection fails its streams (UNAVAILABLE for the calls).
                    break ConnectionClosed::KeepaliveTimeout;
                }
                // The timer fired: re-arm it on the next turn even if `next` is unchanged.
                armed = false;
            }
        }
    };
    if why.is_too_many_pings() {
        warn!(
            connection = shared.id,
            address = %shared.address,
            "server sent GOAWAY(ENHANCE_YOUR_CALM, too_many_pings): keepalive is too frequent for it"
        );
    }
    if let Some(r) = ready.take() {
        let _ = r.send(Err(format!("{why:?}")));
    }
    mark(&shared, why);
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
    let (send, conn) = h2::client::Builder::new()
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
    let shared = Arc::new(Shared {
        id,
        address: address.clone(),
        closed,
        peer_accept_encoding: Mutex::new(None),
        activity,
    });
    let rules = Rules {
        keepalive: config.keepalive.map(|ka| Keepalive {
            time: ka.time,
            timeout: ka.timeout,
            without_calls: ka.without_calls,
        }),
        bdp_window: s.adaptive_window.then_some(s.initial_stream_window_size),
        ..Rules::default()
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let span = tracing::debug_span!("h2_client_connection", connection = id, address = %address);
    tokio::spawn(
        drive(
            conn,
            rules,
            s.initial_connection_window_size,
            Arc::clone(&shared),
            ready_tx,
        )
        .instrument(span),
    );
    // Wait until the server has spoken HTTP/2: its SETTINGS precede the answer to the
    // driver's first PING, so when this returns we know its limits
    // (MAX_CONCURRENT_STREAMS in particular) and that the peer is really an HTTP/2
    // server. Bounded by the caller's connect timeout.
    let answered = match ready_rx.await {
        Ok(r) => r,
        Err(_) => Err("the connection ended".to_owned()),
    };
    if let Err(e) = answered {
        mark(&shared, ConnectionClosed::Error(e.clone()));
        return Err(TransportError::new(
            TransportErrorKind::Http2,
            format!("HTTP/2 handshake with {address}: no answer to the initial PING: {e}"),
        ));
    }
    debug!(connection = id, address = %address, "connection established");
    Ok(Connection { send, shared })
}
