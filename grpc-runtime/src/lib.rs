#![doc = include_str!("guide.md")]
#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod compression;
mod generated;
mod latch;
mod context;
pub mod metadata;
mod request;
pub mod rpc_types;
mod response_stream;
pub mod server;
pub mod services;
pub mod status;
mod stats;
mod streaming;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod timeout;
pub mod transport;

pub use client::{Channel, ConnectivityState, Endpoint};
pub use transport::ClientTlsConfig;
pub use compression::{CompressionEncoding, EncodingSet};
pub use context::ServerContext;
pub use metadata::{MetadataError, MetadataMap, MetadataValue};
pub use request::{
    BoxFuture, BoxStream, CancelHandle, IntoRequest, IntoStreamingRequest, MethodDescriptor, OutboundMessage,
    OutboundMessages, OutboundStream, Request, Response,
};
pub use response_stream::{response_channel, ResponseSender};
pub use rpc_types::ErrorDetail;
pub use server::{Server, ServerTlsConfig};
pub use status::{Code, Status};
pub use streaming::Streaming;
pub use timeout::{current_deadline, scope_deadline, Deadline};

/// The `user-agent` this runtime sends: `grpc-rust/<version>`.
pub const USER_AGENT: &str = concat!("grpc-rust/", env!("CARGO_PKG_VERSION"));
