//! The flow-control feature example: a slow reader and a server whose sends wait, in one process
//! on 127.0.0.1.
//! Run with `cargo run -p examples --bin flow-control`; exits non-zero if anything came back wrong.

#[tokio::main]
async fn main() {
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::features::flow_control::run(&out).await {
        eprintln!("flow_control example failed: {e}");
        std::process::exit(1);
    }
    println!("flow_control example: OK");
}
