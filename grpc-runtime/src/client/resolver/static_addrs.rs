//! Resolvers for targets that name their addresses directly: `ipv4:`, `ipv6:`, `unix:`,
//! `unix-abstract:` (fixed lists, resolved once) and `passthrough:` (one address, looked
//! up again on each re-resolution, as grpc-go hands it to its dialer).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    ResolvedAddress, Resolver, ResolverBuilder, ResolverOptions, ResolverSink, ResolverTarget,
    ResolverUpdate,
};
use crate::transport::Address;

/// Port used when an `ipv4:`/`ipv6:`/`dns:` address has none (the naming doc's 443).
pub(crate) const DEFAULT_PORT: u16 = 443;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ipv4,
    Ipv6,
    Unix,
    UnixAbstract,
}

/// The builder of the fixed-list schemes `ipv4`, `ipv6`, `unix` and `unix-abstract`.
#[derive(Debug, Clone)]
pub struct StaticResolverBuilder {
    kind: Kind,
}

impl StaticResolverBuilder {
    /// `ipv4:a.b.c.d[:port][,...]`.
    pub fn ipv4() -> Self {
        StaticResolverBuilder { kind: Kind::Ipv4 }
    }
    /// `ipv6:addr[,...]`, `ipv6:[addr]:port[,...]` (brackets required with a port).
    pub fn ipv6() -> Self {
        StaticResolverBuilder { kind: Kind::Ipv6 }
    }
    /// `unix:path` (relative or absolute) and `unix:///absolute/path`.
    pub fn unix() -> Self {
        StaticResolverBuilder { kind: Kind::Unix }
    }
    /// `unix-abstract:name` (Linux abstract socket namespace).
    pub fn unix_abstract() -> Self {
        StaticResolverBuilder {
            kind: Kind::UnixAbstract,
        }
    }

    fn addresses(&self, target: &ResolverTarget) -> Result<Vec<Address>, String> {
        match self.kind {
            Kind::Ipv4 | Kind::Ipv6 => {
                if !target.authority().is_empty() {
                    return Err(format!(
                        "{}: an authority is not supported for {} targets",
                        target,
                        target.scheme()
                    ));
                }
                let mut out = Vec::new();
                for part in target.endpoint().split(',') {
                    let sa = parse_ip_port(part, self.kind == Kind::Ipv6).ok_or_else(|| {
                        format!("{target}: {part:?} is not an {} address", target.scheme())
                    })?;
                    out.push(Address::Tcp(sa));
                }
                Ok(out)
            }
            Kind::Unix => {
                let rest = target.original().split_once(':').map_or("", |(_, r)| r);
                let path = match rest.strip_prefix("//") {
                    Some(p) if p.starts_with('/') => p,
                    Some(_) => {
                        return Err(format!(
                            "{target}: unix://ABSOLUTE_PATH needs an absolute path (three slashes)"
                        ))
                    }
                    None => rest,
                };
                if path.is_empty() {
                    return Err(format!("{target}: empty unix socket path"));
                }
                unix_address(path)
                    .ok_or_else(|| {
                        format!("{target}: unix sockets are not supported on this platform")
                    })
                    .map(|a| vec![a])
            }
            Kind::UnixAbstract => {
                let name = target.original().split_once(':').map_or("", |(_, r)| r);
                abstract_address(name)
                    .ok_or_else(|| {
                        format!("{target}: abstract unix sockets are only supported on Linux")
                    })
                    .map(|a| vec![a])
            }
        }
    }
}

#[cfg(unix)]
fn unix_address(path: &str) -> Option<Address> {
    Some(Address::Unix(path.into()))
}
#[cfg(not(unix))]
fn unix_address(_: &str) -> Option<Address> {
    None
}
#[cfg(target_os = "linux")]
fn abstract_address(name: &str) -> Option<Address> {
    Some(Address::UnixAbstract(name.as_bytes().to_vec()))
}
#[cfg(not(target_os = "linux"))]
fn abstract_address(_: &str) -> Option<Address> {
    None
}

/// Parses `ip`, `ip:port` (v4) or `ip`, `[ip]`, `[ip]:port` (v6); the port defaults to 443.
fn parse_ip_port(s: &str, v6: bool) -> Option<SocketAddr> {
    if v6 {
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            let ip: Ipv6Addr = ip.parse().ok()?;
            let port = match after {
                "" => DEFAULT_PORT,
                p => p.strip_prefix(':')?.parse().ok()?,
            };
            return Some(SocketAddr::new(IpAddr::V6(ip), port));
        }
        return Some(SocketAddr::new(IpAddr::V6(s.parse().ok()?), DEFAULT_PORT));
    }
    let (ip, port) = match s.split_once(':') {
        Some((ip, p)) => (ip, p.parse().ok()?),
        None => (s, DEFAULT_PORT),
    };
    Some(SocketAddr::new(
        IpAddr::V4(ip.parse::<Ipv4Addr>().ok()?),
        port,
    ))
}

struct Fixed;

impl Resolver for Fixed {
    fn resolve_now(&mut self) {}
}

