//! Load balancing: the public LB-policy API (policies, pickers, the controller a policy
//! talks to), the registry of policies by name, and the built-in `pick_first` and
//! `round_robin` policies.
//!
//! The shape is grpc-go's `balancer` package:
//! - The channel's control side owns one [`LbPolicy`] and feeds it resolver updates
//!   ([`LbPolicy::resolver_update`]), resolver errors, and the state changes of the
//!   subchannels it created ([`LbPolicy::subchannel_update`]). All of these run on the
//!   control task, one at a time, so a policy needs no locks.
//! - The policy creates [`Subchannel`]s (one address each) through the
//!   [`ChannelController`], asks them to connect, and publishes a [`Picker`] with the
//!   channel's aggregate [`ConnectivityState`] whenever its view changes.
//! - Calls only read the latest picker: [`Picker::pick`] never blocks and never resolves.
//!   It answers [`PickResult::Pick`] (use this subchannel, optionally with a callback
//!   that sees the call's final status), [`PickResult::Queue`] (wait for the next
//!   picker), [`PickResult::Fail`] (fail the call unless it is wait-for-ready) or
//!   [`PickResult::Drop`] (fail it even if wait-for-ready).
//!
//! A policy is selected by name through the service config's `loadBalancingConfig`
//! (the first entry whose name is registered wins; the default is `pick_first`), which
//! also carries the policy's own JSON config, parsed by [`LbPolicyBuilder::parse_config`].
//!
//! ```
//! use std::sync::Arc;
//! use grpc_runtime::client::lb::{
//!     ChannelController, LbConfig, LbPolicy, LbPolicyBuilder, LbUpdate, Pick, PickInfo, PickResult, Picker,
//! };
//! use grpc_runtime::client::{ConnectivityState, Subchannel, SubchannelState};
//!
//! /// Sends every call to the first address the resolver gave.
//! struct FirstOnly(Option<Subchannel>);
//! struct Always(Subchannel);
//! impl Picker for Always {
//!     fn pick(&self, _: &PickInfo<'_>) -> PickResult {
//!         PickResult::Pick(Pick::new(self.0.clone()))
//!     }
//! }
//! impl LbPolicy for FirstOnly {
//!     fn resolver_update(&mut self, update: LbUpdate, cx: &mut dyn ChannelController) -> Result<(), String> {
//!         let first = update.addresses.first().ok_or("no addresses")?;
//!         let sc = cx.new_subchannel(first);
//!         sc.connect();
//!         self.0 = Some(sc);
//!         Ok(())
//!     }
//!     fn resolver_error(&mut self, _: String, _: &mut dyn ChannelController) {}
//!     fn subchannel_update(&mut self, sc: &Subchannel, state: &SubchannelState, cx: &mut dyn ChannelController) {
//!         match state.state {
//!             ConnectivityState::Ready => cx.update_picker(ConnectivityState::Ready, Arc::new(Always(sc.clone()))),
//!             ConnectivityState::Idle => sc.connect(),
//!             _ => {}
//!         }
//!     }
//!     fn exit_idle(&mut self, _: &mut dyn ChannelController) {}
//! }
//! struct FirstOnlyBuilder;
//! impl LbPolicyBuilder for FirstOnlyBuilder {
//!     fn name(&self) -> &'static str {
//!         "first_only"
//!     }
//!     fn build(&self) -> Box<dyn LbPolicy> {
//!         Box::new(FirstOnly(None))
//!     }
//! }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = grpc_runtime::Channel::builder("ipv4:127.0.0.1:50051,127.0.0.1:50052")
//!     .lb_policy(FirstOnlyBuilder)
//!     .default_service_config(r#"{"loadBalancingConfig": [{"first_only": {}}]}"#)
//!     .connect_lazy()?;
//! # let _ = channel; Ok(()) }
//! ```

mod pick_first;
mod round_robin;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

pub use pick_first::{PickFirstBuilder, PickFirstConfig};
pub use round_robin::RoundRobinBuilder;

use super::connectivity::ConnectivityState;
use super::resolver::ResolvedAddress;
use super::service_config::ServiceConfig;
use super::subchannel::{Subchannel, SubchannelState};
use crate::metadata::MetadataMap;
use crate::status::Status;

/// What a picker knows about the call it picks for.
#[derive(Debug)]
pub struct PickInfo<'a> {
    /// The method path, `/package.Service/Method`.
    pub method: &'a str,
    /// The call's request metadata (after interceptors).
    pub metadata: &'a MetadataMap,
}

/// Called once with the final status of a call that a [`Pick`] sent to a subchannel.
pub type OnDone = Box<dyn FnOnce(&Status) + Send + 'static>;

/// A picked subchannel.
pub struct Pick {
    /// Where the call goes.
    pub subchannel: Subchannel,
    /// Told the call's final status (for load reports, outstanding-request counts).
    pub on_done: Option<OnDone>,
}

impl Pick {
    /// A pick without a callback.
    pub fn new(subchannel: Subchannel) -> Self {
        Pick {
            subchannel,
            on_done: None,
        }
    }

