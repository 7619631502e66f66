//! The RouteGuide client: `cargo run -p examples --bin routeguide-client [-- --addr URL --db PATH]`
//! (default http://127.0.0.1:10000). Makes the reference client's four calls; the route
//! for RecordRoute is taken from the database at `--db` (default the shipped one).

use examples::routeguide::client::{fixed_route, run};
use examples::routeguide::{default_db_path, load_features, DEFAULT_ADDR};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = examples::support::arg_value(&args, "--addr")
        .unwrap_or_else(|| format!("http://{DEFAULT_ADDR}"));
    let db = examples::support::arg_value(&args, "--db")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(default_db_path);
    let out = examples::Transcript::with_sink(|line| println!("{line}"));
    let result = async {
        let features = load_features(&db)?;
        let channel = examples::connect(&target).await?;
        run(channel, fixed_route(&features, 10), true, &out).await
    }
    .await;
    if let Err(e) = result {
        eprintln!("route guide client failed: {e}");
        std::process::exit(1);
    }
}