impl ResolverBuilder for StaticResolverBuilder {
    fn scheme(&self) -> &str {
        match self.kind {
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Unix => "unix",
            Kind::UnixAbstract => "unix-abstract",
        }
    }

    fn build(
        &self,
        target: &ResolverTarget,
        sink: ResolverSink,
        _: &ResolverOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        let addrs = self.addresses(target)?;
        sink.update(ResolverUpdate::new(
            addrs.into_iter().map(ResolvedAddress::new).collect(),
        ));
        Ok(Box::new(Fixed))
    }

    fn default_authority(&self, target: &ResolverTarget) -> String {
        match self.kind {
            Kind::Unix | Kind::UnixAbstract => "localhost".to_string(),
            // The first address (a comma-separated list is no valid authority).
            Kind::Ipv4 | Kind::Ipv6 => match self
                .addresses(target)
                .ok()
                .and_then(|a| a.into_iter().next())
            {
                Some(a) => a.to_string(),
                None => "localhost".to_string(),
            },
        }
    }

    fn validate(&self, target: &ResolverTarget) -> Result<(), String> {
        self.addresses(target).map(|_| ())
    }
}

/// `passthrough:///host:port`: the endpoint is the one address. An IP literal is used
/// as is; a host name is looked up with the system resolver when the channel starts and
/// again whenever the channel asks for re-resolution (no rate limit, as grpc-go's
/// dialer resolves at each connection attempt).
#[derive(Debug, Clone, Default)]
pub struct PassthroughResolverBuilder;

struct Passthrough {
    host: String,
    port: u16,
    sink: ResolverSink,
}

impl Passthrough {
    fn lookup(&self) {
        let (host, port, sink) = (self.host.clone(), self.port, self.sink.clone());
        tokio::spawn(async move {
            let update = match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => match found.into_iter().next() {
                    Some(sa) => ResolverUpdate::new(vec![ResolvedAddress::new(sa)]),
                    None => ResolverUpdate::error(format!("{host} has no addresses")),
                },
                Err(e) => ResolverUpdate::error(format!("looking up {host}: {e}")),
            };
            sink.update(update);
        });
    }
}

impl Resolver for Passthrough {
    fn resolve_now(&mut self) {
        self.lookup();
    }
}

impl ResolverBuilder for PassthroughResolverBuilder {
    fn scheme(&self) -> &str {
        "passthrough"
    }

    fn build(
        &self,
        target: &ResolverTarget,
        sink: ResolverSink,
        _: &ResolverOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        let (host, port) = super::dns::split_host_port(target.endpoint())?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            sink.update(ResolverUpdate::new(vec![ResolvedAddress::new(
                SocketAddr::new(ip, port),
            )]));
            return Ok(Box::new(Fixed));
        }
        let r = Passthrough { host, port, sink };
        r.lookup();
        Ok(Box::new(r))
    }

    fn validate(&self, target: &ResolverTarget) -> Result<(), String> {
        super::dns::split_host_port(target.endpoint()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(scheme: &str, text: &str) -> Result<Vec<String>, String> {
        let b = match scheme {
            "ipv4" => StaticResolverBuilder::ipv4(),
            "ipv6" => StaticResolverBuilder::ipv6(),
            "unix" => StaticResolverBuilder::unix(),
            _ => StaticResolverBuilder::unix_abstract(),
        };
        let t = ResolverTarget::parse(text).ok_or("no scheme")?;
        b.addresses(&t)
            .map(|v| v.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            addrs("ipv4", "ipv4:127.0.0.1:1,10.0.0.2:2").unwrap(),
            ["127.0.0.1:1", "10.0.0.2:2"]
        );
        assert_eq!(addrs("ipv4", "ipv4:127.0.0.1").unwrap(), ["127.0.0.1:443"]);
        assert!(addrs("ipv4", "ipv4:::1").is_err());
        assert!(addrs("ipv4", "ipv4:1.2.3.4:x").is_err());
        assert!(addrs("ipv4", "ipv4://auth/1.2.3.4:1").is_err());
        assert_eq!(
            addrs("ipv6", "ipv6:[::1]:50051,::2").unwrap(),
            ["[::1]:50051", "[::2]:443"]
        );
        assert!(addrs("ipv6", "ipv6:::1:50051x").is_err());
        assert!(addrs("ipv6", "ipv6:127.0.0.1").is_err());
        assert_eq!(
            addrs("unix", "unix:rel/s.sock").unwrap(),
            ["unix:rel/s.sock"]
        );
        assert_eq!(
            addrs("unix", "unix:/abs/s.sock").unwrap(),
            ["unix:/abs/s.sock"]
        );
        assert_eq!(
            addrs("unix", "unix:///abs/s.sock").unwrap(),
            ["unix:/abs/s.sock"]
        );
        assert!(addrs("unix", "unix://host/s.sock").is_err());
        assert!(addrs("unix", "unix:").is_err());
        #[cfg(target_os = "linux")]
        assert_eq!(
            addrs("unix-abstract", "unix-abstract:grpc-test").unwrap(),
            ["unix-abstract:grpc-test"]
        );
    }
}
