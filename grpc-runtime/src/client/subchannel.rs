//! Subchannel: owns at most one HTTP/2 connection at a time to one of its addresses.
//!
//! A subchannel connects on demand (the first call, or the first call after the
//! connection died), trying its addresses in order; concurrent callers share one attempt.
//! When the connection ends (EOF, GOAWAY, error) the subchannel goes back to IDLE and the
//! next call reconnects. Reconnect backoff and keepalive (issue 6) hook in here.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::connectivity::ConnectivityState;
use crate::transport::{self, Address, Connection, TransportConfig, TransportError, TransportErrorKind};

/// What a subchannel needs to open connections.
#[derive(Debug, Clone)]
pub struct SubchannelConfig {
    /// Socket, TLS and HTTP/2 settings.
    pub transport: TransportConfig,
    /// Host used for TLS verification when no override is configured.
    pub server_name: String,
}

/// A logical connection to a set of equivalent addresses.
pub struct Subchannel {
    me: Weak<Subchannel>,
    config: Arc<SubchannelConfig>,
    addrs: Mutex<Vec<Address>>,
    conn: Mutex<Option<Connection>>,
    connecting: tokio::sync::Mutex<()>,
    state: watch::Sender<ConnectivityState>,
    /// Keepalive time for new connections, doubled after each too_many_pings GOAWAY.
    keepalive_time: Mutex<Option<std::time::Duration>>,
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
            connecting: tokio::sync::Mutex::new(()),
            state: watch::channel(ConnectivityState::Idle).0,
            keepalive_time: Mutex::new(config.transport.keepalive.map(|k| k.time)),
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

    /// Returns the live connection, connecting first if there is none.
    pub async fn connection(&self) -> Result<Connection, TransportError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _attempt = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        if self.state() == ConnectivityState::Shutdown {
            return Err(TransportError::new(TransportErrorKind::Connect, "channel is shut down"));
        }
        self.set_state(ConnectivityState::Connecting);
        let addrs = self.addresses();
        let transport = self.transport_config();
        let mut last_err = TransportError::new(TransportErrorKind::Resolve, "no addresses to connect to");
        for addr in &addrs {
            match transport::connect(addr, &self.config.server_name, &transport).await {
                Ok(conn) => {
                    if let Ok(mut slot) = self.conn.lock() {
                        *slot = Some(conn.clone());
                    }
                    self.watch_connection(&conn);
                    self.set_state(ConnectivityState::Ready);
                    return Ok(conn);
                }
                Err(e) => {
                    debug!(address = %addr, error = %e, "connect attempt failed");
                    last_err = e;
                }
            }
        }
        self.set_state(ConnectivityState::TransientFailure);
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
    pub fn keepalive_time(&self) -> Option<std::time::Duration> {
        self.keepalive_time.lock().ok().and_then(|t| *t)
    }

    /// When `conn` ends, forget it and go back to IDLE (the next call reconnects).
    fn watch_connection(&self, conn: &Connection) {
        let me = self.me.clone();
        let closed = conn.closed();
        let id = conn.id();
        let goaway_debug = conn.goaway_debug_probe();
        tokio::spawn(async move {
            let why = closed.await;
            if let Some(sc) = me.upgrade() {
                let too_many_pings = why.is_enhance_your_calm()
                    && goaway_debug().is_some_and(|d| &d[..] == b"too_many_pings");
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
