//! Resolved network addresses a connection can be made to.

use std::fmt;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::PathBuf;

/// One concrete address a subchannel can connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A unix domain socket path.
    #[cfg(unix)]
    Unix(PathBuf),
    /// A Linux abstract-namespace unix socket name (without the leading NUL).
    #[cfg(target_os = "linux")]
    UnixAbstract(Vec<u8>),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            #[cfg(unix)]
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            #[cfg(target_os = "linux")]
            Address::UnixAbstract(n) => write!(f, "unix-abstract:{}", String::from_utf8_lossy(n)),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}
