//! Name resolving: a custom resolver for a made-up `registry:` scheme, shaped like a
//! resolver for Consul, etcd or Kubernetes endpoints would be.
//!
//! - [`Registry`] stands in for the discovery system: a service name maps to a list of
//!   instances that changes at run time, and watchers are told about every change.
//! - [`RegistryResolverBuilder`] serves targets like `registry:///echo`. The resolver it
//!   builds for a channel runs one task that pushes the current instances of the service
//!   through its [`ResolverSink`] (with a service config selecting `round_robin`), then
//!   waits for the registry to change and pushes again. The task stops when the channel
//!   drops the resolver (channel closed, or gone IDLE) or when `sink.update` answers that
//!   nobody listens any more. [`Resolver::resolve_now`] (the channel's hint that it wants
//!   fresh addresses) makes it push again at once.
//!
//! The run: three Echo servers answer with their own names; the registry lists backends
//! 1 and 2 and calls alternate between them; the registry switches to 2 and 3 while four
//! clients keep calling (none fails) and traffic moves to 2 and 3; closing the channel
//! stops the resolver's task. Compare grpc-go's `examples/features/name_resolving`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grpc_runtime::client::resolver::{
    ResolvedAddress, Resolver, ResolverBuilder, ResolverOptions, ResolverSink, ResolverTarget,
    ResolverUpdate,
};
use grpc_runtime::Channel;
use tokio::sync::{oneshot, watch, Notify};

use super::{call_n, echo, start_backends, stop_backends, until_all_answer, Tally};
use crate::pb::echo::echo_client::EchoClient;
use crate::{ensure, BoxError, Transcript};

/// The URI scheme of the resolver: targets are `registry:///SERVICE`.
pub const SCHEME: &str = "registry";

/// The service config the resolver sends with every address list. A resolver may carry
/// the service's config (DNS does it with TXT records, xDS with its own resources);
/// here it says "spread calls over all instances". The channel applies the config of
/// each update, and falls back to its default config for an update without one, so the
/// resolver attaches it every time.
const SERVICE_CONFIG: &str = r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#;

/// One registered instance of a service: an id (here the backend's name) and where it
/// listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The instance id.
    pub id: String,
    /// Its address.
    pub addr: SocketAddr,
}

/// A tiny in-process service registry, standing in for Consul, etcd or the Kubernetes
/// API: service name -> instances, and a change notification for watchers.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

#[derive(Debug)]
struct RegistryInner {
    services: Mutex<HashMap<String, Vec<Instance>>>,
    /// A version number bumped on every change. A `watch` keeps only the latest value, so
    /// a slow watcher sees "something changed" once and re-reads the current state, the
    /// way a Consul blocking query or a Kubernetes watch is used.
    version: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        let (version, _) = watch::channel(0);
        Registry {
            inner: Arc::new(RegistryInner {
                services: Mutex::default(),
                version,
            }),
        }
    }

    /// Replaces the instances of `service` and tells the watchers.
    pub fn set(&self, service: &str, instances: Vec<Instance>) {
        self.inner
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_string(), instances);
        // `send_modify` updates the value even while nobody watches (`send` would not).
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// The current instances of `service` (none if it is unknown).
    pub fn lookup(&self, service: &str) -> Vec<Instance> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// A receiver that wakes up after every change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// How many watchers are subscribed (each live resolver holds one).
    pub fn watchers(&self) -> usize {
        self.inner.version.receiver_count()
    }
}

/// Builds one resolver per channel for `registry:///SERVICE` targets.
#[derive(Debug, Clone)]
pub struct RegistryResolverBuilder {
    registry: Registry,
    out: Transcript,
}

impl RegistryResolverBuilder {
    /// A builder resolving names in `registry`, reporting what it pushes to `out`.
    pub fn new(registry: Registry, out: Transcript) -> Self {
        RegistryResolverBuilder { registry, out }
    }
}

impl ResolverBuilder for RegistryResolverBuilder {
    fn scheme(&self) -> &str {
        SCHEME
    }

    /// Called when the channel is built, so a malformed target fails `connect` at once
    /// instead of every call later.
    fn validate(&self, target: &ResolverTarget) -> Result<(), String> {
        if !target.authority().is_empty() {
            return Err(format!(
                "this registry has no authority part; use {SCHEME}:///SERVICE"
            ));
        }
        if target.endpoint().is_empty() || target.endpoint().contains('/') {
            return Err(format!("expected {SCHEME}:///SERVICE"));
        }
        Ok(())
    }