    /// Adds the callback that sees the call's final status.
    pub fn on_done(mut self, f: impl FnOnce(&Status) + Send + 'static) -> Self {
        self.on_done = Some(Box::new(f));
        self
    }
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("subchannel", &self.subchannel)
            .field("on_done", &self.on_done.is_some())
            .finish()
    }
}

/// A picker's answer for one call.
#[derive(Debug)]
pub enum PickResult {
    /// Send the call to this subchannel (it must be READY when picked; a subchannel that
    /// lost its connection since makes the call wait for the next picker).
    Pick(Pick),
    /// Wait for the next picker (bounded by the call's deadline).
    Queue,
    /// Fail the call with this status, unless it is wait-for-ready (then it waits).
    Fail(Status),
    /// Fail the call with this status even if it is wait-for-ready.
    Drop(Status),
}

/// Picks a subchannel per call. Published by the policy with the channel's state; must
/// be cheap and must not block (it runs on every call).
pub trait Picker: Send + Sync + 'static {
    /// Picks for one call.
    fn pick(&self, info: &PickInfo<'_>) -> PickResult;
}

/// A picker that queues every call (while connecting).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        PickResult::Queue
    }
}

/// A picker that fails every call with one status (TRANSIENT_FAILURE).
#[derive(Debug, Clone)]
pub struct FailPicker(pub Status);

impl Picker for FailPicker {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        PickResult::Fail(self.0.clone())
    }
}

/// A policy's parsed JSON config (from `loadBalancingConfig`): whatever type its builder
/// chose, read back with [`LbConfig::get`].
#[derive(Clone, Default)]
pub struct LbConfig(Option<Arc<dyn Any + Send + Sync>>);

impl LbConfig {
    /// Wraps a parsed config.
    pub fn new<T: Any + Send + Sync>(config: T) -> Self {
        LbConfig(Some(Arc::new(config)))
    }

    /// The parsed config, if it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.as_ref()?.downcast_ref()
    }
}

impl fmt::Debug for LbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "LbConfig(..)"
        } else {
            "LbConfig(none)"
        })
    }
}

/// A resolver update as the policy sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LbUpdate {
    /// The backends, in the resolver's order.
    pub addresses: Vec<ResolvedAddress>,
    /// This policy's config from the service config (default when none was given).
    pub config: LbConfig,
    /// The whole service config in force.
    pub service_config: ServiceConfig,
}

/// What a policy can do to its channel. Implemented by the channel's control side.
pub trait ChannelController {
    /// Creates a subchannel for one address. It starts IDLE; call
    /// [`Subchannel::connect`]. Dropping every clone of it (the policy's and the
    /// published pickers') releases its connection once in-flight calls finish.
    fn new_subchannel(&mut self, address: &ResolvedAddress) -> Subchannel;
    /// Like [`ChannelController::new_subchannel`], with client-side health checking
    /// (gRFC A17) when the service config has `healthCheckConfig.serviceName`: the
    /// subchannel reports READY only while the backend's `grpc.health.v1.Health/Watch`
    /// says SERVING (a server without the health service counts as serving). grpc-go's
    /// round_robin uses it; pick_first does not.
    fn new_health_checked_subchannel(&mut self, address: &ResolvedAddress) -> Subchannel {
        self.new_subchannel(address)
    }
    /// Publishes the channel's state and the picker calls use from now on.
    fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>);
    /// Asks the resolver to resolve again (a hint; DNS rate-limits it).
    fn request_resolution(&mut self);
}

/// A load-balancing policy instance, owned by one channel's control side.
pub trait LbPolicy: Send + 'static {
    /// New addresses (and config) from the resolver. An `Err` (e.g. an empty address
    /// list the policy cannot use) makes the channel ask for re-resolution.
    fn resolver_update(
        &mut self,
        update: LbUpdate,
        cx: &mut dyn ChannelController,
    ) -> Result<(), String>;
    /// The resolver failed. A policy with working backends usually keeps them; one
    /// without should publish a failing picker with the error.
    fn resolver_error(&mut self, error: String, cx: &mut dyn ChannelController);
    /// A subchannel this policy created changed state.
    fn subchannel_update(
        &mut self,
        subchannel: &Subchannel,
        state: &SubchannelState,
        cx: &mut dyn ChannelController,
    );
    /// A call arrived while the policy reported IDLE: start connecting.
    fn exit_idle(&mut self, cx: &mut dyn ChannelController);
}

/// Builds one kind of policy; registered by name.
pub trait LbPolicyBuilder: Send + Sync + 'static {
    /// The name the service config selects it by (`round_robin`, `weighted_random`).
    fn name(&self) -> &'static str;
    /// Parses the policy's JSON config from `loadBalancingConfig`. An error makes the
    /// whole service config invalid. The default accepts anything and keeps nothing.
    fn parse_config(&self, config: &serde_json::Value) -> Result<LbConfig, String> {
        let _ = config;
        Ok(LbConfig::default())
    }
    /// A new policy instance for one channel.
    fn build(&self) -> Box<dyn LbPolicy>;
}

