//! The quick start client: `cargo run -p examples --bin helloworld-client [-- --addr URL --name NAME]`
//! (default http://127.0.0.1:50051, name "world"). Calls SayHello and SayHelloAgain.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = examples::support::arg_value(&args, "--addr")
        .unwrap_or_else(|| format!("http://{}", examples::helloworld::DEFAULT_ADDR));
    let name = examples::support::arg_value(&args, "--name").unwrap_or_else(|| "world".to_string());
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::helloworld::run_client(&target, &name, &out).await {
        eprintln!("helloworld client failed: {e}");
        std::process::exit(1);
    }
}
