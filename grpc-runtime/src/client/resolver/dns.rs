//! The `dns` resolver: looks a host name up with the system resolver (or a lookup
//! function given to [`DnsResolverBuilder::with_lookup`]) in its own task, pushes the
//! addresses, and resolves again only when the channel asks ([`Resolver::resolve_now`]),
//! at most once per minimum interval (30 s by default, as grpc-go). A failed lookup is
//! retried with exponential backoff. Never on the call path. Service configs in DNS TXT
//! records are not looked up (grpc-go disables that by default too).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

use super::static_addrs::DEFAULT_PORT;
use super::{
    ResolvedAddress, Resolver, ResolverBuilder, ResolverOptions, ResolverSink, ResolverTarget,
    ResolverUpdate,
};
use crate::transport::Backoff;

/// grpc-go's minimum time between two DNS resolutions.
pub const DEFAULT_DNS_MIN_RESOLUTION_INTERVAL: Duration = Duration::from_secs(30);

/// The future a custom lookup function returns.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;
type LookupFn = Arc<dyn Fn(&str, u16) -> LookupFuture + Send + Sync>;

/// Builds `dns` resolvers (the default for targets without a scheme).
#[derive(Clone)]
pub struct DnsResolverBuilder {
    lookup: LookupFn,
}

impl std::fmt::Debug for DnsResolverBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsResolverBuilder")
    }
}

impl Default for DnsResolverBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DnsResolverBuilder {
    /// Lookups through the system resolver (`getaddrinfo`, via `tokio::net::lookup_host`).
    pub fn new() -> Self {
        DnsResolverBuilder {
            lookup: Arc::new(|host, port| {
                let host = host.to_string();
                Box::pin(async move {
                    tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map(|it| it.collect())
                })
            }),
        }
    }

