//! `Channel`: the client's handle on a target, shaped like grpc-go's ClientConn.
//!
//! A channel owns a resolver (target -> addresses), a balancer (addresses ->
//! subchannels, pick per call) and the per-call configuration (user agent, limits,
//! compression, interceptors). Cloning is cheap (an `Arc`); all methods take `&self`, so
//! many tasks can call concurrently over the same HTTP/2 connection.

use std::sync::Arc;

use tracing::debug;

use super::balancer::Balancer;
use super::connectivity::ConnectivityState;
use super::endpoint::CallConfig;
use super::resolver::Resolver;
use super::subchannel::Subchannel;
use super::target::Target;
use crate::transport::{Connection, TransportError, TransportErrorKind};

/// A client channel to one target. Cheap to clone; share it between tasks.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use grpc_runtime::{Channel, CompressionEncoding};
///
/// let channel = Channel::builder("http://127.0.0.1:50051")
///     .connect_timeout(Duration::from_secs(5))
///     .send_compressed(CompressionEncoding::Gzip)
///     .connect()
///     .await?;
/// // Generated clients wrap it: `GreeterClient::new(channel.clone())`.
/// # let _ = channel; Ok(()) }
/// ```
///
/// The last clone dropped releases the connection (after in-flight calls end).
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("target", &self.inner.target.text)
            .field("state", &self.state())
            .finish()
    }
}

pub(crate) struct ChannelInner {
    pub(crate) target: Target,
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: String,
    resolver: Arc<dyn Resolver>,
    balancer: Arc<dyn Balancer>,
    resolving: tokio::sync::Mutex<bool>,
    pub(crate) config: CallConfig,
    /// The configured keepalive time (before any subchannel exists).
    keepalive_time: Option<std::time::Duration>,
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        self.balancer.shutdown();
    }
}

impl Channel {
    pub(crate) fn from_parts(
        target: Target,
        authority: String,
        resolver: Arc<dyn Resolver>,
        balancer: Arc<dyn Balancer>,
        config: CallConfig,
        keepalive_time: Option<std::time::Duration>,
    ) -> Channel {
        let scheme = if target.tls { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
        Channel {
            inner: Arc::new(ChannelInner {
                target,
                scheme,
                authority,
                resolver,
                balancer,
                resolving: tokio::sync::Mutex::new(false),
                config,
                keepalive_time,
            }),
        }
    }

    /// The channel's aggregated connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.inner.balancer.state()
    }

    /// The client keepalive time new connections use, `None` when keepalive is off. It
    /// starts as configured ([`crate::Endpoint::keepalive_time`]) and doubles each time
    /// a server answers GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") (gRFC A8).
    pub fn keepalive_time(&self) -> Option<std::time::Duration> {
        match self.inner.balancer.pick() {
            Some(sc) => sc.keepalive_time(),
            None => self.inner.keepalive_time,
        }
    }

    /// The target this channel was built for, as given.
    pub fn target(&self) -> &str {
        &self.inner.target.text
    }

    /// Connects now if not connected (used by `Endpoint::connect`).
    pub(crate) async fn connect_now(&self) -> Result<(), TransportError> {
        self.pick().await.map(|_| ())
    }

    /// Shuts the channel down: connections are released, new calls fail UNAVAILABLE.
    /// Other clones of this channel are affected too.
    pub fn shutdown(&self) {
        self.inner.balancer.shutdown();
    }

    async fn resolve(&self, force: bool) -> Result<(), TransportError> {
        let mut resolved = self.inner.resolving.lock().await;
        if *resolved && !force {
            return Ok(());
        }
        let addrs = self.inner.resolver.resolve().await?;
        if addrs.is_empty() {
            return Err(TransportError::new(
                TransportErrorKind::Resolve,
                format!("{} resolved to no addresses", self.inner.target.text),
            ));
        }
        debug!(target = %self.inner.target.text, addresses = ?addrs, "resolved");
        self.inner.balancer.update_addresses(addrs);
        *resolved = true;
        Ok(())
    }

    /// Waits until the channel's state differs from `from` and returns the new state
    /// (returns at once if it already differs). Bound it with a timeout if needed.
    pub async fn wait_for_state_change(&self, from: ConnectivityState) -> ConnectivityState {
        loop {
            let now = self.state();
            if now != from {
                return now;
            }
            match self.inner.balancer.pick() {
                Some(sc) => {
                    let mut rx = sc.watch_state();
                    if self.state() != from {
                        continue;
                    }
                    // The channel's state is the subchannel's (or SHUTDOWN, which the
                    // subchannel also reaches on shutdown).
                    let _ = rx.wait_for(|s| *s != from).await;
                }
                // No subchannel before the first resolution: poll briefly.
                None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    /// Starts connecting in the background if the channel is IDLE (as grpc's
    /// `getState(tryToConnect=true)`); returns the state before.
    pub fn get_state(&self, try_to_connect: bool) -> ConnectivityState {
        let state = self.state();
        if try_to_connect && state == ConnectivityState::Idle {
            let ch = self.clone();
            tokio::spawn(async move {
                if let Err(e) = ch.pick_with(true).await {
                    debug!(error = %e, "background connect failed");
                }
            });
        }
        state
    }

    /// Picks a subchannel and returns its live connection, resolving and connecting as
    /// needed; fails fast in TRANSIENT_FAILURE.
    pub(crate) async fn pick(&self) -> Result<(Arc<Subchannel>, Connection), TransportError> {
        self.pick_with(false).await
    }

    /// Like [`Channel::pick`]; with `wait_for_ready`, waits through TRANSIENT_FAILURE
    /// until a connection is READY (the caller bounds the wait with the call deadline).
    pub(crate) async fn pick_with(&self, wait_for_ready: bool) -> Result<(Arc<Subchannel>, Connection), TransportError> {
        if self.inner.balancer.state() == ConnectivityState::Shutdown {
            return Err(TransportError::new(TransportErrorKind::Connect, "channel is shut down"));
        }
        let sc = match self.inner.balancer.pick() {
            Some(sc) => sc,
            None => {
                self.resolve(false).await?;
                self.inner.balancer.pick().ok_or_else(|| {
                    TransportError::new(TransportErrorKind::Resolve, "no subchannel after resolution")
                })?
            }
        };
        match sc.connection_with(wait_for_ready).await {
            Ok(c) => Ok((sc, c)),
            Err(e) => {
                // Addresses may have changed: refresh them for the next attempt.
                if let Err(re) = self.resolve(true).await {
                    debug!(error = %re, "re-resolution failed");
                }
                Err(e)
            }
        }
    }
}
