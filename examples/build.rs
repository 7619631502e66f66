//! Generates the helloworld, routeguide, echo and browser-demo messages, clients and servers with
//! protoc-gen-rust-grpc's build.rs API (pure Rust, no protoc needed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let shipped = here.join("../protos");
    protoc_gen_rust_grpc::configure().compile(
        &[
            shipped.join("examples/helloworld/helloworld.proto"),
            shipped.join("examples/routeguide/route_guide.proto"),
        ],
        &[&shipped],
    )?;
    let own = here.join("proto");
    protoc_gen_rust_grpc::configure().compile(
        &[
            own.join("echo/echo.proto"),
            own.join("browser/browser.proto"),
        ],
        &[&own],
    )?;
    Ok(())
}
