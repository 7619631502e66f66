//! Name resolution: the public resolver API, the registry of resolvers by URI scheme,
//! and the built-in resolvers (`dns`, `ipv4`, `ipv6`, `unix`, `unix-abstract`,
//! `passthrough`, and [`ManualResolver`] for tests and custom discovery).
//!
//! A channel target is parsed per the gRPC naming doc as `scheme://authority/endpoint`
//! (or `scheme:endpoint`); the [`ResolverBuilder`] registered for the scheme builds one
//! [`Resolver`] per channel. The resolver *pushes* what it learns through its
//! [`ResolverSink`] whenever it learns it: addresses (each with [`Attributes`]),
//! optionally a service config (JSON), or an error. The channel calls
//! [`Resolver::resolve_now`] as a hint when its LB policy asks for re-resolution (a
//! connection was lost, every backend failing); a resolver may rate-limit it. Nothing
//! here runs on the call path: calls only read the picker the LB policy published.
//!
//! Plugging in a discovery system (Consul, etcd, Kubernetes endpoints) means writing a
//! builder whose resolver watches the system and calls [`ResolverSink::update`] on every
//! change, then registering it with [`register`] (process-wide) or
//! [`crate::Endpoint::resolver`] (one channel), as grpc-go's `resolver.Register` and
//! `WithResolvers`:
//!
//! ```
//! use grpc_runtime::client::resolver::{
//!     Resolver, ResolverBuilder, ResolverOptions, ResolverSink, ResolverTarget, ResolverUpdate, ResolvedAddress,
//! };
//!
//! /// `fixed:///a` always resolves to 127.0.0.1:50051.
//! struct Fixed;
//! struct FixedResolver;
//! impl Resolver for FixedResolver {
//!     fn resolve_now(&mut self) {}
//! }
//! impl ResolverBuilder for Fixed {
//!     fn scheme(&self) -> &str {
//!         "fixed"
//!     }
//!     fn build(
//!         &self,
//!         _target: &ResolverTarget,
//!         sink: ResolverSink,
//!         _options: &ResolverOptions,
//!     ) -> Result<Box<dyn Resolver>, String> {
//!         let addr: std::net::SocketAddr = "127.0.0.1:50051".parse().map_err(|e| format!("{e}"))?;
//!         sink.update(ResolverUpdate::new(vec![ResolvedAddress::new(addr)]));
//!         Ok(Box::new(FixedResolver))
//!     }
//! }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = grpc_runtime::Channel::builder("fixed:///a").resolver(Fixed).connect_lazy()?;
//! # let _ = channel; Ok(()) }
//! ```

mod dns;
mod manual;
mod static_addrs;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

pub use dns::{DnsResolverBuilder, DEFAULT_DNS_MIN_RESOLUTION_INTERVAL};
pub use manual::ManualResolver;
pub use static_addrs::{PassthroughResolverBuilder, StaticResolverBuilder};

use super::control::{ControlEvent, ControlSender};
use crate::transport::Address;

/// A channel target split per the gRPC naming doc: `scheme://authority/endpoint`.
///
/// `dns:///foo:50051` has scheme `dns`, an empty authority and endpoint `foo:50051`;
/// `unix:/tmp/s` (no `//`) has scheme `unix` and endpoint `/tmp/s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverTarget {
    scheme: String,
    authority: String,
    endpoint: String,
    original: String,
}

impl ResolverTarget {
    /// Splits `text` into scheme, authority and endpoint; `None` when it has no
    /// `scheme:` prefix (a bare `host:port` is not a URI; the channel treats it as
    /// `dns:///host:port`).
    pub fn parse(text: &str) -> Option<ResolverTarget> {
        let (scheme, rest) = text.split_once(':')?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
            return None;
        }
        let (authority, endpoint) = match rest.strip_prefix("//") {
            Some(after) => match after.split_once('/') {
                Some((a, e)) => (a.to_string(), e.to_string()),
                None => (after.to_string(), String::new()),
            },
            None => (String::new(), rest.to_string()),
        };
        Some(ResolverTarget {
            scheme: scheme.to_ascii_lowercase(),
            authority,
            endpoint,
            original: text.to_string(),
        })
    }

    /// A target with the given parts (`original` is rebuilt from them).
    pub fn new(
        scheme: impl Into<String>,
        authority: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        let (scheme, authority, endpoint) = (scheme.into(), authority.into(), endpoint.into());
        let original = format!("{scheme}://{authority}/{endpoint}");
        ResolverTarget {
            scheme,
            authority,
            endpoint,
            original,
        }
    }

    /// The URI scheme, lowercased (`dns`, `ipv4`, `unix`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The authority between `//` and the next `/` (often empty). For `dns` it names a
    /// DNS server, which this crate does not support.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// What the resolver resolves: `host:port`, a socket path, an address list.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The target as the user wrote it.
    pub fn original(&self) -> &str {
        &self.original
    }
}

