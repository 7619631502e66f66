//! The health feature example: health reporting, a Watch stream and client-side health checking
//! with round_robin, servers and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin health`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::health::run(&out).await {
        eprintln!("health example failed: {e}");
        std::process::exit(1);
    }
    println!("health example: OK");
}
