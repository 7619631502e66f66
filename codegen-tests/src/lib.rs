//! Compiles the code protoc-gen-rust-grpc generates (through its build.rs API) for every
//! shipped proto and the edge-case protos, under `#![deny(warnings)]`, and checks it.
#![deny(warnings)]

/// Shipped protos: helloworld, routeguide, grpc.testing, health, reflection, google.rpc.
pub mod shipped {
    include!(concat!(env!("OUT_DIR"), "/shipped/mod.rs"));
}

/// Edge-case protos (protoc-gen-rust-grpc/tests/protos/edge).
pub mod edge {
    include!(concat!(env!("OUT_DIR"), "/edge/mod.rs"));
}

/// helloworld with `client=false,messages=false,extern_path=.helloworld=crate::shipped::helloworld`.
pub mod server_only {
    include!(concat!(env!("OUT_DIR"), "/server_only/helloworld.rs"));
}

#[cfg(test)]
mod tests;
