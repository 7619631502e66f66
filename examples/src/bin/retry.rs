//! The retry feature example: a flaky server and a client with a retry policy, in one process
//! on 127.0.0.1.
//! Run with `cargo run -p examples --bin retry`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::retry::run(&out).await {
        eprintln!("retry example failed: {e}");
        std::process::exit(1);
    }
    println!("retry example: OK");
}
