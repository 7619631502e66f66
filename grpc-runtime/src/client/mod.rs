//! Client side: the [`Channel`] and everything between a generated client's call and an
//! h2 stream.
//!
//! Shape (as grpc-go's ClientConn): `Channel` -> [`resolver::Resolver`] (target ->
//! addresses) -> [`balancer::Balancer`] (pick_first for now) -> [`subchannel::Subchannel`]
//! (one h2 connection at a time, reconnect on demand) -> h2 `SendRequest` per call.

pub mod balancer;
mod body;
mod call;
mod channel;
mod connectivity;
mod endpoint;
pub mod interceptor;
pub mod resolver;
pub mod subchannel;
mod target;

pub use channel::Channel;
pub use connectivity::ConnectivityState;
pub use interceptor::{interceptor_fn, CallKind, ClientCallContext, Interceptor};
pub use endpoint::Endpoint;
