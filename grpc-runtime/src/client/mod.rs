//! Client side: the [`Channel`] and everything between a generated client's call and an
//! h2 stream.
//!
//! Shape (as grpc-go's ClientConn; the picture is in docs/client-channel.md):
//! - Control side (`control.rs`, one task per channel): a [`resolver::Resolver`] pushes
//!   addresses and service configs; the [`lb::LbPolicy`] the service config selects
//!   (`pick_first` by default, `round_robin`, or a registered one) creates
//!   [`Subchannel`]s (one address, at most one h2 connection each) and publishes a
//!   [`lb::Picker`] with the channel's [`ConnectivityState`].
//! - Call side (`call.rs`): each call reads the latest picker (never blocking, never
//!   resolving), opens a stream on the picked subchannel's connection, and applies the
//!   [`service_config`]'s method config (timeout, wait-for-ready, message size limits).
//! - Targets follow the gRPC naming doc ([`Endpoint`]'s `Channel::builder`).
//!
//! Behaviour of every call (see `call.rs`):
//! - Deadline: the request's own timeout, else the deadline of the server call being
//!   handled by this task ([`crate::current_deadline`]), else the channel default. Sent as
//!   `grpc-timeout`; when it passes the call fails with DEADLINE_EXCEEDED (never
//!   CANCELLED) and the stream is reset with CANCEL.
//! - Cancellation: dropping the call future or the response [`crate::Streaming`] resets
//!   the stream with CANCEL. To cancel explicitly and read the CANCELLED status, call
//!   [`crate::Streaming::cancel`] on a response stream, or take a
//!   [`crate::CancelHandle`] with [`crate::Request::cancel_handle`] before the call (the
//!   call future, or later its response stream, then ends with CANCELLED).
//! - Response extras: [`crate::Response::remote_addr`] (the server's address) and, for
//!   single-message responses, [`crate::Response::message_compressed`] (the compressed
//!   flag of the message; per message on streams: [`crate::Streaming::last_message_compressed`]).
//! - Compression: the per-call choice ([`crate::Request::set_compression`]; an explicit
//!   identity with [`crate::Request::disable_compression`]) or the channel default. Before the server advertised
//!   `grpc-accept-encoding` on this connection the assumed set applies
//!   ([`Endpoint::assume_server_accepts`], by default everything we implement, like grpc-go
//!   clients); afterwards never an encoding outside what it advertised. Responses in an
//!   encoding we lack are INTERNAL. Per message: a streaming request made from an
//!   [`crate::OutboundStream`] of [`crate::OutboundMessage`]s sends the messages marked
//!   `compress(false)` with flag 0. The encoding a response arrived in:
//!   [`crate::Response::encoding`] / [`crate::Streaming::encoding`].
//! - Interceptors' `finish_call` gets a [`CallInfo`] of the call it ends (start time,
//!   server address, per-call state put in the call's extensions by `start`).
//! - Limits: messages over the receive limit (4 MiB default) or the send limit fail the
//!   call with RESOURCE_EXHAUSTED.
//! - Retries: a stream that never reached the server (connection gone, GOAWAY before the
//!   stream opened) is retried once on a new connection; for single-request calls also a
//!   stream the server refused unprocessed (REFUSED_STREAM, above GOAWAY last-stream-id).
//! - Interceptors run around every call (first added = outermost) and see its final status.
//! - Call credentials ([`credentials`]): the channel's ([`Endpoint::call_credentials`]),
//!   then the call's own ([`crate::Request::set_call_credentials`]), run per attempt after
//!   the interceptors and the pick; credentials that need privacy fail the call with
//!   UNAUTHENTICATED on a plaintext connection before its request is sent.
//!
//! Connection management (see `subchannel.rs`, `lb/` and `transport/`):
//! - Connectivity states IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN
//!   ([`Channel::state`], [`Channel::wait_for_state_change`], [`Channel::get_state`]).
//! - Reconnect backoff after failed attempts (1 s, x1.6, +-20 %, max 120 s;
//!   [`Endpoint::backoff`]); each attempt gets at least [`Endpoint::connect_timeout`].
//! - Fail-fast by default: in TRANSIENT_FAILURE calls fail with UNAVAILABLE at once;
//!   `Request::set_wait_for_ready(true)` waits for READY within the call's deadline.
//! - Idle timeout ([`Endpoint::idle_timeout`], 30 min): with no call in flight for that
//!   long, the channel drops its resolver, policy and connections and goes IDLE; the next
//!   call rebuilds them.
//! - Keepalive (gRFC A8, off by default; [`Endpoint::keepalive_time`]): PING after
//!   silence, close on no answer (calls fail UNAVAILABLE, the channel reconnects); a
//!   GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") doubles the time for new connections.

mod body;
mod call;
mod channel;
mod connectivity;
mod control;
pub mod credentials;
mod endpoint;
mod grpc_service;
mod health;
pub mod interceptor;
pub mod lb;
mod replay;
pub mod resolver;
mod retry;
pub mod service_config;
mod subchannel;
#[cfg(feature = "tower")]
pub mod tower;

pub use channel::Channel;
pub use connectivity::ConnectivityState;
pub use endpoint::{Endpoint, DEFAULT_IDLE_TIMEOUT};
pub use grpc_service::GrpcService;
pub use interceptor::{interceptor_fn, CallInfo, CallKind, ClientCallContext, Interceptor};
pub use replay::{DEFAULT_CHANNEL_RETRY_BUFFER, DEFAULT_PER_CALL_RETRY_BUFFER};
pub use subchannel::{Subchannel, SubchannelState};
