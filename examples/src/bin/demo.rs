//! The demo: `cargo run --release -p examples --bin demo` starts a RouteGuide server
//! in-process on 127.0.0.1 (ephemeral port), makes the four kinds of call through the
//! generated client, prints a transcript and exits 0 (1 if anything came back wrong).
//! `--db PATH` uses another feature database.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db = examples::support::arg_value(&args, "--db")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(examples::routeguide::default_db_path);
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    if let Err(e) = examples::demo::run(&db, &out).await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
