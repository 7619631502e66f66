//! Load balancing: how a channel spreads calls over several backends.
//!
//! 1. The built-in policies over the same three backends (an `ipv4:` target listing
//!    three addresses): `pick_first` (the default) sends every call to the first address
//!    that connects; `round_robin`, selected by the service config, rotates over all.
//! 2. A custom policy, `weighted_random` (as in gRPC's "Custom Load Balancing Policies"
//!    guide): each address carries a [`Weight`] attribute set by the resolver (here a
//!    `ManualResolver`); the policy connects to every address, reconnects those that go
//!    IDLE, and publishes a picker that chooses among the READY ones at random in
//!    proportion to their weights. Its JSON config (`{"default_weight": N}`, the weight of
//!    an address without the attribute) is parsed and validated when the channel is
//!    built. Its picks count every call's outcome per backend with `Pick::on_done`.
//!    The policy is made known to one channel with `Endpoint::lb_policy` and selected by
//!    name in the channel's default service config.
//!
//! 1000 calls with weights 1:3:6 land on the backends in about those proportions; the
//! check allows six standard deviations, so it never fails by bad luck.
//! Compare grpc-go's `examples/features/load_balancing` and `examples/features/customloadbalancer`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use grpc_runtime::client::lb::{
    ChannelController, FailPicker, LbConfig, LbPolicy, LbPolicyBuilder, LbUpdate, Pick, PickInfo,
    PickResult, Picker, QueuePicker,
};
use grpc_runtime::client::resolver::{ManualResolver, ResolvedAddress, ResolverUpdate};
use grpc_runtime::client::{Subchannel, SubchannelState};
use grpc_runtime::{Channel, Code, ConnectivityState, Status};

use super::{call_n, start_backends, stop_backends, until_all_answer, Backend, Tally};
use crate::pb::echo::echo_client::EchoClient;
use crate::{ensure, BoxError, Transcript};

// ------------------------------------------------------------------ the custom policy

/// The name the service config selects the policy by.
pub const WEIGHTED_RANDOM: &str = "weighted_random";

/// The weight of one address, attached by the resolver:
/// `ResolvedAddress::new(addr).with_attribute(Weight(3))`. Attributes are keyed by
/// type, so the resolver and the policy must use this very type. `Weight(0)` takes the
/// backend out of rotation (draining) while keeping its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub u32);

/// `weighted_random`'s parsed JSON config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedRandomConfig {
    /// The weight of an address without a [`Weight`] attribute (`default_weight`, 1 if
    /// not given).
    pub default_weight: u32,
}

impl Default for WeightedRandomConfig {
    fn default() -> Self {
        WeightedRandomConfig { default_weight: 1 }
    }
}

/// What `on_done` saw, per backend address: calls that ended OK and calls that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Calls that ended with OK.
    pub ok: u64,
    /// Calls that ended with any other status.
    pub failed: u64,
}

/// The outcome counts the policy's picks record, shared with whoever wants to read them
/// (a real policy would export metrics or feed the counts back into its weights).
#[derive(Debug, Clone, Default)]
pub struct PickStats(Arc<Mutex<BTreeMap<String, Outcomes>>>);

impl PickStats {
    fn record(&self, address: &str, status: &Status) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(address.to_string()).or_default();
        if status.code() == Code::Ok {
            entry.ok += 1;
        } else {
            entry.failed += 1;
        }
    }

    /// The counts so far, by backend address (`127.0.0.1:PORT`).
    pub fn snapshot(&self) -> BTreeMap<String, Outcomes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the counts so far.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Builds `weighted_random` policies: registered on a channel with
/// `Endpoint::lb_policy`, or process-wide with `grpc_runtime::client::lb::register`.
#[derive(Debug, Clone, Default)]
pub struct WeightedRandomBuilder {
    stats: PickStats,
}

impl WeightedRandomBuilder {
    /// A builder whose policies record call outcomes in `stats`.
    pub fn new(stats: PickStats) -> Self {
        WeightedRandomBuilder { stats }
    }
}

