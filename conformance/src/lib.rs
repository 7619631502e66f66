//! grpc-rust's interop conformance suite: the generated `grpc.testing` code ([`pb`]), the
//! flag parser ([`flags`]), the interop client cases ([`client`]) and the interop server
//! ([`server`]), shared by the `interop_client` / `interop_server` binaries and the tests;
//! and the benchmark service, qps worker and load client ([`benchmark`]) behind
//! `benchmark_worker`. Everything goes through grpc-runtime's public API (no raw h2).

pub mod benchmark;
pub mod client;
pub mod flags;
pub mod server;

/// Generated `grpc.testing` messages, clients and servers (protos/grpc/testing).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/grpc.testing.rs"));
}