    /// Called by the channel when it leaves IDLE (first call or `connect`), on its
    /// control task, so inside the tokio runtime: the resolver may spawn its task here.
    fn build(
        &self,
        target: &ResolverTarget,
        sink: ResolverSink,
        _: &ResolverOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| format!("{SCHEME} resolver needs a tokio runtime: {e}"))?;
        let (stop, stopped) = oneshot::channel();
        let resolve_now = Arc::new(Notify::new());
        let task = WatchTask {
            registry: self.registry.clone(),
            service: target.endpoint().to_string(),
            sink,
            resolve_now: Arc::clone(&resolve_now),
            out: self.out.clone(),
        };
        runtime.spawn(task.run(stopped));
        Ok(Box::new(RegistryResolver {
            resolve_now,
            _stop: stop,
        }))
    }
}

/// The channel's handle on its resolver. The work happens in [`WatchTask`]; this only
/// forwards `resolve_now` and, by being dropped, stops the task.
struct RegistryResolver {
    resolve_now: Arc<Notify>,
    /// Dropped with the resolver: the task's end of this oneshot then completes and the
    /// task returns. (No `Drop` impl needed; an `AbortHandle` would work too.)
    _stop: oneshot::Sender<()>,
}

impl Resolver for RegistryResolver {
    /// The channel lost a connection or every backend is failing and asks for fresh
    /// addresses. Must not block: just wake the task (a real resolver would re-query the
    /// registry, possibly rate-limited by `ResolverOptions::min_resolution_interval`).
    fn resolve_now(&mut self) {
        self.resolve_now.notify_one();
    }
}

/// The resolver's task: push the service's instances now and after every change.
struct WatchTask {
    registry: Registry,
    service: String,
    sink: ResolverSink,
    resolve_now: Arc<Notify>,
    out: Transcript,
}

impl WatchTask {
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let mut changes = self.registry.watch();
        let mut last: Option<Vec<Instance>> = None;
        let mut force = false;
        loop {
            // Mark the current version seen *before* reading, so a change made after the
            // read wakes us up again: no change is ever missed.
            changes.borrow_and_update();
            let instances = self.registry.lookup(&self.service);
            if force || last.as_ref() != Some(&instances) {
                if last.as_ref() != Some(&instances) {
                    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
                    self.out.line(match ids.is_empty() {
                        false => format!(
                            "resolver: {:?} -> [{}], pushed to the channel",
                            self.service,
                            ids.join(", ")
                        ),
                        true => format!(
                            "resolver: {:?} has no instances, pushed an error to the channel",
                            self.service
                        ),
                    });
                }
                if !self.sink.update(self.update_for(&instances)) {
                    // The channel no longer listens to this resolver (closed, or rebuilt
                    // its resolver after idleness): nothing more to do.
                    return;
                }
                last = Some(instances);
            }
            tokio::select! {
                // The resolver was dropped: the channel is closed or went IDLE.
                _ = &mut stopped => return,
                changed = changes.changed() => {
                    // (It cannot fail while this task holds the registry; if it ever did,
                    // stop rather than spin on a closed watch.)
                    if changed.is_err() {
                        return;
                    }
                    force = false;
                }
                _ = self.resolve_now.notified() => force = true,
            }
        }
    }

    /// The update for one list of instances: the addresses and the service config, or
    /// an error when there is no instance (the channel then keeps the addresses it has,
    /// if any, or fails calls with UNAVAILABLE and this message).
    fn update_for(&self, instances: &[Instance]) -> ResolverUpdate {
        if instances.is_empty() {
            // The service config goes with the error too: the channel applies the config
            // of every update, errors included, and one without a config means "use the
            // channel's default" (pick_first here), whose new policy instance would start
            // with no addresses and fail every call instead of keeping the backends.
            return ResolverUpdate::error(format!(
                "no instance of {:?} is registered",
                self.service
            ))
            .with_service_config(SERVICE_CONFIG);
        }
        // Per-address metadata (zone, weight, ...) would go in attributes here:
        // `ResolvedAddress::new(addr).with_attribute(Zone(..))`, read by the LB policy
        // (the load_balancing example does it with weights).
        let addresses = instances
            .iter()
            .map(|i| ResolvedAddress::new(i.addr))
            .collect();
        ResolverUpdate::new(addresses).with_service_config(SERVICE_CONFIG)
    }
}

