//! Standard gRPC services the runtime ships, ready to register with
//! [`crate::server::ServerBuilder::add_service`]: health checking
//! (`grpc.health.v1.Health`).

pub mod health;
