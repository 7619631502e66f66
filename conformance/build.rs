//! Generates the `grpc.testing` messages, clients and servers from protos/grpc/testing:
//! the interop TestService and the benchmark BenchmarkService / WorkerService.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../protos");
    let files: Vec<PathBuf> = [
        "empty.proto",
        "messages.proto",
        "test.proto",
        "benchmark_service.proto",
        "control.proto",
        "payloads.proto",
        "stats.proto",
        "worker_service.proto",
    ]
    .iter()
    .map(|f| protos.join("grpc/testing").join(f))
    .collect();
    protoc_gen_rust_grpc::configure()
        .out_dir(PathBuf::from(std::env::var("OUT_DIR")?))
        .compile(&files, &[&protos])?;
    Ok(())
}
