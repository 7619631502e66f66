//! `interop_server`: grpc's interop test server (`--port`, `--use_tls`, `--tls_cert_file`,
//! `--tls_key_file`, `--address_type`; ours too: `--client_ca_file` for mutual TLS,
//! `--authz_policy` for a gRFC A43 policy file, `--grpc_web` for gRPC-Web on the same port,
//! default true). Runs until killed (SIGINT/SIGTERM end it cleanly).

use std::process::ExitCode;

use conformance::flags::Flags;
use conformance::server::{run, ServerConfig, SERVER_BOOL_FLAGS, SERVER_FLAGS};

fn main() -> ExitCode {
    let cfg = match Flags::parse(std::env::args().skip(1), SERVER_FLAGS, SERVER_BOOL_FLAGS)
        .and_then(|f| ServerConfig::from_flags(&f))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("interop_server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interop_server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "interop_server: listening on {} ({}{})",
        cfg.addr,
        if cfg.use_tls {
            format!("TLS, cert {}", cfg.cert_file.display())
        } else {
            "plaintext".into()
        },
        if cfg.grpc_web { ", gRPC-Web on" } else { "" }
    );
    if let Some(ca) = &cfg.client_ca_file {
        eprintln!(
            "interop_server: requiring client certificates from {}",
            ca.display()
        );
    }
    if let Some(p) = &cfg.authz_policy {
        eprintln!(
            "interop_server: enforcing the authorization policy in {}",
            p.display()
        );
    }
    let shutdown = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("interop_server: shutting down");
    };
    match rt.block_on(run(&cfg, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop_server: {e}");
            ExitCode::from(1)
        }
    }
}