impl fmt::Display for ResolverTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// Typed attributes a resolver attaches to an address (a weight, a zone, a locality),
/// for the LB policy to read. Keyed by type, like `http::Extensions`.
#[derive(Clone, Default)]
pub struct Attributes {
    map: Option<Arc<HashMap<std::any::TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Attributes {
    /// Empty attributes.
    pub fn new() -> Self {
        Attributes::default()
    }

    /// Adds (or replaces) the attribute of type `T`.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        let map = Arc::make_mut(self.map.get_or_insert_with(Default::default));
        map.insert(std::any::TypeId::of::<T>(), Arc::new(value));
    }

    /// The attribute of type `T`, if set.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.map
            .as_ref()?
            .get(&std::any::TypeId::of::<T>())?
            .downcast_ref()
    }

    /// Whether no attribute is set.
    pub fn is_empty(&self) -> bool {
        self.map.as_ref().map_or(true, |m| m.is_empty())
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Attributes({})",
            self.map.as_ref().map_or(0, |m| m.len())
        )
    }
}

/// One address a resolver found, with its attributes.
#[derive(Clone, Debug)]
pub struct ResolvedAddress {
    address: Address,
    attributes: Attributes,
}

impl ResolvedAddress {
    /// An address without attributes.
    pub fn new(address: impl Into<Address>) -> Self {
        ResolvedAddress {
            address: address.into(),
            attributes: Attributes::new(),
        }
    }

    /// Adds the attribute of type `T` (builder style). A subchannel keeps the attributes
    /// of the address it was created for: a policy that must see an attribute change for
    /// the same address (a new weight) compares the resolver's updates itself.
    pub fn with_attribute<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.attributes.insert(value);
        self
    }

    /// The network address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The attributes.
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The attribute of type `T`, if set.
    pub fn attribute<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.attributes.get()
    }
}

impl PartialEq for ResolvedAddress {
    /// Two resolved addresses are the same backend when their network addresses are.
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
    }
}

/// What a resolver pushes: the addresses (or why there are none) and optionally a
/// service config in its JSON form.
#[derive(Clone, Debug)]
pub struct ResolverUpdate {
    pub(crate) addresses: Result<Vec<ResolvedAddress>, String>,
    pub(crate) service_config: Option<String>,
}

impl ResolverUpdate {
    /// The backends are `addresses` (in the resolver's order of preference).
    pub fn new(addresses: Vec<ResolvedAddress>) -> Self {
        ResolverUpdate {
            addresses: Ok(addresses),
            service_config: None,
        }
    }

    /// Resolution failed: the channel keeps using the addresses it has (if any) and the
    /// LB policy decides (a channel with none fails calls with UNAVAILABLE and `error`).
    pub fn error(error: impl Into<String>) -> Self {
        ResolverUpdate {
            addresses: Err(error.into()),
            service_config: None,
        }
    }

    /// Attaches a service config (gRFC A2 JSON). An invalid one is logged and the
    /// channel keeps its previous config.
    pub fn with_service_config(mut self, json: impl Into<String>) -> Self {
        self.service_config = Some(json.into());
        self
    }

    /// The addresses, or the resolution error.
    pub fn addresses(&self) -> Result<&[ResolvedAddress], &str> {
        match &self.addresses {
            Ok(a) => Ok(a),
            Err(e) => Err(e),
        }
    }
}

/// Where a resolver pushes its updates; cheap to clone and to keep in a resolver's own
/// task. It does not keep the channel alive: once the channel is gone (or has replaced
/// this resolver), [`ResolverSink::update`] returns `false` and the resolver can stop.
#[derive(Clone)]
pub struct ResolverSink {
    pub(crate) events: ControlSender,
    pub(crate) generation: u64,
}

impl fmt::Debug for ResolverSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverSink")
            .field("generation", &self.generation)
            .finish()
    }
}

impl ResolverSink {
    /// Pushes an update; `false` when the channel no longer listens.
    pub fn update(&self, update: ResolverUpdate) -> bool {
        self.events.send(ControlEvent::Resolved {
            generation: self.generation,
            update,
        })
    }

    /// Pushes a resolution error (same as `update(ResolverUpdate::error(e))`).
    pub fn error(&self, error: impl Into<String>) -> bool {
        self.update(ResolverUpdate::error(error))
    }

    /// Whether the channel still listens to this sink.
    pub fn is_live(&self) -> bool {
        self.events.is_live(self.generation)
    }
}

/// Channel settings a resolver may use.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolverOptions {
    /// Minimum time between two resolutions triggered by [`Resolver::resolve_now`]
    /// (DNS: 30 s by default, as grpc-go).
    pub min_resolution_interval: Duration,
    /// Backoff between retries after failed resolutions.
    pub backoff: crate::transport::BackoffConfig,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        ResolverOptions {
            min_resolution_interval: DEFAULT_DNS_MIN_RESOLUTION_INTERVAL,
            backoff: crate::transport::BackoffConfig::default(),
        }
    }
}

