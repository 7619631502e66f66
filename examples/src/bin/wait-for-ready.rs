//! The wait-for-ready feature example: calls to a server that starts a moment later, in one
//! process on 127.0.0.1.
//! Run with `cargo run -p examples --bin wait-for-ready`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::wait_for_ready::run(&out).await {
        eprintln!("wait_for_ready example failed: {e}");
        std::process::exit(1);
    }
    println!("wait_for_ready example: OK");
}
