//! Subchannel: one backend address and at most one HTTP/2 connection to it.
//!
//! A subchannel connects only when its LB policy asks ([`Subchannel::connect`]); the
//! attempt runs in a background task (a cancelled call does not cancel it). States, as
//! in gRPC's connectivity semantics and grpc-go's `addrConn`:
//! IDLE -> CONNECTING -> READY, or -> TRANSIENT_FAILURE after a failed attempt, which
//! waits the reconnect backoff (1 s, x1.6, +-20 %, at most 120 s; reset once READY) and
//! then goes back to IDLE, where the policy decides whether to connect again. A READY
//! connection that ends (EOF, GOAWAY, error, keepalive timeout) also goes back to IDLE.
//! Every change is reported to the channel's control side, which hands it to the policy.
//! Dropping the last clone releases the connection (open streams finish first).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tracing::{debug, warn};

use super::connectivity::ConnectivityState;
use super::control::{ControlEvent, ControlSender};
use super::health::{Health, HealthTarget};
use super::resolver::ResolvedAddress;
use crate::transport::write_batch::BusyConnections;
use crate::transport::{
    self, Address, Backoff, BackoffConfig, Connection, TransportConfig, TransportError,
    TransportErrorKind,
};

/// What every subchannel of a channel shares: how to open connections.
#[derive(Debug)]
pub(crate) struct SubchannelConfig {
    /// Socket, TLS and HTTP/2 settings. `connect_timeout` is the minimum deadline of
    /// each connection attempt (connection-backoff.md MIN_CONNECT_TIMEOUT).
    pub(crate) transport: TransportConfig,
    /// Host used for TLS verification when no override is configured.
    pub(crate) server_name: String,
    /// Reconnect backoff after failed attempts.
    pub(crate) backoff: BackoffConfig,
    /// Keepalive time for new connections, doubled after each too_many_pings GOAWAY
    /// (gRFC A8: for the whole channel).
    pub(crate) keepalive_time: Mutex<Option<Duration>>,
    /// The last failed connection attempt of any subchannel (what `connect()` reports).
    pub(crate) last_error: Mutex<Option<TransportError>>,
    /// `:authority` and scheme of the channel's calls (for health-check streams).
    pub(crate) authority: String,
    pub(crate) scheme: http::uri::Scheme,
    /// The channel's connections with calls in flight (the write batching rule).
    busy_connections: Arc<BusyConnections>,
}

impl SubchannelConfig {
    pub(crate) fn new(
        transport: TransportConfig,
        server_name: String,
        backoff: BackoffConfig,
        authority: String,
        scheme: http::uri::Scheme,
    ) -> Self {
        let keepalive_time = Mutex::new(transport.keepalive.map(|k| k.time));
        SubchannelConfig {
            transport,
            server_name,
            backoff,
            keepalive_time,
            last_error: Mutex::new(None),
            authority,
            scheme,
            busy_connections: Arc::default(),
        }
    }

    /// The keepalive time new connections use (`None`: keepalive off).
    pub(crate) fn keepalive_time(&self) -> Option<Duration> {
        self.keepalive_time.lock().ok().and_then(|t| *t)
    }

    /// The transport settings for the next connection (keepalive time possibly doubled).
    fn transport_config(&self) -> TransportConfig {
        let mut t = self.transport.clone();
        if let (Some(ka), Some(time)) = (t.keepalive.as_mut(), self.keepalive_time()) {
            ka.time = time;
        }
        t
    }
}

/// A subchannel's state as reported to its policy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubchannelState {
    /// The connectivity state.
    pub state: ConnectivityState,
    /// With TRANSIENT_FAILURE: why the last attempt failed.
    pub error: Option<TransportError>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Inner {
    id: u64,
    address: ResolvedAddress,
    config: Arc<SubchannelConfig>,
    events: ControlSender,
    /// The live connection, if READY.
    conn: Mutex<Option<Connection>>,
    state: Mutex<ConnectivityState>,
    /// A connection attempt (or its backoff) is running.
    connecting: AtomicBool,
    backoff: Mutex<Backoff>,
    shut: AtomicBool,
    /// gRFC A17: the service whose health gates READY (`None`: no health checking).
    health: Option<String>,
    /// The running health-check stream's task (aborted when the subchannel goes).
    health_task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Never connects (policy unit tests).
    inert: bool,
    /// How often `connect` was called (policy unit tests).
    connect_calls: AtomicU64,
}

/// One backend address of a channel, with at most one connection. Cheap to clone;
/// clones are the same subchannel (equality and hashing by identity).
#[derive(Clone)]
pub struct Subchannel(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Subchannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subchannel")
            .field("id", &self.0.id)
            .field("address", &self.0.address.address())
            .field("state", &self.state())
            .finish()
    }
}

