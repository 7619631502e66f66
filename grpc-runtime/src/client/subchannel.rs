//! Subchannel: owns at most one HTTP/2 connection at a time to one of its addresses.
//!
//! A subchannel connects on demand (the first call, or the first call after the
//! connection died), trying its addresses in order; concurrent callers share one attempt
//! (a background task, so a cancelled call does not cancel it). Failed attempts are
//! retried with exponential backoff (connection-backoff.md); meanwhile the subchannel is
//! in TRANSIENT_FAILURE and fail-fast calls fail at once, wait-for-ready calls wait. When
//! the connection ends (EOF, GOAWAY, error, keepalive timeout, idle timeout) the
//! subchannel goes back to IDLE and the next call reconnects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::connectivity::ConnectivityState;
use crate::transport::{
    self, Address, Backoff, BackoffConfig, Connection, TransportConfig, TransportError, TransportErrorKind,
};

/// What a subchannel needs to open connections.
#[derive(Debug, Clone)]
pub struct SubchannelConfig {
    /// Socket, TLS and HTTP/2 settings. `connect_timeout` is the minimum deadline of
    /// each connection attempt (connection-backoff.md MIN_CONNECT_TIMEOUT).
    pub transport: TransportConfig,
    /// Host used for TLS verification when no override is configured.
    pub server_name: String,
    /// Reconnect backoff after failed attempts.
    pub backoff: BackoffConfig,
    /// Without calls for this long, the connection is released and the subchannel goes
    /// IDLE (and stops reconnecting); `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl SubchannelConfig {
    /// A config with default backoff and idle timeout.
    pub fn new(transport: TransportConfig, server_name: impl Into<String>) -> Self {
        SubchannelConfig {
            transport,
            server_name: server_name.into(),
            backoff: BackoffConfig::default(),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

/// Default channel idle timeout (grpc-go: 30 minutes).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A logical connection to a set of equivalent addresses.
///
/// States: IDLE until a call needs a connection; CONNECTING during the first attempt;
/// READY with a live connection; after a failed attempt TRANSIENT_FAILURE, which stays
/// (sticky, as grpc's pick_first) while further attempts are made after a backoff delay
/// (1 s, x1.6, +-20 %, at most 120 s), until one succeeds (READY) or the subchannel is
/// unused for the idle timeout (IDLE). A connection that ends sends it back to IDLE.
pub struct Subchannel {
    me: Weak<Subchannel>,
    config: Arc<SubchannelConfig>,
    addrs: Mutex<Vec<Address>>,
    conn: Mutex<Option<Connection>>,
    state: watch::Sender<ConnectivityState>,
    /// Keepalive time for new connections, doubled after each too_many_pings GOAWAY.
    keepalive_time: Mutex<Option<Duration>>,
    /// Whether the connect loop (attempts + backoff) is running.
    connecting: AtomicBool,
    backoff: Mutex<Backoff>,
    last_error: Mutex<Option<TransportError>>,
    last_used: Mutex<Instant>,
}

impl std::fmt::Debug for Subchannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subchannel").field("state", &*self.state.borrow()).finish()
    }
}

impl Subchannel {
    /// A new, IDLE subchannel for `addrs`.
    pub fn new(config: Arc<SubchannelConfig>, addrs: Vec<Address>) -> Arc<Self> {
        Arc::new_cyclic(|me| Subchannel {
            me: me.clone(),
            addrs: Mutex::new(addrs),
            conn: Mutex::new(None),
            state: watch::channel(ConnectivityState::Idle).0,
            keepalive_time: Mutex::new(config.transport.keepalive.map(|k| k.time)),
            connecting: AtomicBool::new(false),
            backoff: Mutex::new(Backoff::new(config.backoff)),
            last_error: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            config,
        })
    }

    /// The current connectivity state.
    pub fn state(&self) -> ConnectivityState {
        *self.state.borrow()
    }

    /// A receiver notified on every state change.
    pub fn watch_state(&self) -> watch::Receiver<ConnectivityState> {
        self.state.subscribe()
    }

