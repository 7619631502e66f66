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

/// The runtime under another path, for `runtime_crate=crate::rt`.
pub mod rt {
    pub use grpc_runtime::*;
}

/// routeguide services with `messages=false,runtime_crate=crate::rt` and an extern path.
pub mod custom_runtime {
    include!(concat!(env!("OUT_DIR"), "/custom_runtime/routeguide.rs"));
}

#[cfg(test)]
mod tests;
