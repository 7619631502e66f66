//! Deadlines: a call with a timeout that the server answers in time, one it does not
//! (DEADLINE_EXCEEDED on the client; the server sees its handler cancelled), and
//! propagation: a middle server forwards to a back server without setting a timeout, and
//! the back server sees the deadline the client set, minus the time spent on the way.

use std::time::Duration;

use grpc_runtime::server::Server;
use grpc_runtime::{Code, Request, Response, Status};

use super::echo;
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{connect, ensure, BoxError, RunningServer, Transcript};

/// The back server: answers with the deadline it sees ("deadline in N ms" or "no
/// deadline"); a message containing "delay" is answered only after 5 s, or never if the
/// call is cancelled first.
#[derive(Debug, Clone)]
pub struct BackEcho {
    out: Transcript,
}

impl Echo for BackEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let ctx = request.context().clone();
        let seen = match ctx.time_remaining() {
            Some(left) => format!("deadline in {} ms", left.as_millis()),
            None => "no deadline".to_string(),
        };
        let message = request.into_inner().message;
        self.out.line(format!("back server: {message:?}, {seen}"));
        if message.contains("delay") {
            tokio::select! {
                status = ctx.cancelled() => {
                    self.out.line(format!("back server: {message:?} ended early: {}", status.code().as_str()));
                    return Err(status);
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
        Ok(Response::new(EchoResponse {
            message: format!("{message} ({seen})"),
        }))
    }
}

/// The middle server: forwards UnaryEcho to the back server without setting a timeout, so
/// the outgoing call inherits the incoming call's deadline.
#[derive(Debug, Clone)]
pub struct MiddleEcho {
    back: EchoClient,
    out: Transcript,
}

impl Echo for MiddleEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let left = request.context().time_remaining();
        self.out.line(format!(
            "middle server: forwarding, deadline in {:?} ms",
            left.map(|d| d.as_millis())
        ));
        let reply = self.back.unary_echo(request.into_inner()).await?;
        Ok(Response::new(EchoResponse {
            message: format!("via middle: {}", reply.into_inner().message),
        }))
    }
}

async fn call(client: &EchoClient, message: &str, timeout: Duration) -> Result<String, Status> {
    let mut request = Request::new(echo(message));
    request.set_timeout(timeout);
    client
        .unary_echo(request)
        .await
        .map(|r| r.into_inner().message)
}

/// Parses "deadline in N ms" out of a reply.
fn deadline_ms(reply: &str) -> Option<u64> {
    let rest = reply.split("deadline in ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// Runs the example: back and middle servers and the client in this process.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let back = RunningServer::start(
        Server::builder().add_service(EchoServer::new(BackEcho { out: out.clone() })),
    )
    .await?;
    let back_client = EchoClient::new(connect(&back.url()).await?);
    let middle = RunningServer::start(Server::builder().add_service(EchoServer::new(MiddleEcho {
        back: back_client.clone(),
        out: out.clone(),
    })))
    .await?;
    let middle_client = EchoClient::new(connect(&middle.url()).await?);

    let reply = call(&back_client, "hello", Duration::from_secs(2)).await?;
    out.line(format!("client: timeout 2 s -> {reply:?}"));
    let ms = deadline_ms(&reply).ok_or("back server saw no deadline")?;
    ensure!(
        ms > 0 && ms <= 2000,
        "back server saw deadline in {ms} ms, sent 2000"
    );

    let started = std::time::Instant::now();
    let status = call(&back_client, "delay", Duration::from_millis(300))
        .await
        .err()
        .ok_or("delay: expected an error")?;
    out.line(format!(
        "client: timeout 300 ms on a slow call -> {} after {} ms",
        status.code().as_str(),
        started.elapsed().as_millis()
    ));
    ensure!(
        status.code() == Code::DeadlineExceeded,
        "delay: expected DEADLINE_EXCEEDED, got {status}"
    );

    let reply = call(&middle_client, "propagate me", Duration::from_millis(1500)).await?;
    out.line(format!(
        "client: timeout 1.5 s through the middle server -> {reply:?}"
    ));
    let ms = deadline_ms(&reply).ok_or("back server saw no inherited deadline")?;
    ensure!(
        ms > 0 && ms <= 1500,
        "back server saw deadline in {ms} ms, client sent 1500"
    );

    let status = call(
        &middle_client,
        "delay via middle",
        Duration::from_millis(400),
    )
    .await
    .err()
    .ok_or("expected an error")?;
    out.line(format!(
        "client: timeout 400 ms, slow back server behind the middle -> {}",
        status.code().as_str()
    ));
    ensure!(
        status.code() == Code::DeadlineExceeded,
        "expected DEADLINE_EXCEEDED, got {status}"
    );

    // Give the back server a moment to report its cancelled handler.
    for _ in 0..50 {
        if out
            .lines()
            .iter()
            .filter(|l| l.contains("ended early"))
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    middle.shutdown().await?;
    back.shutdown().await?;
    Ok(())
}
