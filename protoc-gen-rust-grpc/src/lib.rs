//! protoc-gen-rust-grpc: generates Rust messages (prost) and gRPC clients and servers for
//! `grpc-runtime`, either as a protoc plugin or from a build script.
//!
//! Both entry points funnel into [`generate`], so they produce byte-identical files:
//!
//! * protoc plugin: `protoc --rust-grpc_out=OUT --rust-grpc_opt=client=false -I protos x.proto`
//!   with the `protoc-gen-rust-grpc` binary on `PATH` (see [`plugin`]).
//! * build.rs: [`configure`]`().compile(&["protos/x.proto"], &["protos"])?`, which parses
//!   the protos with protobuf-parse's pure-Rust parser (no protoc needed) and writes to
//!   `OUT_DIR` (see [`Builder`]).
//!
//! Output: one file per proto package named `<package>.rs` (`helloworld.rs`,
//! `grpc.testing.rs`; `_.rs` for files without a package), holding the prost messages and
//! enums, a `<service>_client` and `<service>_server` module per service, and
//! `FILE_DESCRIPTOR_SET`. The optional include file (`include_file=mod.rs`) nests the
//! packages into a module tree.
#![deny(missing_docs)]

mod build;
mod codegen;
mod comments;
mod format;
pub mod options;
pub mod plugin;
mod service;

pub use build::{configure, Builder};
pub use codegen::{generate, output_file_name, GeneratedFile, NO_PACKAGE_FILE_NAME};
pub use options::Options;

use std::fmt;

/// An error of the generator: bad options, a problem with the protos, or an I/O failure
/// in the build.rs path. The message is meant for the person running the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        std::io::Error::other(e.message)
    }
}