impl PartialEq for Subchannel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Subchannel {}
impl std::hash::Hash for Subchannel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.health_task.get_mut().ok().and_then(|t| t.take()) {
            t.abort();
        }
        if let Some(c) = self.conn.get_mut().ok().and_then(|c| c.take()) {
            // New calls stop using it; open streams finish, then h2 closes it.
            c.mark_closed("subchannel removed");
        }
    }
}

impl Subchannel {
    pub(crate) fn new(
        address: ResolvedAddress,
        config: Arc<SubchannelConfig>,
        events: ControlSender,
        health: Option<String>,
    ) -> Subchannel {
        let backoff = Backoff::new(config.backoff);
        Subchannel(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            address,
            config,
            events,
            conn: Mutex::new(None),
            state: Mutex::new(ConnectivityState::Idle),
            connecting: AtomicBool::new(false),
            backoff: Mutex::new(backoff),
            shut: AtomicBool::new(false),
            health,
            health_task: Mutex::new(None),
            inert: false,
            connect_calls: AtomicU64::new(0),
        }))
    }

    /// A subchannel that never connects and reports nothing (policy unit tests).
    #[cfg(test)]
    pub(crate) fn for_test(address: &ResolvedAddress) -> Subchannel {
        let (tx, _) = tokio::sync::mpsc::unbounded_channel();
        let events = ControlSender::for_test(tx.downgrade());
        let config = Arc::new(SubchannelConfig::new(
            TransportConfig::default(),
            "test".into(),
            BackoffConfig::default(),
            "test".into(),
            http::uri::Scheme::HTTP,
        ));
        let mut sc = Subchannel::new(address.clone(), config, events, None);
        if let Some(inner) = Arc::get_mut(&mut sc.0) {
            inner.inert = true;
        }
        sc
    }

    /// How often [`Subchannel::connect`] was called (policy unit tests).
    #[cfg(test)]
    pub(crate) fn connect_calls(&self) -> u64 {
        self.0.connect_calls.load(Ordering::Relaxed)
    }

    /// Whether [`Subchannel::shutdown`] was called (policy unit tests).
    #[cfg(test)]
    pub(crate) fn is_shut_down(&self) -> bool {
        self.0.shut.load(Ordering::Acquire)
    }

    /// Process-unique id (for logs and tests).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The address this subchannel connects to, with the resolver's attributes.
    pub fn address(&self) -> &ResolvedAddress {
        &self.0.address
    }

    /// The current connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.0
            .state
            .lock()
            .map(|s| *s)
            .unwrap_or(ConnectivityState::Shutdown)
    }

    /// The live connection, if READY.
    pub(crate) fn connection(&self) -> Option<Connection> {
        let guard = self.0.conn.lock().ok()?;
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// Starts connecting if IDLE; does nothing in any other state (a failed attempt
    /// returns to IDLE only after its backoff).
    pub fn connect(&self) {
        self.0.connect_calls.fetch_add(1, Ordering::Relaxed);
        if self.0.inert
            || self.0.shut.load(Ordering::Acquire)
            || self.state() != ConnectivityState::Idle
        {
            return;
        }
        if self.0.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::downgrade(&self.0);
        tokio::spawn(connect_once(me));
    }

    /// Stops the subchannel: its connection is released (open streams finish) and it
    /// reports no more state changes. Dropping every clone does the same.
    pub fn shutdown(&self) {
        self.0.shut.store(true, Ordering::Release);
        self.drop_connection("subchannel shut down");
    }

    /// Marks the current connection dead (a call saw GOAWAY or an I/O error); the
    /// subchannel goes IDLE and the policy decides what next.
    pub(crate) fn drop_connection_if(&self, id: u64, why: &str) {
        let conn = match self.0.conn.lock() {
            Ok(mut c) if c.as_ref().map(|c| c.id()) == Some(id) => c.take(),
            _ => None,
        };
        if let Some(c) = conn {
            c.mark_closed(why);
            set_state(&self.0, ConnectivityState::Idle, None);
        }
    }

    fn drop_connection(&self, why: &str) {
        let conn = self.0.conn.lock().ok().and_then(|mut c| c.take());
        if let Some(c) = conn {
            c.mark_closed(why);
        }
    }
}

/// Records the new state and reports it to the control side (unless shut down or
/// unchanged).
fn set_state(inner: &Arc<Inner>, s: ConnectivityState, error: Option<TransportError>) {
    if inner.shut.load(Ordering::Acquire) {
        return;
    }
    let changed = match inner.state.lock() {
        Ok(mut cur) if *cur != s => {
            debug!(subchannel = inner.id, address = %inner.address.address(), from = %*cur, to = %s, "subchannel state");
            *cur = s;
            true
        }
        _ => false,
    };
    if changed {
        inner.events.send(ControlEvent::Subchannel {
            subchannel: Arc::downgrade(inner),
            state: SubchannelState { state: s, error },
        });
    }
}

