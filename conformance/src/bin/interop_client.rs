//! `interop_client`: runs one grpc interop test case (or `all`) against a server
//! (`--server_host`/`--server_port`, or any channel target with `--server_uri`).
//! Exit 0 on pass, 1 on failure (reason on stderr), 2 on bad flags (including a
//! `--server_uri` or `--service_config_json` the channel refuses); never hangs: the whole
//! run is bounded by `--overall_timeout_seconds` (default 120 s, soak cases: their overall
//! timeout + 120 s).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use conformance::client::{run_case, ClientConfig, CLIENT_BOOL_FLAGS, CLIENT_FLAGS};
use conformance::flags::Flags;

fn main() -> ExitCode {
    let flags = match Flags::parse(std::env::args().skip(1), CLIENT_FLAGS, CLIENT_BOOL_FLAGS) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("interop_client: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = match ClientConfig::from_flags(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("interop_client: {e}");
            return ExitCode::from(2);
        }
    };
    cfg.log = Arc::new(|line: &str| eprintln!("{line}"));
    // Build (not connect) a channel once so a bad target or service config is a flag error
    // reported before any case runs.
    if let Err(e) = cfg.validate() {
        eprintln!("interop_client: {e}");
        return ExitCode::from(2);
    }
    let case = flags.string("test_case", "large_unary");
    let default_timeout = if case.contains("soak") || case == "all" {
        cfg.soak.overall_timeout.as_secs() + 120
    } else {
        120
    };
    let overall = match flags.num("overall_timeout_seconds", default_timeout) {
        Ok(t) => Duration::from_secs(t),
        Err(e) => {
            eprintln!("interop_client: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interop_client: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async { tokio::time::timeout(overall, run_case(&cfg, &case)).await });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(Ok(())) => {
            eprintln!("{case}: PASS");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("{case}: FAIL: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!(
                "{case}: FAIL: did not finish within {} s",
                overall.as_secs()
            );
            ExitCode::from(1)
        }
    }
}
