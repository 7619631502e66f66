//! Wait-for-ready, in the shape of grpc-go's `features/wait_for_ready`: three calls start
//! on a channel whose server is not up yet; the server starts a moment later.
//! - \[1\] an ordinary call fails fast with UNAVAILABLE: the channel's first connection
//!   attempt failed, and it does not wait for the next one;
//! - \[2\] a wait-for-ready call ([`Request::set_wait_for_ready`]) waits while the channel
//!   keeps reconnecting (with backoff) and succeeds once the server is up;
//! - \[3\] a wait-for-ready call whose deadline passes first fails with DEADLINE_EXCEEDED.
//!
//! `"waitForReady": true` in a service config's `methodConfig` does the same per method.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grpc_runtime::server::Server;
use grpc_runtime::transport::BackoffConfig;
use grpc_runtime::{Channel, Code, Request, Status};

use super::{echo, NamedEcho};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::EchoServer;
use crate::{ensure, BoxError, RunningServer, Transcript};

/// How long after the calls start the server comes up.
pub const SERVER_DELAY: Duration = Duration::from_millis(1000);

async fn call(
    client: EchoClient,
    wait_for_ready: bool,
    timeout: Duration,
) -> (Result<String, Status>, Duration) {
    let started = Instant::now();
    let mut request = Request::new(echo("hi"));
    request.set_wait_for_ready(wait_for_ready);
    request.set_timeout(timeout);
    let result = client
        .unary_echo(request)
        .await
        .map(|r| r.into_inner().message);
    (result, started.elapsed())
}

fn outcome(result: &Result<String, Status>) -> &'static str {
    match result {
        Ok(_) => "OK",
        Err(status) => status.code().as_str(),
    }
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    // A free port for the server to come up on later (nothing listens there meanwhile).
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    // `connect_lazy`: the channel exists before its server does. A short reconnect backoff
    // so the waiting call gets through soon after the server is up.
    let channel = Channel::builder(format!("http://{addr}"))
        .backoff(BackoffConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(200),
            ..Default::default()
        })
        .connect_lazy()?;
    let client = EchoClient::new(channel);
    out.line(format!(
        "client: three calls to {addr}, where no server listens yet"
    ));

    let first = tokio::spawn(call(client.clone(), false, Duration::from_secs(10)));
    let second = tokio::spawn(call(client.clone(), true, Duration::from_secs(10)));
    let third = tokio::spawn(call(client.clone(), true, SERVER_DELAY / 2));

    tokio::time::sleep(SERVER_DELAY).await;
    let server = RunningServer::start_on(
        Server::builder().add_service(EchoServer::new(NamedEcho {
            name: "echo".into(),
        })),
        addr,
    )
    .await?;
    out.line(format!("server listening on {}", server.addr()));

    let (r1, t1) = first.await?;
    let (r2, t2) = second.await?;
    let (r3, t3) = third.await?;
    // grpc-go's wording: what each call wanted and what it got.
    out.line(format!(
        "[1] wait-for-ready off, 10 s deadline: wanted = UNAVAILABLE, got = {} after {} ms",
        outcome(&r1),
        t1.as_millis()
    ));
    out.line(format!(
        "[2] wait-for-ready on, 10 s deadline: wanted = OK, got = {} after {} ms",
        outcome(&r2),
        t2.as_millis()
    ));
    out.line(format!(
        "[3] wait-for-ready on, {} ms deadline: wanted = DEADLINE_EXCEEDED, got = {} after {} ms",
        (SERVER_DELAY / 2).as_millis(),
        outcome(&r3),
        t3.as_millis()
    ));
    ensure!(
        r1.as_ref().err().map(Status::code) == Some(Code::Unavailable),
        "[1]: {r1:?}"
    );
    ensure!(t1 < SERVER_DELAY, "[1] did not fail fast: {t1:?}");
    ensure!(
        r2.as_ref().ok().map(String::as_str) == Some("echo"),
        "[2]: {r2:?}"
    );
    ensure!(
        t2 >= SERVER_DELAY,
        "[2] answered before the server was up: {t2:?}"
    );
    ensure!(
        r3.as_ref().err().map(Status::code) == Some(Code::DeadlineExceeded),
        "[3]: {r3:?}"
    );

    server.shutdown().await?;
    Ok(())
}
