//! Generates tonic code for grpc.testing.BenchmarkService from the repository's protos.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protos");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(
            &[protos.join("grpc/testing/benchmark_service.proto")],
            &[protos],
        )?;
    Ok(())
}
