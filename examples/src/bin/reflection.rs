//! The reflection feature example: a server with add_reflection() and a reflection client,
//! in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin reflection`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::reflection::run(&out).await {
        eprintln!("reflection example failed: {e}");
        std::process::exit(1);
    }
    println!("reflection example: OK");
}
