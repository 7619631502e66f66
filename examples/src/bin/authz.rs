//! The authorization feature example: a gRFC A43 policy deciding by method and role, server
//! and client in one process on 127.0.0.1.
//! Run with `cargo run -p examples --bin authz`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::authz::run(&out).await {
        eprintln!("authz example failed: {e}");
        std::process::exit(1);
    }
    println!("authz example: OK");
}
