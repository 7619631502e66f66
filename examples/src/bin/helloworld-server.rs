//! The quick start server: `cargo run -p examples --bin helloworld-server [-- --addr HOST:PORT]`
//! (default 127.0.0.1:50051). Serves helloworld.Greeter until stopped.

use examples::helloworld::{MyGreeter, DEFAULT_ADDR};
use examples::pb::helloworld::greeter_server::GreeterServer;
use grpc_runtime::server::Server;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr =
        examples::support::arg_value(&args, "--addr").unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad --addr {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let builder = Server::builder().add_service(GreeterServer::new(MyGreeter));
    match examples::RunningServer::start_on(builder, addr).await {
        Ok(server) => {
            println!("helloworld server listening on {}", server.addr());
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
