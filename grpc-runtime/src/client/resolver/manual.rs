//! [`ManualResolver`]: a resolver whose updates the application pushes by hand, for
//! tests and for discovery systems that already deliver change events (grpc-go's
//! `resolver/manual`).

use std::sync::{Arc, Mutex};

use super::{
    Resolver, ResolverBuilder, ResolverOptions, ResolverSink, ResolverTarget, ResolverUpdate,
};

/// A resolver builder and handle in one: give a clone to the channel builder
/// ([`crate::Endpoint::resolver`]) and call [`ManualResolver::update`] whenever the
/// backend set changes; every channel built with it sees the update (a channel built
/// later starts from the last one).
///
/// ```
/// use grpc_runtime::client::resolver::{ManualResolver, ResolvedAddress, ResolverUpdate};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backends = ManualResolver::new("static");
/// let channel = grpc_runtime::Channel::builder("static:///my-service").resolver(backends.clone()).connect_lazy()?;
/// backends.update(ResolverUpdate::new(vec![ResolvedAddress::new("127.0.0.1:50051".parse::<std::net::SocketAddr>()?)]));
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ManualResolver {
    scheme: String,
    inner: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    last: Option<ResolverUpdate>,
    sinks: Vec<ResolverSink>,
    resolve_now_calls: usize,
}

impl std::fmt::Debug for ManualResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualResolver")
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl ManualResolver {
    /// A manual resolver serving targets of `scheme`.
    pub fn new(scheme: impl Into<String>) -> Self {
        ManualResolver {
            scheme: scheme.into().to_ascii_lowercase(),
            inner: Arc::default(),
        }
    }

    /// Pushes `update` to every channel using this resolver and remembers it for channels
    /// (or resolver rebuilds after idleness) to come.
    pub fn update(&self, update: ResolverUpdate) {
        if let Ok(mut s) = self.inner.lock() {
            s.sinks.retain(|sink| sink.is_live());
            for sink in &s.sinks {
                sink.update(update.clone());
            }
            s.last = Some(update);
        }
    }

    /// How many times channels asked for re-resolution.
    pub fn resolve_now_calls(&self) -> usize {
        self.inner.lock().map(|s| s.resolve_now_calls).unwrap_or(0)
    }
}

struct Handle {
    inner: Arc<Mutex<Shared>>,
}

impl Resolver for Handle {
    fn resolve_now(&mut self) {
        if let Ok(mut s) = self.inner.lock() {
            s.resolve_now_calls += 1;
        }
    }
}

impl ResolverBuilder for ManualResolver {
    fn scheme(&self) -> &str {
        &self.scheme
    }

    fn build(
        &self,
        _: &ResolverTarget,
        sink: ResolverSink,
        _: &ResolverOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        let mut s = self
            .inner
            .lock()
            .map_err(|_| "manual resolver poisoned".to_string())?;
        if let Some(last) = &s.last {
            sink.update(last.clone());
        }
        s.sinks.retain(|sink| sink.is_live());
        s.sinks.push(sink);
        Ok(Box::new(Handle {
            inner: Arc::clone(&self.inner),
        }))
    }
}
