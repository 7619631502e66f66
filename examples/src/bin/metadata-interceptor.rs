//! The metadata-interceptor feature example: client and server interceptors reading and adding
//! metadata, server and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin metadata-interceptor`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::metadata_interceptor::run(&out).await {
        eprintln!("metadata_interceptor example failed: {e}");
        std::process::exit(1);
    }
    println!("metadata_interceptor example: OK");
}