type Registry = RwLock<HashMap<&'static str, Arc<dyn LbPolicyBuilder>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut m: HashMap<&'static str, Arc<dyn LbPolicyBuilder>> = HashMap::new();
        m.insert("pick_first", Arc::new(PickFirstBuilder));
        m.insert("round_robin", Arc::new(RoundRobinBuilder));
        RwLock::new(m)
    })
}

/// Registers `builder` under its name, process-wide (replacing an earlier one).
pub fn register(builder: impl LbPolicyBuilder) {
    let b: Arc<dyn LbPolicyBuilder> = Arc::new(builder);
    if let Ok(mut m) = registry().write() {
        m.insert(b.name(), b);
    }
}

/// The builder registered under `name`, if any.
pub fn lookup(name: &str) -> Option<Arc<dyn LbPolicyBuilder>> {
    registry().read().ok()?.get(name).cloned()
}

/// A controller that records what a policy does, for policy unit tests: subchannels it
/// creates never connect; states are fed to the policy by hand.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::client::subchannel::SubchannelState;

    #[derive(Default)]
    pub(crate) struct TestCx {
        pub(crate) created: Vec<Subchannel>,
        pub(crate) pickers: Vec<(ConnectivityState, Arc<dyn Picker>)>,
        pub(crate) resolutions: usize,
    }

    impl ChannelController for TestCx {
        fn new_subchannel(&mut self, address: &ResolvedAddress) -> Subchannel {
            let sc = Subchannel::for_test(address);
            self.created.push(sc.clone());
            sc
        }
        fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
            self.pickers.push((state, picker));
        }
        fn request_resolution(&mut self) {
            self.resolutions += 1;
        }
    }

    impl TestCx {
        /// The last published state.
        pub(crate) fn state(&self) -> Option<ConnectivityState> {
            self.pickers.last().map(|(s, _)| *s)
        }
        /// What the last picker answers, as the picked subchannel's port, or an error
        /// code, or "queue".
        pub(crate) fn pick(&self) -> String {
            let md = MetadataMap::new();
            let Some((_, p)) = self.pickers.last() else {
                return "none".into();
            };
            match p.pick(&PickInfo {
                method: "/s/m",
                metadata: &md,
            }) {
                PickResult::Pick(p) => match p.subchannel.address().address() {
                    crate::transport::Address::Tcp(a) => a.port().to_string(),
                    #[allow(unreachable_patterns)]
                    other => other.to_string(),
                },
                PickResult::Queue => "queue".into(),
                PickResult::Fail(s) => format!("fail {:?}", s.code()),
                PickResult::Drop(s) => format!("drop {:?}", s.code()),
            }
        }
        /// The created subchannel for `port` (the latest one).
        pub(crate) fn sc(&self, port: u16) -> Subchannel {
            self.created
                .iter()
                .rev()
                .find(|s| matches!(s.address().address(), crate::transport::Address::Tcp(a) if a.port() == port))
                .cloned()
                .expect("a subchannel for that port")
        }
    }

    pub(crate) fn addr(port: u16) -> ResolvedAddress {
        ResolvedAddress::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub(crate) fn update(ports: &[u16], config: LbConfig) -> LbUpdate {
        LbUpdate {
            addresses: ports.iter().map(|p| addr(*p)).collect(),
            config,
            service_config: ServiceConfig::empty(),
        }
    }

    pub(crate) fn st(state: ConnectivityState) -> SubchannelState {
        let error = (state == ConnectivityState::TransientFailure).then(|| {
            crate::transport::TransportError::new(
                crate::transport::TransportErrorKind::Connect,
                "refused",
            )
        });
        SubchannelState { state, error }
    }
}

/// Channel-local policies first, then the process-wide registry.
#[derive(Clone, Default)]
pub(crate) struct PolicySet {
    local: Vec<Arc<dyn LbPolicyBuilder>>,
}

impl PolicySet {
    pub(crate) fn add(&mut self, b: Arc<dyn LbPolicyBuilder>) {
        self.local.retain(|l| l.name() != b.name());
        self.local.push(b);
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn LbPolicyBuilder>> {
        self.local
            .iter()
            .find(|b| b.name() == name)
            .cloned()
            .or_else(|| lookup(name))
    }

    /// The policy the service config selects (first registered name wins) with its
    /// parsed config; `pick_first` with its default config when none is selected.
    pub(crate) fn select(
        &self,
        sc: &ServiceConfig,
    ) -> Result<(Arc<dyn LbPolicyBuilder>, LbConfig), String> {
        match sc.select_lb(|name| self.get(name).is_some()) {
            Some((name, json)) => {
                let b = self
                    .get(name)
                    .ok_or_else(|| format!("LB policy {name:?} is not registered"))?;
                let cfg = b
                    .parse_config(json)
                    .map_err(|e| format!("loadBalancingConfig {name}: {e}"))?;
                Ok((b, cfg))
            }
            None if !sc.lb_configs().is_empty() => Err(format!(
                "no supported policy in loadBalancingConfig ({})",
                sc.lb_configs()
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => {
                let b = self
                    .get("pick_first")
                    .ok_or("pick_first is not registered")?;
                let cfg = b.parse_config(&serde_json::Value::Object(Default::default()))?;
                Ok((b, cfg))
            }
        }
    }
}
