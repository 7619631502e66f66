//! The channel's control side: one task per channel that owns the resolver, the LB
//! policy and (through the policy) the subchannels, and publishes what calls read.
//!
//! Events come in on one queue: resolver updates, subchannel state changes, requests
//! to leave idleness, shutdown. The task handles them one at a time (so the policy needs
//! no locks) and publishes a [`Snapshot`] (connectivity state, picker, service config)
//! through a `watch`; the call side only reads the latest snapshot and never waits on
//! this task except when its picker says to queue.
//!
//! Idleness (grpc-go's idle mode): a channel starts IDLE with no resolver and no policy.
//! The first call (or `connect()`, or `get_state(true)`) builds them. After the idle
//! timeout with no call in flight and none started meanwhile (checked once per idle
//! timeout, as grpc-go does, so no clock is read per call), both are dropped (their
//! connections close) and the channel is IDLE again.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::connectivity::ConnectivityState;
use super::lb::{
    ChannelController, FailPicker, LbPolicy, LbUpdate, PickInfo, PickResult, Picker, PolicySet,
    QueuePicker,
};
use super::resolver::{
    Resolver, ResolverBuilder, ResolverOptions, ResolverSink, ResolverTarget, ResolverUpdate,
};
use super::service_config::ServiceConfig;
use super::subchannel::{self, Subchannel, SubchannelConfig, SubchannelState};
use crate::status::Status;

/// What the control side is told.
pub(crate) enum ControlEvent {
    /// A resolver of generation `generation` pushed an update.
    Resolved {
        generation: u64,
        update: ResolverUpdate,
    },
    /// A subchannel changed state.
    Subchannel {
        subchannel: Weak<subchannel::Inner>,
        state: SubchannelState,
    },
    /// A call (or `connect`) needs the channel out of IDLE.
    ExitIdle,
    /// `Channel::shutdown`.
    Shutdown,
}

/// A handle for sending events that does not keep the control task alive.
#[derive(Clone)]
pub(crate) struct ControlSender {
    tx: mpsc::WeakUnboundedSender<ControlEvent>,
    /// The generation of the current resolver (bumped each time one is built).
    generation: Arc<AtomicU64>,
}

impl ControlSender {
    #[cfg(test)]
    pub(crate) fn for_test(tx: mpsc::WeakUnboundedSender<ControlEvent>) -> Self {
        ControlSender {
            tx,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends `ev`; `false` when the channel is gone.
    pub(crate) fn send(&self, ev: ControlEvent) -> bool {
        match self.tx.upgrade() {
            Some(tx) => tx.send(ev).is_ok(),
            None => false,
        }
    }

    /// Whether the channel is alive and its current resolver is of `generation`.
    pub(crate) fn is_live(&self, generation: u64) -> bool {
        self.tx.strong_count() > 0 && self.generation.load(Ordering::Acquire) == generation
    }
}

/// What calls read: the channel's state, the picker, the service config in force.
pub(crate) struct Snapshot {
    pub(crate) state: ConnectivityState,
    pub(crate) picker: Arc<dyn Picker>,
    pub(crate) service_config: ServiceConfig,
    /// Whether the resolver has answered since the channel left IDLE (calls wait for
    /// it, so the first call already sees the resolver's service config).
    pub(crate) resolved: bool,
}

/// State shared by the channel handle (call side) and the control task.
pub(crate) struct Shared {
    pub(crate) snapshot: watch::Sender<Arc<Snapshot>>,
    active_calls: AtomicUsize,
    /// Whether a call started since the idle timer last looked (grpc-go's
    /// `activeSinceLastTimerCheck`): no clock read per call.
    active_since_check: AtomicBool,
}

impl Shared {
    /// The snapshot calls read now.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    pub(crate) fn call_started(&self) {
        self.active_calls.fetch_add(1, Ordering::AcqRel);
        self.active_since_check.store(true, Ordering::Relaxed);
    }

    pub(crate) fn call_ended(&self) {
        self.active_calls.fetch_sub(1, Ordering::AcqRel);
    }

    /// Publishes a snapshot unless the channel is shut down.
    fn publish(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        self.snapshot.send_if_modified(|cur| {
            if cur.state == ConnectivityState::Shutdown {
                return false;
            }
            *cur = snap;
            true
        });
    }

    /// Publishes the SHUTDOWN snapshot (final).
    pub(crate) fn publish_shutdown(&self) {
        let sc = self.current().service_config.clone();
        self.snapshot.send_replace(Arc::new(Snapshot {
            state: ConnectivityState::Shutdown,
            picker: Arc::new(DropPicker(Status::unavailable("channel is shut down"))),
            service_config: sc,
            resolved: true,
        }));
    }
}

struct DropPicker(Status);

impl Picker for DropPicker {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        PickResult::Drop(self.0.clone())
    }
}