impl LbPolicyBuilder for WeightedRandomBuilder {
    fn name(&self) -> &'static str {
        WEIGHTED_RANDOM
    }

    /// Parses `{"default_weight": N}`. Runs when the channel is built (for the default
    /// service config) and for every service config a resolver sends; an error makes
    /// that service config invalid, so bad values are refused, not guessed at. Unknown
    /// fields are ignored, as gRPC does for forward compatibility.
    fn parse_config(&self, config: &serde_json::Value) -> Result<LbConfig, String> {
        let obj = config
            .as_object()
            .ok_or_else(|| format!("the config must be a JSON object, got {config}"))?;
        let mut parsed = WeightedRandomConfig::default();
        if let Some(v) = obj.get("default_weight") {
            parsed.default_weight = v
                .as_u64()
                .filter(|w| *w >= 1)
                .and_then(|w| u32::try_from(w).ok())
                .ok_or_else(|| {
                    format!(
                        "default_weight must be an integer from 1 to {}, got {v}",
                        u32::MAX
                    )
                })?;
        }
        Ok(LbConfig::new(parsed))
    }

    fn build(&self) -> Box<dyn LbPolicy> {
        Box::new(WeightedRandom {
            config: WeightedRandomConfig::default(),
            backends: Vec::new(),
            stats: self.stats.clone(),
        })
    }
}

/// One policy instance, owned by one channel's control task. Its methods are called one
/// at a time on that task, so it needs no locks; only the picker is shared with calls.
struct WeightedRandom {
    config: WeightedRandomConfig,
    /// One subchannel per address with its current weight, in the resolver's order.
    backends: Vec<(Subchannel, u32)>,
    stats: PickStats,
}

impl WeightedRandom {
    /// Publishes the channel's state and a picker for the current READY set. Called
    /// after anything changed; publishing a new picker is cheap.
    fn publish(&self, cx: &mut dyn ChannelController) {
        // `Subchannel::state` is the subchannel's current state.
        let ready: Vec<(Subchannel, u32)> = self
            .backends
            .iter()
            .filter(|(sc, w)| *w > 0 && sc.state() == ConnectivityState::Ready)
            .cloned()
            .collect();
        if !ready.is_empty() {
            cx.update_picker(
                ConnectivityState::Ready,
                Arc::new(WeightedRandomPicker::new(ready, self.stats.clone())),
            );
            return;
        }
        let trying = self.backends.iter().any(|(sc, _)| {
            matches!(
                sc.state(),
                ConnectivityState::Idle | ConnectivityState::Connecting
            )
        });
        if trying {
            // Calls wait (up to their deadline) for the next picker.
            cx.update_picker(ConnectivityState::Connecting, Arc::new(QueuePicker));
        } else {
            // Calls fail fast with UNAVAILABLE (wait-for-ready calls keep waiting).
            let status = Status::unavailable(match self.backends.is_empty() {
                true => "weighted_random: the resolver returned no addresses",
                false => "weighted_random: no READY backend with a positive weight",
            });
            cx.update_picker(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(status)),
            );
        }
    }
}

impl LbPolicy for WeightedRandom {
    fn resolver_update(
        &mut self,
        update: LbUpdate,
        cx: &mut dyn ChannelController,
    ) -> Result<(), String> {
        // Our config, as `parse_config` returned it.
        self.config = update
            .config
            .get::<WeightedRandomConfig>()
            .copied()
            .unwrap_or_default();
        let old = std::mem::take(&mut self.backends);
        for address in &update.addresses {
            if self.backends.iter().any(|(sc, _)| sc.address() == address) {
                continue; // listed twice: one subchannel is enough
            }
            let weight = address
                .attribute::<Weight>()
                .map_or(self.config.default_weight, |w| w.0);
            // Keep the subchannel (and its connection) of an address we already have.
            // Its weight comes from this update: a subchannel keeps the attributes it was
            // created with, so a changed weight is read here, not from the subchannel.
            let subchannel = match old.iter().find(|(sc, _)| sc.address() == address) {
                Some((sc, _)) => sc.clone(),
                None => {
                    let sc = cx.new_subchannel(address);
                    sc.connect();
                    sc
                }
            };
            self.backends.push((subchannel, weight));
        }
        // Addresses the resolver no longer lists: no new calls; calls on them finish.
        for (sc, _) in &old {
            if !self.backends.iter().any(|(kept, _)| kept == sc) {
                sc.shutdown();
            }
        }
        self.publish(cx);
        if self.backends.is_empty() {
            // Tells the channel to ask the resolver again.
            return Err("weighted_random: the resolver returned no addresses".to_string());
        }
        Ok(())
    }