    /// Lookups through `lookup(host, port)` instead (another DNS client, or a test).
    pub fn with_lookup(lookup: impl Fn(&str, u16) -> LookupFuture + Send + Sync + 'static) -> Self {
        DnsResolverBuilder {
            lookup: Arc::new(lookup),
        }
    }
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port`; the port defaults to 443.
pub(crate) fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("{s:?} is not host[:port]");
    if s.is_empty() {
        return Err("empty host".to_string());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?,
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && !h.is_empty() => {
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        }
        Some(_) if s.parse::<std::net::Ipv6Addr>().is_ok() => Ok((s.to_string(), DEFAULT_PORT)),
        Some(_) => Err(bad()),
        None if s.contains('/') => Err(bad()),
        None => Ok((s.to_string(), DEFAULT_PORT)),
    }
}

/// Re-resolution requests: a flag (requests coalesce) and a wakeup.
#[derive(Default)]
struct Wake {
    requested: std::sync::atomic::AtomicBool,
    notify: Notify,
}

struct DnsResolver {
    wake: Arc<Wake>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Resolver for DnsResolver {
    fn resolve_now(&mut self) {
        self.wake
            .requested
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify.notify_one();
    }
}

impl ResolverBuilder for DnsResolverBuilder {
    fn scheme(&self) -> &str {
        "dns"
    }

    fn build(
        &self,
        target: &ResolverTarget,
        sink: ResolverSink,
        options: &ResolverOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        self.validate(target)?;
        let (host, port) = split_host_port(target.endpoint())?;
        let wake = Arc::new(Wake::default());
        let task = tokio::spawn(run(
            Arc::clone(&self.lookup),
            host,
            port,
            sink,
            Arc::clone(&wake),
            options.min_resolution_interval,
            Backoff::new(options.backoff),
        ));
        Ok(Box::new(DnsResolver { wake, task }))
    }

    fn validate(&self, target: &ResolverTarget) -> Result<(), String> {
        if !target.authority().is_empty() {
            return Err(format!(
                "{target}: a DNS server authority ({:?}) is not supported; use dns:///host:port \
                 (the system resolver) or register a resolver that queries that server",
                target.authority()
            ));
        }
        split_host_port(target.endpoint()).map(|_| ())
    }
}

async fn run(
    lookup: LookupFn,
    host: String,
    port: u16,
    sink: ResolverSink,
    wake: Arc<Wake>,
    min_interval: Duration,
    mut backoff: Backoff,
) {
    loop {
        let started = Instant::now();
        let result = lookup(&host, port).await;
        let mut addrs: Vec<ResolvedAddress> = Vec::new();
        let update = match result {
            Ok(found) => {
                for sa in found {
                    let a = ResolvedAddress::new(sa);
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                if addrs.is_empty() {
                    ResolverUpdate::error(format!("{host} resolved to no addresses"))
                } else {
                    ResolverUpdate::new(addrs)
                }
            }
            Err(e) => ResolverUpdate::error(format!("resolving {host}: {e}")),
        };
        let failed = update.addresses.is_err();
        debug!(host = %host, update = ?update.addresses, "dns resolution");
        if !sink.update(update) || !sink.is_live() {
            return;
        }
        if failed {
            // Retry on our own after a backoff (a resolve_now meanwhile changes nothing).
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        }
        backoff.reset();
        // Wait for the channel to ask, then keep the minimum interval since this lookup;
        // requests made meanwhile are served by the one lookup that follows.
        while !wake.requested.load(std::sync::atomic::Ordering::Acquire) {
            wake.notify.notified().await;
        }
        tokio::time::sleep_until(started + min_interval).await;
        wake.requested
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::control::test_sink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("foo:80").unwrap(), ("foo".to_string(), 80));
        assert_eq!(split_host_port("foo").unwrap(), ("foo".to_string(), 443));
        assert_eq!(split_host_port("[::1]:5").unwrap(), ("::1".to_string(), 5));
        assert_eq!(split_host_port("[::1]").unwrap(), ("::1".to_string(), 443));
        assert_eq!(split_host_port("::1").unwrap(), ("::1".to_string(), 443));
        assert!(split_host_port("foo:x").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("").is_err());
        assert!(split_host_port("a/b").is_err());
    }

    #[test]
    fn authority_is_rejected_clearly() {
        let b = DnsResolverBuilder::new();
        let e = b
            .validate(&ResolverTarget::parse("dns://8.8.8.8/foo:1").unwrap())
            .unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(b
            .validate(&ResolverTarget::parse("dns:///foo:1").unwrap())
            .is_ok());
    }

    /// A lookup that counts calls and fails the first `fail_first` of them.
    fn counting(fail_first: usize) -> (DnsResolverBuilder, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&n);
        let b = DnsResolverBuilder::with_lookup(move |_, port| {
            let i = seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if i < fail_first {
                    Err(io::Error::other("no such host"))
                } else {
                    Ok(vec![
                        SocketAddr::from(([127, 0, 0, 1], port)),
                        SocketAddr::from(([127, 0, 0, 1], port)),
                    ])
                }
            })
        });
        (b, n)
    }

    #[tokio::test(start_paused = true)]
    async fn resolve_now_is_rate_limited() {
        let (b, n) = counting(0);
        let (sink, mut rx) = test_sink();
        let mut r = b
            .build(
                &ResolverTarget::parse("dns:///h:7").unwrap(),
                sink,
                &ResolverOptions::default(),
            )
            .unwrap();
        let first = rx.recv().await.unwrap();
        assert_eq!(
            first.addresses.as_ref().unwrap().len(),
            1,
            "duplicates dropped"
        );
        assert_eq!(n.load(Ordering::SeqCst), 1);
        // Asked again 1 s later: the next lookup waits until 30 s after the first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.resolve_now();
        r.resolve_now();
        tokio::time::sleep(Duration::from_secs(28)).await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(n.load(Ordering::SeqCst), 2);
        rx.recv().await.unwrap();
        // Without a request, no further lookups.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(n.load(Ordering::SeqCst), 2);
        drop(r);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_with_backoff() {
        let (b, n) = counting(3);
        let (sink, mut rx) = test_sink();
        let opts = ResolverOptions::default();
        let _r = b
            .build(&ResolverTarget::parse("dns:///h:7").unwrap(), sink, &opts)
            .unwrap();
        let started = Instant::now();
        for _ in 0..3 {
            assert!(rx.recv().await.unwrap().addresses.is_err());
        }
        let ok = rx.recv().await.unwrap();
        assert!(ok.addresses.is_ok());
        // Backoff 1 s, 1.6 s, 2.56 s (+-20 % jitter) before the 4th lookup.
        let waited = started.elapsed().as_secs_f64();
        assert!((5.16 * 0.8..5.16 * 1.2).contains(&waited), "{waited}");
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }
}
