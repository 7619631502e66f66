//! The unix-abstract feature example: server and client in one process over a Linux abstract
//! unix socket.
//! Run with `cargo run -p examples --bin unix-abstract`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::unix_abstract::run(&out).await {
        eprintln!("unix_abstract example failed: {e}");
        std::process::exit(1);
    }
    println!("unix_abstract example: OK");
}
