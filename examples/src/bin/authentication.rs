//! The authentication feature example: mutual TLS plus a bearer token as call
//! credentials, server and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin authentication`; exits non-zero if anything came
//! back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::authentication::run(&out).await {
        eprintln!("authentication example failed: {e}");
        std::process::exit(1);
    }
    println!("authentication example: OK");
}
