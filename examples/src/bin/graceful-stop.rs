//! The graceful-stop feature example: a server shut down while a call is in flight, servers and
//! client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin graceful-stop`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::graceful_stop::run(&out).await {
        eprintln!("graceful_stop example failed: {e}");
        std::process::exit(1);
    }
    println!("graceful_stop example: OK");
}
