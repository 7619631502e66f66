//! `Channel`: the client's public handle on a target, shaped like grpc-go's ClientConn.
//!
//! The handle holds what calls need (target, `:authority`, per-call configuration) and
//! the read side of the control task's snapshot (state, picker, service config); the
//! control task (`control.rs`) owns the resolver, the LB policy and the subchannels.
//! Cloning is cheap (an `Arc`); all methods take `&self`, so many tasks can call
//! concurrently. The four call kinds live in `call.rs`.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::connectivity::ConnectivityState;
use super::control::{ControlEvent, Handles, Pending, Shared};
use super::endpoint::CallConfig;
use super::lb::{PickInfo, PickResult};
use super::subchannel::SubchannelConfig;
use crate::metadata::MetadataMap;
use crate::transport::{TransportError, TransportErrorKind};

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
/// Several backends behind one name, balanced per call:
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let channel = grpc_runtime::Channel::builder("dns:///my-service.internal:50051")
///     .load_balancing_policy("round_robin")
///     .connect_lazy()?;
/// # let _ = channel; Ok(()) }
/// ```
///
/// The last clone dropped releases the connections (after in-flight calls end).
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("target", &self.inner.target)
            .field("state", &self.state())
            .finish()
    }
}

pub(crate) struct ChannelInner {
    /// The target as given.
    pub(crate) target: String,
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: String,
    pub(crate) config: CallConfig,
    /// The control task's snapshot and the call counters it watches for idleness.
    pub(crate) shared: Arc<Shared>,
    /// The only strong sender: the control task ends when the last clone is dropped.
    events: mpsc::UnboundedSender<ControlEvent>,
    /// The control task until its first use spawns it.
    pending: std::sync::Mutex<Option<Pending>>,
    subchannels: Arc<SubchannelConfig>,
    /// The retry throttle of the service config's `retryThrottling` (gRFC A6).
    pub(crate) throttle: std::sync::Mutex<Option<Arc<super::retry::Throttle>>>,
    /// Bytes held by the replay buffers of this channel's calls.
    retry_buffer_used: Arc<std::sync::atomic::AtomicUsize>,
}

impl ChannelInner {
    /// The replay-buffer bounds of a retryable streaming call.
    pub(crate) fn retry_buffer_limits(&self) -> super::replay::BufferLimits {
        super::replay::BufferLimits {
            per_call: self.config.retry_buffer_per_call,
            per_channel: self.config.retry_buffer_per_channel,
            channel_used: Arc::clone(&self.retry_buffer_used),
        }
    }
}

impl Channel {
    pub(crate) fn from_parts(
        target: String,
        tls: bool,
        authority: String,
        config: CallConfig,
        control: Handles,
        subchannels: Arc<SubchannelConfig>,
    ) -> Channel {
        let scheme = if tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let Handles {
            events,
            shared,
            pending,
        } = control;
        let pending = std::sync::Mutex::new(Some(pending));
        Channel {
            inner: Arc::new(ChannelInner {
                target,
                scheme,
                authority,
                config,
                shared,
                events,
                pending,
                subchannels,
                throttle: std::sync::Mutex::new(None),
                retry_buffer_used: Arc::default(),
            }),
        }
    }

    /// The channel's connectivity state, as its LB policy aggregates it (IDLE before the
    /// first call and after the idle timeout).
    pub fn state(&self) -> ConnectivityState {
        self.inner.shared.current().state
    }

    /// The client keepalive time new connections use, `None` when keepalive is off. It
    /// starts as configured ([`crate::Endpoint::keepalive_time`]) and doubles each time
    /// a server answers GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") (gRFC A8).
    pub fn keepalive_time(&self) -> Option<std::time::Duration> {
        self.inner.subchannels.keepalive_time()
    }

    /// The target this channel was built for, as given.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The `:authority` calls carry.
    pub fn authority(&self) -> &str {
        &self.inner.authority
    }

    pub(crate) fn exit_idle(&self) {
        if let Some(pending) = self.inner.pending.lock().ok().and_then(|mut p| p.take()) {
            pending.spawn();
        }
        let _ = self.inner.events.send(ControlEvent::ExitIdle);
    }

    /// Leaves IDLE and waits until the channel is READY (`Ok`) or has failed to connect
    /// (TRANSIENT_FAILURE: the error says why). Used by `Endpoint::connect`.
    pub(crate) async fn connect_now(&self) -> Result<(), TransportError> {
        let mut rx = self.inner.shared.snapshot.subscribe();
        self.exit_idle();
        loop {
            let snap = Arc::clone(&rx.borrow_and_update());
            match snap.state {
                ConnectivityState::Ready => return Ok(()),
                ConnectivityState::Shutdown => {
                    return Err(TransportError::new(
                        TransportErrorKind::Connect,
                        "channel is shut down",
                    ))
                }
                ConnectivityState::TransientFailure => {
                    if let Some(e) = self
                        .inner
                        .subchannels
                        .last_error
                        .lock()
                        .ok()
                        .and_then(|e| e.clone())
                    {
                        return Err(e);
                    }
                    let md = MetadataMap::new();
                    let why = match snap.picker.pick(&PickInfo {
                        method: "",
                        metadata: &md,
                    }) {
                        PickResult::Fail(s) | PickResult::Drop(s) => s.message().to_string(),
                        _ => "connection failed".to_string(),
                    };
                    return Err(TransportError::new(TransportErrorKind::Connect, why));
                }
                ConnectivityState::Idle if snap.resolved => self.exit_idle(),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(TransportError::new(
                    TransportErrorKind::Connect,
                    "channel is shut down",
                ));
            }
        }
    }

    /// Shuts the channel down: connections are released, new calls fail UNAVAILABLE.
    /// Other clones of this channel are affected too.
    pub fn shutdown(&self) {
        self.inner.shared.publish_shutdown();
        let _ = self.inner.events.send(ControlEvent::Shutdown);
    }

    /// Waits until the channel's state differs from `from` and returns the new state
    /// (returns at once if it already differs). Bound it with a timeout if needed.
    pub async fn wait_for_state_change(&self, from: ConnectivityState) -> ConnectivityState {
        let mut rx = self.inner.shared.snapshot.subscribe();
        loop {
            let now = rx.borrow_and_update().state;
            if now != from {
                return now;
            }
            if rx.changed().await.is_err() {
                return ConnectivityState::Shutdown;
            }
        }
    }

    /// Starts connecting in the background if the channel is IDLE (as grpc's
    /// `getState(tryToConnect=true)`); returns the state before.
    pub fn get_state(&self, try_to_connect: bool) -> ConnectivityState {
        let state = self.state();
        if try_to_connect && state == ConnectivityState::Idle {
            self.exit_idle();
        }
        state
    }
}