    fn resolver_error(&mut self, error: String, cx: &mut dyn ChannelController) {
        // With backends, keep using them. Without, fail calls with the resolver's error.
        if self.backends.is_empty() {
            let status =
                Status::unavailable(format!("weighted_random: name resolution failed: {error}"));
            cx.update_picker(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(status)),
            );
        }
    }

    fn subchannel_update(
        &mut self,
        subchannel: &Subchannel,
        state: &SubchannelState,
        cx: &mut dyn ChannelController,
    ) {
        if !self.backends.iter().any(|(sc, _)| sc == subchannel) {
            return; // one we already shut down
        }
        match state.state {
            // The connection was lost (or a failed attempt's backoff is over): reconnect
            // at once, and ask the resolver whether the backend set changed.
            ConnectivityState::Idle => {
                subchannel.connect();
                cx.request_resolution();
            }
            ConnectivityState::TransientFailure => cx.request_resolution(),
            _ => {}
        }
        self.publish(cx);
    }

    /// A call arrived while the policy reported IDLE (this one never does; connect all).
    fn exit_idle(&mut self, _: &mut dyn ChannelController) {
        for (sc, _) in &self.backends {
            sc.connect();
        }
    }
}

/// Picks among READY subchannels at random in proportion to their weights. Runs on
/// every call, so it only reads: a cumulative weight table and a lock-free random source.
struct WeightedRandomPicker {
    /// `(subchannel, running total of weights up to and including it)`.
    cumulative: Vec<(Subchannel, u64)>,
    total: u64,
    rng: SplitMix64,
    stats: PickStats,
}

impl WeightedRandomPicker {
    fn new(ready: Vec<(Subchannel, u32)>, stats: PickStats) -> Self {
        let mut total = 0u64;
        let cumulative = ready
            .into_iter()
            .map(|(sc, w)| {
                total += u64::from(w);
                (sc, total)
            })
            .collect();
        WeightedRandomPicker {
            cumulative,
            total,
            rng: SplitMix64::from_entropy(),
            stats,
        }
    }
}

impl Picker for WeightedRandomPicker {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        // A number in 0..total (the modulo bias is at most total / 2^64: nothing), then
        // the first backend whose running total exceeds it: backend i is chosen with
        // probability weight_i / total.
        let r = self.rng.next() % self.total;
        let Some((sc, _)) = self.cumulative.iter().find(|(_, upto)| r < *upto) else {
            return PickResult::Queue; // unreachable: the last running total is `total`
        };
        // `on_done` hears the call's final status (it runs once the call has ended).
        let (stats, address) = (self.stats.clone(), sc.address().address().to_string());
        PickResult::Pick(
            Pick::new(sc.clone()).on_done(move |status| stats.record(&address, status)),
        )
    }
}

/// SplitMix64: a counter advanced by a constant and run through a mixer. Advancing is a
/// single `fetch_add`, so concurrent picks share it without a lock. Not cryptographic;
/// good enough to spread load (and no dependency needed).
struct SplitMix64(AtomicU64);

impl SplitMix64 {
    /// Seeded from std's per-process random hash keys.
    fn from_entropy() -> Self {
        SplitMix64(AtomicU64::new(
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        ))
    }

