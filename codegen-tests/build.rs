//! Generates code for every shipped proto and the edge-case protos with the build.rs API.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = root.join("protos");
    let shipped: Vec<PathBuf> = [
        "examples/helloworld/helloworld.proto",
        "examples/routeguide/route_guide.proto",
        "grpc/testing/benchmark_service.proto",
        "grpc/testing/control.proto",
        "grpc/testing/empty.proto",
        "grpc/testing/messages.proto",
        "grpc/testing/payloads.proto",
        "grpc/testing/stats.proto",
        "grpc/testing/test.proto",
        "grpc/testing/worker_service.proto",
        "grpc/health/v1/health.proto",
        "grpc/reflection/v1/reflection.proto",
        "grpc/reflection/v1alpha/reflection.proto",
        "google/rpc/code.proto",
        "google/rpc/error_details.proto",
        "google/rpc/status.proto",
    ]
    .iter()
    .map(|p| protos.join(p))
    .collect();
    protoc_gen_rust_grpc::configure()
        .include_file("mod.rs")
        .out_dir(out.join("shipped"))
        .compile(&shipped, &[&protos])?;

    let edge_root = root.join("protoc-gen-rust-grpc/tests/protos");
    let edge: Vec<PathBuf> = [
        "comments.proto",
        "common.proto",
        "edge.proto",
        "legacy.proto",
        "nopackage.proto",
    ]
    .iter()
    .map(|p| edge_root.join("edge").join(p))
    .collect();
    protoc_gen_rust_grpc::configure()
        .include_file("mod.rs")
        .out_dir(out.join("edge"))
        .compile(&edge, &[&edge_root])?;

    // Services only, messages taken from the `shipped` tree through extern_path.
    protoc_gen_rust_grpc::configure()
        .client(false)
        .messages(false)
        .extern_path(".helloworld", "crate::shipped::helloworld")
        .out_dir(out.join("server_only"))
        .compile(
            &[protos.join("examples/helloworld/helloworld.proto")],
            &[&protos],
        )?;

    // Everything through a re-export of the runtime (`runtime_crate=crate::rt`).
    protoc_gen_rust_grpc::configure()
        .messages(false)
        .runtime_crate("crate::rt")
        .extern_path(".routeguide", "crate::shipped::routeguide")
        .out_dir(out.join("custom_runtime"))
        .compile(
            &[protos.join("examples/routeguide/route_guide.proto")],
            &[&protos],
        )?;
    Ok(())
}
