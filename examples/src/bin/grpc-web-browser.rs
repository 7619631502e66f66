//! The browser example: `cargo run -p examples --bin grpc-web-browser [-- --addr HOST:PORT
//! --page-addr HOST:PORT]` (defaults 127.0.0.1:50051 and 127.0.0.1:8080), then open the
//! printed page address in a browser. The page calls the `BrowserDemo` service through
//! gRPC-Web (Connect-ES) and shows a unary reply, a server stream and an error status.
//! Serves until stopped.

use std::net::SocketAddr;

use examples::browser;
use tokio::net::TcpListener;

fn parse_addr(args: &[String], flag: &str, default: &str) -> SocketAddr {
    let addr = examples::support::arg_value(args, flag).unwrap_or_else(|| default.to_string());
    match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad {flag} {addr:?}: {e}");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let grpc_addr = parse_addr(&args, "--addr", "127.0.0.1:50051");
    let page_addr = parse_addr(&args, "--page-addr", "127.0.0.1:8080");
    let page = match TcpListener::bind(page_addr)
        .await
        .and_then(|l| Ok((l.local_addr()?, l)))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot listen on {page_addr}: {e}");
            std::process::exit(1);
        }
    };
    let (page_addr, page_listener) = page;
    let server =
        match examples::RunningServer::start_on(browser::grpc_server(page_addr), grpc_addr).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot listen on {grpc_addr}: {e}");
                std::process::exit(1);
            }
        };
    println!(
        "grpc-web-browser listening on {} (gRPC and gRPC-Web)",
        server.addr()
    );
    println!(
        "page: http://{page_addr}/ (CORS origins allowed: {})",
        browser::page_origins(page_addr).join(", ")
    );
    tokio::spawn(browser::serve_page(page_listener, server.addr().port()));
    if let Err(e) = server.wait().await {
        eprintln!("server failed: {e}");
        std::process::exit(1);
    }
}
