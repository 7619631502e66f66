//! protoc-gen-rust-grpc: generates Rust messages and gRPC clients/servers.