    /// The addresses this subchannel tries, in order.
    pub fn addresses(&self) -> Vec<Address> {
        self.addrs.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Replaces the address list; the current connection is kept if its address remains.
    pub fn update_addresses(&self, addrs: Vec<Address>) {
        let keep = {
            let conn = self.conn.lock().ok().and_then(|c| c.clone());
            conn.map(|c| addrs.contains(c.address())).unwrap_or(true)
        };
        if let Ok(mut a) = self.addrs.lock() {
            *a = addrs;
        }
        if !keep {
            self.drop_connection("address removed by resolver");
        }
    }

    fn set_state(&self, s: ConnectivityState) {
        self.state.send_if_modified(|cur| {
            if *cur == s || *cur == ConnectivityState::Shutdown {
                false
            } else {
                debug!(from = %cur, to = %s, "subchannel state");
                *cur = s;
                true
            }
        });
    }

    fn current(&self) -> Option<Connection> {
        let guard = self.conn.lock().ok()?;
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn unused_for(&self) -> Duration {
        self.last_used.lock().map(|t| t.elapsed()).unwrap_or_default()
    }

    fn last_error(&self) -> TransportError {
        self.last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| TransportError::new(TransportErrorKind::Connect, "connection failed"))
    }

    /// Returns the live connection, connecting first if there is none. Fails fast (with
    /// the last connection error) while in TRANSIENT_FAILURE.
    pub async fn connection(&self) -> Result<Connection, TransportError> {
        self.connection_with(false).await
    }

    /// Like [`Subchannel::connection`]; with `wait_for_ready` the call waits through
    /// TRANSIENT_FAILURE until a connection is READY (bound it with a deadline).
    pub async fn connection_with(&self, wait_for_ready: bool) -> Result<Connection, TransportError> {
        self.touch();
        let mut rx = self.state.subscribe();
        loop {
            // The state is read (and marked seen) before the connection is looked at. The
            // connect loop stores the connection first and then announces READY, so either
            // the connection is already there or the announcement is still to come and
            // `changed` sees it. In the other order, a connection made between the two
            // reads left its READY marked seen and this wait never ended.
            let state = *rx.borrow_and_update();
            if let Some(c) = self.current() {
                return Ok(c);
            }
            match state {
                ConnectivityState::Shutdown => {
                    return Err(TransportError::new(TransportErrorKind::Connect, "channel is shut down"))
                }
                ConnectivityState::TransientFailure if !wait_for_ready => return Err(self.last_error()),
                _ => {}
            }
            self.request_connection();
            if rx.changed().await.is_err() {
                return Err(TransportError::new(TransportErrorKind::Connect, "channel is shut down"));
            }
        }
    }

    /// Starts connecting in the background unless already connected or connecting.
    pub fn request_connection(&self) {
        if self.current().is_some() || self.state() == ConnectivityState::Shutdown {
            return;
        }
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.me.clone();
        tokio::spawn(connect_loop(me));
    }

    /// One pass over the addresses. Each attempt's deadline is the larger of the
    /// configured connect timeout and the current backoff delay.
    async fn attempt(&self) -> Result<Connection, TransportError> {
        let addrs = self.addresses();
        let mut transport = self.transport_config();
        let backoff = self.backoff.lock().map(|b| b.current()).unwrap_or_default();
        transport.connect_timeout = transport.connect_timeout.max(backoff);
        let mut last_err = TransportError::new(TransportErrorKind::Resolve, "no addresses to connect to");
        for addr in &addrs {
            match transport::connect(addr, &self.config.server_name, &transport).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    debug!(address = %addr, error = %e, "connect attempt failed");
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// The transport settings for the next connection (keepalive time possibly doubled).
    fn transport_config(&self) -> TransportConfig {
        let mut t = self.config.transport.clone();
        if let (Some(ka), Ok(time)) = (t.keepalive.as_mut(), self.keepalive_time.lock()) {
            if let Some(time) = *time {
                ka.time = time;
            }
        }
        t
    }

    /// The keepalive time new connections use (`None`: keepalive off).
    pub fn keepalive_time(&self) -> Option<Duration> {
        self.keepalive_time.lock().ok().and_then(|t| *t)
    }

    /// When `conn` ends, forget it and go back to IDLE (the next call reconnects); while
    /// it lives, release it after the idle timeout without calls.
    fn watch_connection(&self, conn: &Connection) {
        let me = self.me.clone();
        let closed = conn.closed();
        let id = conn.id();
        let probe = conn.probe();
        let idle_timeout = self.config.idle_timeout;
        tokio::spawn(async move {
            tokio::pin!(closed);
            let why = loop {
                // Next check: when the idle timeout would expire if nothing happens meanwhile.
                let check = match (idle_timeout, me.upgrade()) {
                    (Some(idle), Some(sc)) => idle.saturating_sub(sc.unused_for()).max(Duration::from_millis(10)),
                    _ => Duration::from_secs(24 * 60 * 60),
                };
                tokio::select! {
                    why = &mut closed => break why,
                    _ = tokio::time::sleep(check), if idle_timeout.is_some() => {
                        let Some(sc) = me.upgrade() else { return };
                        let idle = idle_timeout.unwrap_or(Duration::MAX);
                        if probe.active_streams() == 0 && sc.unused_for() >= idle {
                            debug!("channel idle timeout: releasing the connection");
                            sc.drop_connection_if(id, "idle timeout");
                        }
                    }
                }
            };
            if let Some(sc) = me.upgrade() {
                let too_many_pings = why.is_enhance_your_calm()
                    && probe.peer_goaway_debug_data().is_some_and(|d| &d[..] == b"too_many_pings");
                if too_many_pings {
                    if let Ok(mut t) = sc.keepalive_time.lock() {
                        if let Some(time) = t.as_mut() {
                            *time = time.saturating_mul(2);
                            warn!(keepalive_time = ?*time, "too_many_pings from the server: keepalive time doubled for new connections");
                        }
                    }
                }
                sc.forget(id);
            }
        });
    }

    fn forget(&self, id: u64) {
        let removed = match self.conn.lock() {
            Ok(mut slot) if slot.as_ref().map(|c| c.id()) == Some(id) => {
                *slot = None;
                true
            }
            _ => false,
        };
        if removed {
            self.set_state(ConnectivityState::Idle);
        }
    }

    /// Marks the current connection dead (e.g. a call saw GOAWAY); new calls reconnect.
    pub fn drop_connection(&self, why: &str) {
        let conn = self.conn.lock().ok().and_then(|mut c| c.take());
        if let Some(c) = conn {
            c.mark_closed(why);
            self.set_state(ConnectivityState::Idle);
        }
    }

    /// Like [`Subchannel::drop_connection`], but only if the current connection is the one
    /// with id `id` (another call may already have replaced it).
    pub fn drop_connection_if(&self, id: u64, why: &str) {
        let conn = match self.conn.lock() {
            Ok(mut c) if c.as_ref().map(|c| c.id()) == Some(id) => c.take(),
            _ => None,
        };
        if let Some(c) = conn {
            c.mark_closed(why);
            self.set_state(ConnectivityState::Idle);
        }
    }

    /// Shuts the subchannel down: the connection is released and new calls fail.
    pub fn shutdown(&self) {
        self.drop_connection("subchannel shut down");
        self.set_state(ConnectivityState::Shutdown);
    }
}

/// Connection attempts with backoff until one succeeds, the subchannel is shut down or
/// dropped, or it has been unused for the idle timeout.
async fn connect_loop(me: Weak<Subchannel>) {
    loop {
        let Some(sc) = me.upgrade() else { return };
        if sc.state() == ConnectivityState::Shutdown {
            sc.connecting.store(false, Ordering::Release);
            return;
        }
        if sc.state() != ConnectivityState::TransientFailure {
            sc.set_state(ConnectivityState::Connecting);
        }
        match sc.attempt().await {
            Ok(conn) => {
                if let Ok(mut slot) = sc.conn.lock() {
                    *slot = Some(conn.clone());
                }
                sc.watch_connection(&conn);
                if let Ok(mut b) = sc.backoff.lock() {
                    b.reset();
                }
                sc.connecting.store(false, Ordering::Release);
                sc.set_state(ConnectivityState::Ready);
                if sc.state() == ConnectivityState::Shutdown {
                    sc.drop_connection("subchannel shut down");
                }
                return;
            }
            Err(e) => {
                if let Ok(mut slot) = sc.last_error.lock() {
                    *slot = Some(e);
                }
                sc.set_state(ConnectivityState::TransientFailure);
                let delay = sc.backoff.lock().map(|mut b| b.next_delay()).unwrap_or(Duration::from_secs(1));
                debug!(?delay, "connection failed; retrying after backoff");
                let idle = sc.config.idle_timeout.unwrap_or(Duration::MAX);
                if sc.unused_for() >= idle {
                    sc.connecting.store(false, Ordering::Release);
                    sc.set_state(ConnectivityState::Idle);
                    return;
                }
                drop(sc);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
