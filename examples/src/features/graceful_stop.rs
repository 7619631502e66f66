//! Graceful stop, in the shape of grpc-go's `features/gracefulstop`: a server shuts down
//! while a call is in flight.
//! - The shutdown signal of `serve_with_incoming_shutdown` (or `serve_with_shutdown`)
//!   starts it: `on_shutdown` hooks run, the listener closes, every connection gets a
//!   GOAWAY, and calls in flight go on;
//! - the call in flight completes normally;
//! - new calls do not reach the stopping server: the client's channel, which had two
//!   addresses, sends them to the other server without a failed call; a client that only
//!   knows the stopped server cannot connect (UNAVAILABLE);
//! - the server's task returns once its last call has ended;
//! - a call still running when the grace period (`ServerBuilder::grace_period`, 30 s by
//!   default) ends is cancelled: its handler sees the cancellation and the client gets an
//!   error instead of a reply.

use std::time::{Duration, Instant};

use grpc_runtime::server::Server;
use grpc_runtime::{Channel, Code, Request, Response, Status};
use tokio::sync::mpsc;

use super::{call_n, echo, NamedEcho};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// Sleeps for the number of milliseconds in the request, then answers; says when a call
/// starts, and whether it finished or was cancelled.
#[derive(Debug, Clone)]
pub struct SlowEcho {
    name: String,
    started: mpsc::UnboundedSender<()>,
    out: Transcript,
}

impl Echo for SlowEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let ms: u64 = request.get_ref().message.parse().unwrap_or(0);
        self.out
            .line(format!("{}: call of {ms} ms started", self.name));
        let _ = self.started.send(());
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {
                self.out.line(format!("{}: call of {ms} ms finished", self.name));
                Ok(Response::new(EchoResponse { message: self.name.clone() }))
            }
            status = request.context().cancelled() => {
                self.out.line(format!("{}: call of {ms} ms cancelled ({})", self.name, status.code().as_str()));
                Err(status)
            }
        }
    }
}

async fn start_slow(
    name: &str,
    grace: Duration,
    out: &Transcript,
) -> Result<(RunningServer, mpsc::UnboundedReceiver<()>), BoxError> {
    let (started, calls) = mpsc::unbounded_channel();
    let hook_out = out.clone();
    let hook_name = name.to_string();
    let server = RunningServer::start(
        Server::builder()
            .grace_period(grace)
            .on_shutdown(move || {
                hook_out.line(format!("{hook_name}: shutdown started (on_shutdown hook)"))
            })
            .add_service(EchoServer::new(SlowEcho {
                name: name.to_string(),
                started,
                out: out.clone(),
            })),
    )
    .await?;
    out.line(format!(
        "{name} listening on {} (grace period {} ms)",
        server.addr(),
        grace.as_millis()
    ));
    Ok((server, calls))
}

/// Runs the example: servers and clients in this process over real sockets.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let (server, mut started) = start_slow("backend-1", Duration::from_secs(5), out).await?;
    let other = RunningServer::start(Server::builder().add_service(EchoServer::new(NamedEcho {
        name: "backend-2".into(),
    })))
    .await?;
    out.line(format!("backend-2 listening on {}", other.addr()));

    // pick_first over both addresses: every call goes to backend-1 while it serves.
    let addr = server.addr();
    let target = format!("ipv4:{addr},{}", other.addr());
    let client = EchoClient::new(Channel::builder(&target).connect().await?);
    let reply = client.unary_echo(echo("0")).await?.into_inner().message;
    out.line(format!("client: a first call -> {reply}"));
    ensure!(reply == "backend-1", "first call went to {reply}");
    started.recv().await;

    // A call of 500 ms, and the shutdown while it runs.
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.unary_echo(echo("500")).await }
    });
    started.recv().await;
    let shutdown_at = Instant::now();
    let stopping = tokio::spawn(server.shutdown());

    // New calls meanwhile go to the other server.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tally = call_n(&client, 3).await?;
    out.line(format!(
        "client: 3 new calls during the shutdown -> {tally}"
    ));
    ensure!(
        tally.get("backend-2") == 3,
        "new calls reached the stopping server: {tally}"
    );
    let direct = Channel::builder(format!("http://{addr}")).connect().await;
    let refused = match direct {
        Ok(_) => return Err("a new connection to the stopping server was accepted".into()),
        Err(e) => e,
    };
    out.line(format!(
        "client: a new channel to backend-1 only: {refused}"
    ));

    let reply = in_flight.await??.into_inner().message;
    out.line(format!("client: the call in flight completed -> {reply}"));
    ensure!(reply == "backend-1", "in-flight call: {reply}");
    stopping.await??;
    out.line(format!(
        "backend-1: stopped {} ms after the shutdown started",
        shutdown_at.elapsed().as_millis()
    ));

    // A call longer than the grace period is cancelled when it ends.
    let (server, mut started) = start_slow("backend-3", Duration::from_millis(300), out).await?;
    let client = EchoClient::new(crate::connect(&server.url()).await?);
    let too_long = tokio::spawn(async move { client.unary_echo(echo("5000")).await });
    started.recv().await;
    let shutdown_at = Instant::now();
    server.shutdown().await?;
    out.line(format!(
        "backend-3: stopped {} ms after the shutdown started",
        shutdown_at.elapsed().as_millis()
    ));
    let err = too_long
        .await?
        .err()
        .ok_or("a call outlived the grace period")?;
    out.line(format!(
        "client: the call longer than the grace period -> {} ({})",
        err.code().as_str(),
        err.message()
    ));
    // The server resets the call's stream (CANCELLED); had the connection gone first, the
    // client would see UNAVAILABLE.
    ensure!(
        matches!(err.code(), Code::Cancelled | Code::Unavailable),
        "{err:?}"
    );

    other.shutdown().await?;
    Ok(())
}