/// The picker of an IDLE channel or policy: queues the call and asks the control side
/// (once) to leave IDLE.
struct IdlePicker {
    inner: Arc<dyn Picker>,
    events: ControlSender,
    asked: AtomicBool,
}

impl Picker for IdlePicker {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        let r = self.inner.pick(info);
        if matches!(r, PickResult::Queue) && !self.asked.swap(true, Ordering::AcqRel) {
            self.events.send(ControlEvent::ExitIdle);
        }
        r
    }
}

/// Everything the control task needs to (re)build the resolver and policy.
pub(crate) struct ControlConfig {
    pub(crate) target: ResolverTarget,
    pub(crate) resolver: Arc<dyn ResolverBuilder>,
    pub(crate) resolver_options: ResolverOptions,
    pub(crate) policies: PolicySet,
    pub(crate) default_service_config: ServiceConfig,
    /// Ignore service configs from the resolver (grpc-go's `WithDisableServiceConfig`).
    pub(crate) ignore_resolver_config: bool,
    pub(crate) subchannel: Arc<SubchannelConfig>,
    pub(crate) idle_timeout: Option<Duration>,
}

/// The control task of a new channel, not yet spawned: the channel spawns it on first
/// use (so a channel can be built outside a tokio runtime, as `connect_lazy` promises).
pub(crate) struct Pending {
    control: Control,
    rx: mpsc::UnboundedReceiver<ControlEvent>,
}

impl Pending {
    /// Spawns the control task (needs a tokio runtime).
    pub(crate) fn spawn(self) {
        tokio::spawn(self.control.run(self.rx));
    }
}

/// What the channel handle keeps of its control side.
pub(crate) struct Handles {
    /// The only strong sender: dropping it (the last channel clone) ends the task and
    /// releases everything.
    pub(crate) events: mpsc::UnboundedSender<ControlEvent>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) pending: Pending,
}

/// Creates the control side of a new channel.
pub(crate) fn new(config: ControlConfig) -> Handles {
    let (tx, rx) = mpsc::unbounded_channel();
    let events = ControlSender {
        tx: tx.downgrade(),
        generation: Arc::new(AtomicU64::new(0)),
    };
    let idle = Snapshot {
        state: ConnectivityState::Idle,
        picker: Arc::new(IdlePicker {
            inner: Arc::new(QueuePicker),
            events: events.clone(),
            asked: AtomicBool::new(false),
        }),
        service_config: config.default_service_config.clone(),
        resolved: false,
    };
    let shared = Arc::new(Shared {
        snapshot: watch::channel(Arc::new(idle)).0,
        active_calls: AtomicUsize::new(0),
        active_since_check: AtomicBool::new(false),
    });
    let control = Control {
        shared: Arc::clone(&shared),
        events,
        service_config: config.default_service_config.clone(),
        config,
        active: None,
        idle_check: None,
    };
    Handles {
        events: tx,
        shared,
        pending: Pending { control, rx },
    }
}

struct Active {
    resolver: Box<dyn Resolver>,
    policy: Option<(&'static str, Box<dyn LbPolicy>)>,
    /// The policy's last published state and picker.
    state: ConnectivityState,
    resolved: bool,
}

struct Control {
    shared: Arc<Shared>,
    events: ControlSender,
    config: ControlConfig,
    /// The service config in force.
    service_config: ServiceConfig,
    /// `None` while IDLE.
    active: Option<Active>,
    /// When the idle timer looks next (re-armed every idle timeout while active).
    idle_check: Option<Instant>,
}

/// The policy's view of the channel during one call into it.
struct Cx<'a> {
    subchannel: &'a Arc<SubchannelConfig>,
    /// `healthCheckConfig.serviceName` of the service config in force.
    health: Option<&'a str>,
    events: &'a ControlSender,
    picker: Option<(ConnectivityState, Arc<dyn Picker>)>,
    resolve: bool,
}

