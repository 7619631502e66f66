//! The interceptors feature example: server and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin interceptors`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::interceptors::run(&out).await {
        eprintln!("interceptors example failed: {e}");
        std::process::exit(1);
    }
    println!("interceptors example: OK");
}
