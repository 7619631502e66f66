//! Parsing a channel target URI (`http://host:port`, `https://host:port`, `unix:/path`,
//! `dns:///host:port`, bare `host:port`) into scheme, `:authority`, TLS server name and
//! the resolver that turns it into addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::client::resolver::{DnsResolver, Resolver, StaticResolver};
use crate::transport::{Address, TransportError, TransportErrorKind};

/// A parsed channel target.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The original text.
    pub(crate) text: String,
    /// `true` for `https`.
    pub(crate) tls: bool,
    /// Value for the `:authority` pseudo-header.
    pub(crate) authority: String,
    /// Host name used for TLS verification / SNI (without port or brackets).
    pub(crate) host: String,
    kind: TargetKind,
}

#[derive(Debug, Clone)]
enum TargetKind {
    Ip(SocketAddr),
    Dns(String, u16),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

fn bad(text: &str, why: &str) -> TransportError {
    TransportError::new(TransportErrorKind::Config, format!("invalid target {text:?}: {why}"))
}

impl Target {
    pub(crate) fn parse(text: &str) -> Result<Target, TransportError> {
        if let Some(rest) = text.strip_prefix("unix:") {
            #[cfg(unix)]
            {
                // unix:/abs/path, unix:///abs/path, unix:relative/path
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(bad(text, "empty unix socket path"));
                }
                return Ok(Target {
                    text: text.to_string(),
                    tls: false,
                    authority: "localhost".to_string(),
                    host: "localhost".to_string(),
                    kind: TargetKind::Unix(path.into()),
                });
            }
            #[cfg(not(unix))]
            {
                let _ = rest;
                return Err(bad(text, "unix sockets are not supported on this platform"));
            }
        }
        let (tls, hostport) = if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("dns:///") {
            (false, r)
        } else if text.contains("://") {
            return Err(bad(text, "unsupported scheme (use http, https, dns or unix)"));
        } else {
            (false, text)
        };
        let hostport = hostport.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || hostport.contains('@') {
            return Err(bad(text, "expected host:port"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad(text, "malformed host or port"))?;
        let port = port.unwrap_or(default_port);
        // the authority is sent as written (with the port only if the target had one)
        let authority = hostport.to_string();
        let kind = match host.parse::<IpAddr>() {
            Ok(ip) => TargetKind::Ip(SocketAddr::new(ip, port)),
            Err(_) => TargetKind::Dns(host.clone(), port),
        };
        Ok(Target { text: text.to_string(), tls, authority, host, kind })
    }

    /// The resolver for this target.
    pub(crate) fn resolver(&self) -> Arc<dyn Resolver> {
        match &self.kind {
            TargetKind::Ip(sa) => Arc::new(StaticResolver::new(vec![Address::Tcp(*sa)])),
            TargetKind::Dns(h, p) => Arc::new(DnsResolver::new(h.clone(), *p)),
            #[cfg(unix)]
            TargetKind::Unix(p) => Arc::new(StaticResolver::new(vec![Address::Unix(p.clone())])),
        }
    }
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?.parse().ok()?)
        };
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            if h.is_empty() {
                return None;
            }
            Some((h.to_string(), Some(p.parse().ok()?)))
        }
        Some(_) => None, // bare IPv6 without brackets is ambiguous
        None => Some((s.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let t = Target::parse("http://127.0.0.1:50051").unwrap();
        assert!(!t.tls);
        assert_eq!(t.authority, "127.0.0.1:50051");
        assert!(matches!(t.kind, TargetKind::Ip(_)));
        let t = Target::parse("https://foo.test.google.fr:443").unwrap();
        assert!(t.tls);
        assert_eq!(t.host, "foo.test.google.fr");
        assert!(matches!(t.kind, TargetKind::Dns(_, 443)));
        let t = Target::parse("http://[::1]:8080/").unwrap();
        assert_eq!(t.authority, "[::1]:8080");
        assert_eq!(t.host, "::1");
        let t = Target::parse("localhost:1").unwrap();
        assert!(matches!(t.kind, TargetKind::Dns(_, 1)));
        let t = Target::parse("unix:///tmp/x.sock").unwrap();
        assert!(matches!(t.kind, TargetKind::Unix(ref p) if p.to_str() == Some("/tmp/x.sock")));
        assert!(Target::parse("ftp://x:1").is_err());
        assert!(Target::parse("http://x:notaport").is_err());
        assert!(Target::parse("http://").is_err());
        assert!(Target::parse("http://h:1/path").is_err());
    }
}