impl ChannelController for Cx<'_> {
    fn new_subchannel(&mut self, address: &super::resolver::ResolvedAddress) -> Subchannel {
        Subchannel::new(
            address.clone(),
            Arc::clone(self.subchannel),
            self.events.clone(),
            None,
        )
    }

    fn new_health_checked_subchannel(
        &mut self,
        address: &super::resolver::ResolvedAddress,
    ) -> Subchannel {
        let health = self.health.map(str::to_string);
        Subchannel::new(
            address.clone(),
            Arc::clone(self.subchannel),
            self.events.clone(),
            health,
        )
    }

    fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.picker = Some((state, picker));
    }

    fn request_resolution(&mut self) {
        self.resolve = true;
    }
}

impl Control {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ControlEvent>) {
        loop {
            let idle_check = self.next_idle_check();
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = sleep_until(idle_check) => {
                    self.check_idle();
                    continue;
                }
            };
            match ev {
                None | Some(ControlEvent::Shutdown) => break,
                Some(ControlEvent::ExitIdle) => self.exit_idle(),
                Some(ControlEvent::Resolved { generation, update }) => {
                    if self.events.is_live(generation) && self.active.is_some() {
                        self.resolved(update);
                    }
                }
                Some(ControlEvent::Subchannel { subchannel, state }) => {
                    if let Some(inner) = subchannel.upgrade() {
                        let sc = Subchannel(inner);
                        self.with_policy(|p, cx| p.subchannel_update(&sc, &state, cx));
                    }
                }
            }
        }
        debug!(target = %self.config.target, "channel control task ends");
        self.shared.publish_shutdown();
        // Resolver, policy and subchannels are dropped here.
        self.events.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn next_idle_check(&self) -> Option<Instant> {
        self.active.as_ref()?;
        self.idle_check
    }

    /// Idleness as grpc-go checks it: every idle timeout, the channel goes IDLE if no
    /// call is in flight and none started since the last look. So it goes IDLE between
    /// one and two idle timeouts after its last call, with no clock read on the call path.
    fn check_idle(&mut self) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        if self.active.is_none() {
            return;
        }
        let busy = self.shared.active_calls.load(Ordering::Acquire) > 0;
        let recent = self.shared.active_since_check.swap(false, Ordering::AcqRel);
        if busy || recent {
            // (An idle timeout too large for an Instant never fires.)
            self.idle_check = Instant::now().checked_add(idle);
            return;
        }
        debug!(target = %self.config.target, "no calls for the idle timeout: channel goes IDLE");
        self.active = None;
        self.idle_check = None;
        self.events.generation.fetch_add(1, Ordering::AcqRel);
        self.publish(ConnectivityState::Idle, Arc::new(QueuePicker), false);
    }

    fn exit_idle(&mut self) {
        if let Some(active) = &mut self.active {
            // The policy reported IDLE and a call arrived.
            if active.state == ConnectivityState::Idle && active.policy.is_some() {
                self.with_policy(|p, cx| p.exit_idle(cx));
            }
            return;
        }
        let generation = self.events.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let sink = ResolverSink {
            events: self.events.clone(),
            generation,
        };
        debug!(target = %self.config.target, "channel leaves IDLE");
        match self
            .config
            .resolver
            .build(&self.config.target, sink, &self.config.resolver_options)
        {
            Ok(resolver) => {
                self.active = Some(Active {
                    resolver,
                    policy: None,
                    state: ConnectivityState::Connecting,
                    resolved: false,
                });
                self.idle_check = self
                    .config
                    .idle_timeout
                    .and_then(|idle| Instant::now().checked_add(idle));
                self.publish(ConnectivityState::Connecting, Arc::new(QueuePicker), false);
            }
            Err(e) => {
                warn!(target = %self.config.target, error = %e, "building the resolver failed");
                let st = Status::unavailable(format!(
                    "name resolution for {} failed: {e}",
                    self.config.target
                ));
                self.publish(
                    ConnectivityState::TransientFailure,
                    Arc::new(FailPicker(st)),
                    true,
                );
            }
        }
    }

    /// A resolver update: settle the service config, pick (or switch) the policy, hand
    /// it the addresses.
    fn resolved(&mut self, update: ResolverUpdate) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.resolved = true;
        if let Err(e) = update.addresses {
            // A resolution error changes neither the config nor the policy (grpc-go): a
            // policy with working backends keeps them.
            if active.policy.is_some() {
                self.with_policy(|p, cx| p.resolver_error(e, cx));
            } else {
                let st = Status::unavailable(format!(
                    "name resolution for {} failed: {e}",
                    self.config.target
                ));
                self.publish(
                    ConnectivityState::TransientFailure,
                    Arc::new(FailPicker(st)),
                    true,
                );
            }
            return;
        }
        // The service config: the resolver's (if valid), else the previous valid one, else
        // the default.
        let mut config = self.service_config.clone();
        let from_resolver = update
            .service_config
            .as_ref()
            .filter(|_| !self.config.ignore_resolver_config);
        match from_resolver {
            None => config = self.config.default_service_config.clone(),
            Some(json) => match ServiceConfig::parse(json)
                .map_err(|e| e.to_string())
                .and_then(|sc| self.config.policies.select(&sc).map(|_| sc))
            {
                Ok(sc) => config = sc,
                Err(e) => {
                    warn!(target = %self.config.target, error = %e, "invalid service config from the resolver; keeping the previous one")
                }
            },
        }
        let (builder, lb_config) = match self.config.policies.select(&config) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "no usable LB policy");
                let st = Status::unavailable(format!("invalid service config: {e}"));
                self.publish(
                    ConnectivityState::TransientFailure,
                    Arc::new(FailPicker(st)),
                    true,
                );
                return;
            }
        };
        self.service_config = config.clone();
        let switch = active
            .policy
            .as_ref()
            .map_or(true, |(name, _)| *name != builder.name());
        if switch {
            debug!(policy = builder.name(), "LB policy");
            active.policy = Some((builder.name(), builder.build()));
            active.state = ConnectivityState::Connecting;
        }
        let addresses = update.addresses.unwrap_or_default();
        let lb = LbUpdate {
            addresses,
            config: lb_config,
            service_config: config,
        };
        let mut failed = None;
        self.with_policy(|p, cx| {
            if let Err(e) = p.resolver_update(lb, cx) {
                failed = Some(e);
                cx.request_resolution();
            }
        });
        if let Some(e) = failed {
            debug!(error = %e, "LB policy rejected the resolver update");
        }
        // The config may have changed without a new picker: republish for the calls.
        let cur = self.shared.current();
        if !cur.resolved || !same_config(&cur.service_config, &self.service_config) {
            let state = cur.state;
            let picker = Arc::clone(&cur.picker);
            self.publish(state, picker, true);
        }
    }

    /// Runs `f` on the policy (if any) and applies what it asked for.
    fn with_policy(&mut self, f: impl FnOnce(&mut dyn LbPolicy, &mut dyn ChannelController)) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let Some((_, policy)) = active.policy.as_mut() else {
            return;
        };
        let mut cx = Cx {
            subchannel: &self.config.subchannel,
            health: self.service_config.health_check_service_name(),
            events: &self.events,
            picker: None,
            resolve: false,
        };
        f(policy.as_mut(), &mut cx);
        let Cx {
            picker, resolve, ..
        } = cx;
        if resolve {
            active.resolver.resolve_now();
        }
        if let Some((state, picker)) = picker {
            active.state = state;
            let resolved = active.resolved;
            self.publish(state, picker, resolved);
        }
    }

    fn publish(&self, state: ConnectivityState, picker: Arc<dyn Picker>, resolved: bool) {
        let picker: Arc<dyn Picker> = if state == ConnectivityState::Idle {
            Arc::new(IdlePicker {
                inner: picker,
                events: self.events.clone(),
                asked: AtomicBool::new(false),
            })
        } else {
            picker
        };
        self.shared.publish(Snapshot {
            state,
            picker,
            service_config: self.service_config.clone(),
            resolved,
        });
    }
}

fn same_config(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    a.ptr_eq(b)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A sink whose updates arrive on the returned receiver (resolver unit tests).
#[cfg(test)]
pub(crate) fn test_sink() -> (
    ResolverSink,
    tokio::sync::mpsc::UnboundedReceiver<ResolverUpdate>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let sender = ControlSender {
        tx: tx.downgrade(),
        generation: Arc::new(AtomicU64::new(1)),
    };
    tokio::spawn(async move {
        let _keep = tx;
        while let Some(ev) = rx.recv().await {
            if let ControlEvent::Resolved { update, .. } = ev {
                if out_tx.send(update).is_err() {
                    return;
                }
            }
        }
    });
    (
        ResolverSink {
            events: sender,
            generation: 1,
        },
        out_rx,
    )
}
