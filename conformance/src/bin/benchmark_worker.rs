//! `benchmark_worker`: grpc-rust's benchmark binary, three ways.
//!
//! - `benchmark_worker [--driver_port=10000] [--server_port=0]`: a qps worker
//!   (`grpc.testing.WorkerService`) like grpc's C++ `qps_worker` and Go `benchmark/worker`, for
//!   `qps_json_driver` (set `QPS_WORKERS=127.0.0.1:PORT,...`). Runs until `QuitWorker` or
//!   SIGINT/SIGTERM.
//! - `benchmark_worker server [--port=50051]`: a standalone `grpc.testing.BenchmarkService`
//!   server on 127.0.0.1 (prints `listening on ADDR`), for h2load and the load clients.
//! - `benchmark_worker client --target=... --mode=...`: the load client (see
//!   `conformance::benchmark::load`), printing one JSON line.
//!
//! Tokio runtime threads: `--threads=N` (default: the cores available), so a benchmark can
//! match the cores it pins the process to.

use std::process::ExitCode;
use std::sync::Arc;

use conformance::benchmark::{load, service, worker};
use conformance::flags::Flags;
use conformance::pb::worker_service_server::WorkerServiceServer;
use grpc_runtime::Server;
use tokio::net::TcpListener;

const WORKER_FLAGS: &[&str] = &["driver_port", "server_port", "threads"];
const SERVER_FLAGS: &[&str] = &["port", "threads", "max_pending_accept_reset_streams"];

async fn signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run_worker(flags: &Flags) -> Result<(), String> {
    let driver_port: u16 = flags.num("driver_port", 10000u16)?;
    let server_port: u16 = flags.num("server_port", 0u16)?;
    let quit = Arc::new(tokio::sync::Notify::new());
    let w = worker::Worker {
        server_port,
        quit: Arc::clone(&quit),
    };
    let listener = TcpListener::bind(("0.0.0.0", driver_port))
        .await
        .map_err(|e| format!("binding driver port {driver_port}: {e}"))?;
    eprintln!(
        "benchmark_worker: worker listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    Server::builder()
        .grace_period(std::time::Duration::from_secs(2))
        .add_service(WorkerServiceServer::new(w))
        .serve_with_incoming_shutdown(listener, async move {
            tokio::select! {
                _ = quit.notified() => {}
                _ = signal() => {}
            }
        })
        .await
        .map_err(|e| format!("worker server: {e}"))
}

async fn run_server(flags: &Flags) -> Result<(), String> {
    let port: u16 = flags.num("port", 50051u16)?;
    let resets: usize = flags.num(
        "max_pending_accept_reset_streams",
        grpc_runtime::server::DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS,
    )?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("binding 127.0.0.1:{port}: {e}"))?;
    println!(
        "listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    service::serve_with(listener, signal(), |b| {
        b.max_pending_accept_reset_streams(resets)
    })
    .await
    .map_err(|e| format!("server: {e}"))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args.first().map(String::as_str) {
        Some("server") | Some("client") => args.remove(0),
        _ => "worker".to_string(),
    };
    let (known, bools): (Vec<&str>, &[&str]) = match cmd.as_str() {
        "server" => (SERVER_FLAGS.to_vec(), &[]),
        "client" => (
            load::CLIENT_FLAGS
                .iter()
                .copied()
                .chain(["threads"])
                .collect(),
            &[],
        ),
        _ => (WORKER_FLAGS.to_vec(), &[]),
    };
    let flags = match Flags::parse(args, &known, bools) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("benchmark_worker: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    match flags.num("threads", 0usize) {
        Ok(0) => {}
        Ok(n) => {
            rt.worker_threads(n);
        }
        Err(e) => {
            eprintln!("benchmark_worker: {e}");
            return ExitCode::from(2);
        }
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benchmark_worker: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let r = rt.block_on(async {
        match cmd.as_str() {
            "server" => run_server(&flags).await,
            "client" => load::run(&flags).await,
            _ => run_worker(&flags).await,
        }
    });
    // Do not wait for lingering benchmark tasks (aborted streams, idle channels).
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark_worker: {e}");
            ExitCode::from(1)
        }
    }
}
