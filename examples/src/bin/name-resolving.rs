//! The name_resolving feature example: servers and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin name-resolving`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::name_resolving::run(&out).await {
        eprintln!("name_resolving example failed: {e}");
        std::process::exit(1);
    }
    println!("name_resolving example: OK");
}