/// One connection attempt; on failure TRANSIENT_FAILURE, the backoff delay, then IDLE.
async fn connect_once(me: Weak<Inner>) {
    let Some(sc) = me.upgrade() else { return };
    set_state(&sc, ConnectivityState::Connecting, None);
    let address: Address = sc.address.address().clone();
    let mut transport = sc.config.transport_config();
    // Each attempt's deadline is the larger of the connect timeout and the backoff delay.
    let backoff = sc.backoff.lock().map(|b| b.current()).unwrap_or_default();
    transport.connect_timeout = transport.connect_timeout.max(backoff);
    let config = Arc::clone(&sc.config);
    drop(sc);
    let busy = Arc::clone(&config.busy_connections);
    let result = transport::connect_counted(&address, &config.server_name, &transport, busy).await;
    let Some(sc) = me.upgrade() else { return };
    match result {
        Ok(conn) => {
            if sc.shut.load(Ordering::Acquire) {
                conn.mark_closed("subchannel shut down");
                return;
            }
            if let Ok(mut slot) = sc.conn.lock() {
                *slot = Some(conn.clone());
            }
            if let Ok(mut b) = sc.backoff.lock() {
                b.reset();
            }
            watch_connection(&sc, &conn);
            sc.connecting.store(false, Ordering::Release);
            match &sc.health {
                None => set_state(&sc, ConnectivityState::Ready, None),
                // READY once the backend says SERVING (gRFC A17); CONNECTING until then.
                Some(service) => start_health_check(&sc, &conn, service.clone()),
            }
        }
        Err(e) => {
            debug!(address = %address, error = %e, "connect attempt failed");
            if let Ok(mut last) = sc.config.last_error.lock() {
                *last = Some(e.clone());
            }
            set_state(&sc, ConnectivityState::TransientFailure, Some(e));
            let delay = sc
                .backoff
                .lock()
                .map(|mut b| b.next_delay())
                .unwrap_or(Duration::from_secs(1));
            drop(sc);
            tokio::time::sleep(delay).await;
            let Some(sc) = me.upgrade() else { return };
            sc.connecting.store(false, Ordering::Release);
            set_state(&sc, ConnectivityState::Idle, None);
        }
    }
}

/// Starts the health-check stream of a new connection; its answers set the state.
fn start_health_check(sc: &Arc<Inner>, conn: &Connection, service: String) {
    let target = HealthTarget {
        service,
        authority: sc.config.authority.clone(),
        scheme: sc.config.scheme.clone(),
        backoff: sc.config.backoff,
    };
    let me = Arc::downgrade(sc);
    let id = conn.id();
    let report = move |h: Health| {
        let Some(sc) = me.upgrade() else { return false };
        let current = sc.conn.lock().ok().and_then(|c| c.as_ref().map(|c| c.id())) == Some(id);
        if !current {
            return false;
        }
        match h {
            Health::Serving => set_state(&sc, ConnectivityState::Ready, None),
            Health::NotServing(why) => set_state(
                &sc,
                ConnectivityState::TransientFailure,
                Some(TransportError::new(TransportErrorKind::Connect, why)),
            ),
        }
        true
    };
    let task = tokio::spawn(super::health::watch(conn.clone(), target, report));
    if let Ok(mut slot) = sc.health_task.lock() {
        if let Some(old) = slot.replace(task.abort_handle()) {
            old.abort();
        }
    }
}

/// When `conn` ends, forget it and go IDLE; a GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")
/// doubles the channel's keepalive time for new connections (gRFC A8).
fn watch_connection(sc: &Arc<Inner>, conn: &Connection) {
    let me = Arc::downgrade(sc);
    let closed = conn.closed();
    let id = conn.id();
    tokio::spawn(async move {
        let why = closed.await;
        let Some(sc) = me.upgrade() else { return };
        if why.is_too_many_pings() {
            if let Ok(mut t) = sc.config.keepalive_time.lock() {
                if let Some(time) = t.as_mut() {
                    *time = time.saturating_mul(2);
                    warn!(keepalive_time = ?*time, "too_many_pings from the server: keepalive time doubled for new connections");
                }
            }
        }
        let removed = match sc.conn.lock() {
            Ok(mut slot) if slot.as_ref().map(|c| c.id()) == Some(id) => {
                *slot = None;
                true
            }
            _ => false,
        };
        if removed {
            set_state(&sc, ConnectivityState::Idle, None);
        }
    });
}
