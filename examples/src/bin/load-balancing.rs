//! The load_balancing feature example: servers and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin load-balancing`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::load_balancing::run(&out).await {
        eprintln!("load_balancing example failed: {e}");
        std::process::exit(1);
    }
    println!("load_balancing example: OK");
}