/// Runs the example.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let backends = start_backends(3, out).await?;
    let instance = |i: usize| Instance {
        id: backends[i].name.clone(),
        addr: backends[i].addr(),
    };
    let registry = Registry::new();
    out.line("registry: echo = [backend-1, backend-2]");
    registry.set("echo", vec![instance(0), instance(1)]);

    // The resolver is given to this one channel (grpc-go's `WithResolvers`). The
    // process-wide alternative (grpc-go's `resolver.Register`) is one call at startup:
    //
    //     grpc_runtime::client::resolver::register(RegistryResolverBuilder::new(registry.clone(), out.clone()));
    //
    // after which every `Channel::builder("registry:///...")` in the process uses it. This
    // example keeps it per channel because the tests run every example in one process,
    // and a registration would outlive this run (it replaces any earlier one of the
    // scheme, built-ins included).
    let target = format!("{SCHEME}:///echo");
    let channel = Channel::builder(&target)
        .resolver(RegistryResolverBuilder::new(registry.clone(), out.clone()))
        .connect()
        .await?;
    out.line(format!(
        "client: connected to {target} (round_robin, from the resolver's service config)"
    ));
    let client = EchoClient::new(channel.clone());

    // A malformed target is refused when the channel is built (our `validate`).
    let bad = Channel::builder(format!("{SCHEME}://somehost/echo"))
        .resolver(RegistryResolverBuilder::new(registry.clone(), out.clone()))
        .connect_lazy();
    match bad {
        Ok(_) => return Err("a registry target with an authority was accepted".into()),
        Err(e) => out.line(format!("client: {SCHEME}://somehost/echo refused: {e}")),
    }

    // round_robin connects to every address; once both answer, calls alternate exactly.
    until_all_answer(&client, &["backend-1", "backend-2"]).await?;
    let before = call_n(&client, 10).await?;
    out.line(format!("client: 10 calls -> {before}"));
    ensure!(
        before.get("backend-1") == 5 && before.get("backend-2") == 5,
        "expected 5 calls each on backends 1 and 2: {before}"
    );

    // The registry changes while four clients keep calling. round_robin drops backend-1
    // from its picker as soon as the update arrives (calls already on it finish there),
    // keeps the connection to backend-2 and adds backend-3 once connected.
    let running = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, running) = (client.clone(), Arc::clone(&running));
        load.push(tokio::spawn(async move {
            let (mut tally, mut failed) = (Tally::default(), Vec::new());
            while running.load(Ordering::Relaxed) {
                match client.unary_echo(echo("during the change")).await {
                    Ok(reply) => tally.add(&reply.into_inner().message),
                    Err(status) => failed.push(status),
                }
            }
            (tally, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // (Each registry line is printed before the change, as the resolver reacts at once.)
    out.line("registry: echo = [backend-2, backend-3] (while 4 clients keep calling)");
    registry.set("echo", vec![instance(1), instance(2)]);
    // Let the load run until backend-3 has answered some of it, then a bit more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen_backend_3(&client).await? {
        ensure!(
            Instant::now() < deadline,
            "backend-3 never answered after the registry change"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.store(false, Ordering::Relaxed);
    let (mut during, mut failed) = (Tally::default(), Vec::new());
    for task in load {
        let (tally, errors) = task.await?;
        during.merge(&tally);
        failed.extend(errors);
    }
    out.line(format!(
        "client: {} calls during the change, {} failed ({during})",
        during.total() + failed.len(),
        failed.len()
    ));
    ensure!(
        failed.is_empty(),
        "calls failed during the registry change: {failed:?}"
    );
    ensure!(
        during.get("backend-3") > 0,
        "backend-3 got none of the load: {during}"
    );

    let after = call_n(&client, 10).await?;
    out.line(format!("client: 10 calls -> {after}"));
    ensure!(
        after.get("backend-2") == 5 && after.get("backend-3") == 5 && after.get("backend-1") == 0,
        "expected 5 calls each on backends 2 and 3 and none on backend-1: {after}"
    );

    // An empty registry entry is a resolution error; the channel keeps the backends it
    // has (what grpc does when DNS fails for a while) and calls keep working.
    out.line("registry: echo = [] (deregistered everything)");
    registry.set("echo", Vec::new());
    // (Give the update time to reach the policy; nothing tells us when it did.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    let still = call_n(&client, 4).await?;
    out.line(format!(
        "client: 4 calls -> {still} (the channel keeps its last addresses)"
    ));
    ensure!(
        still.get("backend-2") == 2 && still.get("backend-3") == 2,
        "expected the last addresses to be kept: {still}"
    );

    // Closing the channel drops its resolver, which stops the watch task (it held the
    // registry's only watcher).
    ensure!(
        registry.watchers() == 1,
        "expected one watcher (our resolver), found {}",
        registry.watchers()
    );
    channel.shutdown();
    drop((client, channel));
    let deadline = Instant::now() + Duration::from_secs(2);
    while registry.watchers() > 0 {
        ensure!(
            Instant::now() < deadline,
            "the resolver's task kept running after the channel closed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.line("client: channel closed; the resolver's task stopped (registry watchers: 0)");

    stop_backends(backends).await
}

/// One call; whether backend-3 answered it.
async fn seen_backend_3(client: &EchoClient) -> Result<bool, BoxError> {
    Ok(call_n(client, 1).await?.get("backend-3") > 0)
}
