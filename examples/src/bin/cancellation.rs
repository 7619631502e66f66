//! The cancellation feature example: server and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin cancellation`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::cancellation::run(&out).await {
        eprintln!("cancellation example failed: {e}");
        std::process::exit(1);
    }
    println!("cancellation example: OK");
}
