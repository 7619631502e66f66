#![doc = include_str!("guide.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod codec;
pub mod compression;
mod context;
mod generated;
mod latch;
pub mod metadata;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod request;
mod response_stream;
pub mod rpc_types;
pub mod server;
pub mod services;
mod stats;
pub mod status;
mod streaming;
pub mod timeout;
pub mod transport;

pub use client::{Channel, ConnectivityState, Endpoint, GrpcService};
pub use compression::{CompressionEncoding, EncodingSet};
pub use context::ServerContext;
pub use metadata::{MetadataError, MetadataMap, MetadataValue};
pub use request::{
    BoxFuture, BoxStream, CancelHandle, IntoRequest, IntoStreamingRequest, MethodDescriptor,
    OutboundMessage, OutboundMessages, OutboundStream, Request, Response,
};
pub use response_stream::{response_channel, ResponseSender};
pub use rpc_types::ErrorDetail;
pub use server::Server;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use server::ServerTlsConfig;
pub use status::{Code, Status};
pub use streaming::Streaming;
pub use timeout::{current_deadline, scope_deadline, Deadline};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use transport::ClientTlsConfig;

/// The `user-agent` this runtime sends: `grpc-rust/<version>`.
pub const USER_AGENT: &str = concat!("grpc-rust/", env!("CARGO_PKG_VERSION"));
