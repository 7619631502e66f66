//! The stats monitoring feature example (grpc-go's features/stats_monitoring): a server and a
//! client with gRFC A66 OpenTelemetry metrics, exported in Prometheus text format on
//! `http://ADDR/metrics`. Run with `cargo run -p examples --bin stats-monitoring`
//! (`--metrics-addr 127.0.0.1:9464`, `--serve-secs 60` to keep the endpoint up for a
//! scraper); exits non-zero if anything came back wrong.

use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match examples::support::arg_value(&args, "--metrics-addr")
        .map(|a| a.parse::<SocketAddr>())
    {
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            eprintln!("bad --metrics-addr: {e}");
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
    if let Err(e) =
        examples::features::stats_monitoring::run_with(&out, addr, Duration::from_secs(secs)).await
    {
        eprintln!("stats_monitoring example failed: {e}");
        std::process::exit(1);
    }
    println!("stats_monitoring example: OK");
}
