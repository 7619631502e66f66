//! REST (axum) and gRPC on one port, with health, reflection, a tower-http TraceLayer and
//! `/metrics` (grpc-runtime's `tower` feature). Run with
//! `cargo run -p examples --bin rest-grpc` (`--addr 127.0.0.1:50051`, `--serve-secs 60`
//! to keep it up for curl or grpcurl); exits non-zero if anything came back wrong.

use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match examples::support::arg_value(&args, "--addr").map(|a| a.parse::<SocketAddr>())
    {
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            eprintln!("bad --addr: {e}");
            std::process::exit(2);
        }
    };
    let secs = match examples::support::arg_value(&args, "--serve-secs").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("bad --serve-secs: {e}");
            std::process::exit(2);
        }
    };
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::rest_grpc::run_with(&out, addr, Duration::from_secs(secs)).await {
        eprintln!("rest_grpc example failed: {e}");
        std::process::exit(1);
    }
    println!("rest_grpc example: OK");
}
