//! The RouteGuide server: `cargo run -p examples --bin routeguide-server [-- --addr HOST:PORT --db PATH]`
//! (default 127.0.0.1:10000 and examples/data/route_guide_db.json).

use examples::routeguide::{default_db_path, load_features, RouteGuideService, DEFAULT_ADDR};
use grpc_runtime::server::Server;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr =
        examples::support::arg_value(&args, "--addr").unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let db = examples::support::arg_value(&args, "--db")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(default_db_path);
    let features = match load_features(&db) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad --addr {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let count = features.len();
    let builder = Server::builder().add_service(RouteGuideService::new(features).into_server());
    match examples::RunningServer::start_on(builder, addr).await {
        Ok(server) => {
            println!(
                "route guide server listening on {} with {count} features from {}",
                server.addr(),
                db.display()
            );
            if let Err(e) = server.wait().await {
                eprintln!("server failed: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    }
}