/// One channel's resolver. Dropping it stops it (the channel drops it on shutdown and
/// when it goes idle).
pub trait Resolver: Send + 'static {
    /// A hint to resolve again soon (a connection was lost, every backend is failing).
    /// It may be ignored or rate-limited; it must not block.
    fn resolve_now(&mut self);
}

/// Builds resolvers for one URI scheme.
pub trait ResolverBuilder: Send + Sync + 'static {
    /// The scheme this builder serves (`dns`, `consul`, ...), lowercase.
    fn scheme(&self) -> &str;

    /// Builds the resolver of one channel. It pushes its first update through `sink`
    /// when it has one (possibly from inside `build`). Runs on the channel's control task,
    /// inside the tokio runtime, so it may `tokio::spawn` the resolver's own task. An
    /// `Err` makes the channel fail its calls with UNAVAILABLE and that message (call
    /// [`ResolverBuilder::validate`] to refuse a bad target when the channel is built).
    fn build(
        &self,
        target: &ResolverTarget,
        sink: ResolverSink,
        options: &ResolverOptions,
    ) -> Result<Box<dyn Resolver>, String>;

    /// The `:authority` calls carry by default (and the TLS server name's source):
    /// the endpoint unless the builder knows better.
    fn default_authority(&self, target: &ResolverTarget) -> String {
        target.endpoint().to_string()
    }

    /// Checks the target when the channel is built, so a malformed one is an error
    /// then rather than at the first call.
    fn validate(&self, target: &ResolverTarget) -> Result<(), String> {
        let _ = target;
        Ok(())
    }
}

type Registry = RwLock<HashMap<String, Arc<dyn ResolverBuilder>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut m: HashMap<String, Arc<dyn ResolverBuilder>> = HashMap::new();
        let builtins: [Arc<dyn ResolverBuilder>; 6] = [
            Arc::new(DnsResolverBuilder::new()),
            Arc::new(StaticResolverBuilder::ipv4()),
            Arc::new(StaticResolverBuilder::ipv6()),
            Arc::new(StaticResolverBuilder::unix()),
            Arc::new(StaticResolverBuilder::unix_abstract()),
            Arc::new(PassthroughResolverBuilder),
        ];
        for b in builtins {
            m.insert(b.scheme().to_string(), b);
        }
        RwLock::new(m)
    })
}

/// Registers `builder` for its scheme, process-wide (replacing any earlier one, the
/// built-ins included). Channels built afterwards use it for targets of that scheme.
pub fn register(builder: impl ResolverBuilder) {
    let b: Arc<dyn ResolverBuilder> = Arc::new(builder);
    if let Ok(mut m) = registry().write() {
        m.insert(b.scheme().to_ascii_lowercase(), b);
    }
}

/// The builder registered for `scheme`, if any.
pub fn lookup(scheme: &str) -> Option<Arc<dyn ResolverBuilder>> {
    registry()
        .read()
        .ok()?
        .get(&scheme.to_ascii_lowercase())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets_per_the_naming_doc() {
        let t = ResolverTarget::parse("dns:///foo.googleapis.com:8080").unwrap();
        assert_eq!(
            (t.scheme(), t.authority(), t.endpoint()),
            ("dns", "", "foo.googleapis.com:8080")
        );
        let t = ResolverTarget::parse("dns://8.8.8.8/foo:1").unwrap();
        assert_eq!(
            (t.scheme(), t.authority(), t.endpoint()),
            ("dns", "8.8.8.8", "foo:1")
        );
        let t = ResolverTarget::parse("unix:relative/sock").unwrap();
        assert_eq!(
            (t.scheme(), t.authority(), t.endpoint()),
            ("unix", "", "relative/sock")
        );
        let t = ResolverTarget::parse("unix:///abs/sock").unwrap();
        assert_eq!(t.endpoint(), "abs/sock");
        let t = ResolverTarget::parse("ipv4:1.2.3.4:5,6.7.8.9:10").unwrap();
        assert_eq!(t.endpoint(), "1.2.3.4:5,6.7.8.9:10");
        assert!(ResolverTarget::parse("localhost").is_none());
        assert!(ResolverTarget::parse("1host:80").is_none());
        // `localhost:50051` splits as scheme "localhost"; the channel only treats it as a
        // scheme when a resolver is registered for it.
        assert_eq!(
            ResolverTarget::parse("localhost:50051").unwrap().scheme(),
            "localhost"
        );
    }

    #[test]
    fn attributes_by_type() {
        #[derive(Debug, PartialEq)]
        struct Weight(u32);
        let a = ResolvedAddress::new("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap())
            .with_attribute(Weight(3));
        assert_eq!(a.attribute::<Weight>(), Some(&Weight(3)));
        assert_eq!(a.attribute::<u8>(), None);
        let b = a.clone().with_attribute(Weight(4));
        assert_eq!(
            a.attribute::<Weight>(),
            Some(&Weight(3)),
            "clones do not share writes"
        );
        assert_eq!(b.attribute::<Weight>(), Some(&Weight(4)));
    }
}
