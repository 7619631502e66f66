//! Connectivity states of subchannels and channels (gRPC connectivity-semantics doc).

use std::fmt;

/// The connectivity state of a subchannel or channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectivityState {
    /// No connection and none being attempted; the next call starts connecting.
    Idle,
    /// A connection attempt is in progress.
    Connecting,
    /// A connection is established and usable.
    Ready,
    /// The last connection attempt failed; calls fail fast with UNAVAILABLE.
    TransientFailure,
    /// The channel was shut down; calls fail.
    Shutdown,
}

impl fmt::Display for ConnectivityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectivityState::Idle => "IDLE",
            ConnectivityState::Connecting => "CONNECTING",
            ConnectivityState::Ready => "READY",
            ConnectivityState::TransientFailure => "TRANSIENT_FAILURE",
            ConnectivityState::Shutdown => "SHUTDOWN",
        })
    }
}
