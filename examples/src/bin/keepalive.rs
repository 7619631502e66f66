//! The keepalive feature example: client keepalive, server enforcement and connection idle/age
//! limits, servers and clients in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin keepalive`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::keepalive::run(&out).await {
        eprintln!("keepalive example failed: {e}");
        std::process::exit(1);
    }
    println!("keepalive example: OK");
}
