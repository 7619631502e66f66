//! Name resolution: turns a channel target into the list of addresses the balancer
//! connects to. The channel asks the resolver on first use and again after a connection
//! attempt failed (so DNS changes are picked up).

use std::future::Future;
use std::pin::Pin;

use crate::transport::{Address, TransportError, TransportErrorKind};

/// The future a [`Resolver`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Address>, TransportError>> + Send + 'a>>;

/// Produces the addresses of a target.
pub trait Resolver: Send + Sync + 'static {
    /// Resolves the target now. An empty list is an error for the channel.
    fn resolve(&self) -> ResolveFuture<'_>;
}

/// A fixed address list (IP literals, unix sockets).
#[derive(Debug, Clone)]
pub struct StaticResolver {
    addrs: Vec<Address>,
}

impl StaticResolver {
    /// A resolver that always yields `addrs`.
    pub fn new(addrs: Vec<Address>) -> Self {
        StaticResolver { addrs }
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self) -> ResolveFuture<'_> {
        let addrs = self.addrs.clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// Resolves a host name with the system resolver (`tokio::net::lookup_host`).
#[derive(Debug, Clone)]
pub struct DnsResolver {
    host: String,
    port: u16,
}

impl DnsResolver {
    /// A resolver for `host:port`.
    pub fn new(host: String, port: u16) -> Self {
        DnsResolver { host, port }
    }
}

impl Resolver for DnsResolver {
    fn resolve(&self) -> ResolveFuture<'_> {
        Box::pin(async move {
            let found = tokio::net::lookup_host((self.host.as_str(), self.port)).await.map_err(|e| {
                TransportError::new(TransportErrorKind::Resolve, format!("resolving {}: {e}", self.host))
            })?;
            let mut addrs: Vec<Address> = Vec::new();
            for sa in found {
                let a = Address::Tcp(sa);
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            if addrs.is_empty() {
                return Err(TransportError::new(
                    TransportErrorKind::Resolve,
                    format!("{} resolved to no addresses", self.host),
                ));
            }
            Ok(addrs)
        })
    }
}
