//! The errors feature example: server and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin errors`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::errors::run(&out).await {
        eprintln!("errors example failed: {e}");
        std::process::exit(1);
    }
    println!("errors example: OK");
}
