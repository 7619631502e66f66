//! Standard gRPC services the runtime ships, ready to register with
//! [`crate::server::ServerBuilder::add_service`]: health checking
//! (`grpc.health.v1.Health`) and server reflection
//! (`grpc.reflection.v1` / `v1alpha`).

pub mod health;
pub mod reflection;