    fn next(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .0
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

// ------------------------------------------------------------------ the run

/// The `ipv4:` target listing every backend.
fn ipv4_target(backends: &[Backend]) -> String {
    let addrs: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    format!("ipv4:{}", addrs.join(","))
}

/// Runs the example.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let backends = start_backends(3, out).await?;
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let target = ipv4_target(&backends);

    // pick_first, the default policy: one connection, to the first address that works.
    let channel = Channel::builder(&target).connect().await?;
    let tally = call_n(&EchoClient::new(channel), 10).await?;
    out.line(format!("pick_first: 10 calls -> {tally}"));
    ensure!(
        tally.get("backend-1") == 10,
        "pick_first should send every call to backend-1: {tally}"
    );

    // round_robin, chosen by the channel's default service config (a resolver may send
    // one too, see the name_resolving example). `.load_balancing_policy("round_robin")`
    // is a shorthand for the same.
    let channel = Channel::builder(&target)
        .default_service_config(r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#)
        .connect()
        .await?;
    let client = EchoClient::new(channel);
    until_all_answer(&client, &names).await?;
    let tally = call_n(&client, 30).await?;
    out.line(format!("round_robin: 30 calls -> {tally}"));
    ensure!(
        names.iter().all(|n| tally.get(n) == 10),
        "round_robin should give each backend 10 of 30 calls: {tally}"
    );

    weighted_random(&backends, out).await?;
    stop_backends(backends).await
}

/// The custom policy over the same backends, weights 1:3:6.
async fn weighted_random(backends: &[Backend], out: &Transcript) -> Result<(), BoxError> {
    // The resolver gives each address its weight. backend-1 has none: it gets the
    // config's default_weight (1).
    let weights = [1u32, 3, 6];
    let resolver = ManualResolver::new("weighted");
    resolver.update(ResolverUpdate::new(vec![
        ResolvedAddress::new(backends[0].addr()),
        ResolvedAddress::new(backends[1].addr()).with_attribute(Weight(weights[1])),
        ResolvedAddress::new(backends[2].addr()).with_attribute(Weight(weights[2])),
    ]));
    out.line("weighted_random: resolver weights backend-1: (none, default_weight 1), backend-2: 3, backend-3: 6");

    // A bad config is refused when the channel is built, with the policy's message.
    for bad in [r#"{"default_weight": 0}"#, r#"{"default_weight": "heavy"}"#] {
        let refused = Channel::builder("weighted:///echo")
            .resolver(resolver.clone())
            .lb_policy(WeightedRandomBuilder::default())
            .default_service_config(format!(
                r#"{{"loadBalancingConfig": [{{"{WEIGHTED_RANDOM}": {bad}}}]}}"#
            ))
            .connect_lazy();
        match refused {
            Ok(_) => return Err(format!("config {bad} was accepted").into()),
            Err(e) => out.line(format!("weighted_random: config {bad} refused: {e}")),
        }
    }

    let stats = PickStats::default();
    let channel = Channel::builder("weighted:///echo")
        .resolver(resolver.clone())
        // Known to this channel only; `grpc_runtime::client::lb::register(...)` would make
        // it selectable by every channel in the process.
        .lb_policy(WeightedRandomBuilder::new(stats.clone()))
        .default_service_config(format!(
            r#"{{"loadBalancingConfig": [{{"{WEIGHTED_RANDOM}": {{"default_weight": 1}}}}]}}"#
        ))
        .connect()
        .await?;
    let client = EchoClient::new(channel);
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    until_all_answer(&client, &names).await?;
    stats.clear();

    const CALLS: usize = 1000;
    let tally = call_n(&client, CALLS).await?;
    let total_weight: u32 = weights.iter().sum();
    let mut parts = Vec::new();
    let mut off = Vec::new();
    for (name, weight) in names.iter().zip(weights) {
        // Each call lands on this backend with probability p, independently: the count is
        // binomial, mean n*p, standard deviation sqrt(n*p*(1-p)) (9.5, 14.5 and 15.5 calls
        // here). Six standard deviations is a false alarm less than once in 10^8 runs,
        // while a policy ignoring the weights (about 333 calls each) would be off by 24
        // standard deviations on backend-1 and 17 on backend-3.
        let p = f64::from(weight) / f64::from(total_weight);
        let n = CALLS as f64;
        let (expected, sigma) = (n * p, (n * p * (1.0 - p)).sqrt());
        let got = tally.get(name);
        parts.push(format!(
            "{name}: {got} ({:.1}%, expected {:.0}%)",
            100.0 * got as f64 / n,
            100.0 * p
        ));
        if (got as f64 - expected).abs() > 6.0 * sigma {
            off.push(format!(
                "{name} got {got}, expected {expected:.0} +- {:.0}",
                6.0 * sigma
            ));
        }
    }
    out.line(format!(
        "weighted_random: {CALLS} calls -> {}",
        parts.join(", ")
    ));
    ensure!(
        off.is_empty(),
        "weighted_random strayed from the weights: {}",
        off.join("; ")
    );

    // What the picks' on_done callbacks counted agrees with who answered.
    let by_addr: HashMap<String, &str> = backends
        .iter()
        .map(|b| (b.addr().to_string(), b.name.as_str()))
        .collect();
    let mut done = Tally::default();
    let mut failed = 0;
    for (addr, outcomes) in stats.snapshot() {
        let name = by_addr.get(&addr).copied().unwrap_or("unknown backend");
        done.add_n(name, usize::try_from(outcomes.ok)?);
        failed += outcomes.failed;
    }
    out.line(format!(
        "weighted_random: on_done saw {} OK, {failed} failed ({done})",
        done.total()
    ));
    ensure!(
        done == tally && failed == 0,
        "on_done counted {done} ({failed} failed), the replies say {tally}"
    );
    Ok(())
}
