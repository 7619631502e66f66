//! Flow control, in the shape of grpc-go's `features/flow_control`: a server-streaming call
//! whose client does not read for a while. HTTP/2 flow control lets the server send only
//! as many bytes as the client's receive window allows; then its sends wait (here
//! `ResponseSender::send().await` does not return) until the client reads and the window
//! opens again. What a slow reader makes the server buffer is bounded by that window, not
//! by how much the server has to send.
//!
//! The client's windows are `Endpoint::initial_stream_window_size` (1 MiB by default) and
//! `initial_connection_window_size` (2 MiB). With `Endpoint::adaptive_window` (on by
//! default) they grow with the bandwidth-delay product measured while DATA arrives, up to
//! 16 MiB: the bound a slow reader can cost. The server has the same settings on
//! `ServerBuilder` for what clients send. The example runs the call twice with fixed
//! windows (adaptive off, so the numbers do not depend on timing), 64 KiB and 1 MiB, and
//! reports how far the server got before its sends blocked. docs/flow-control.md has the
//! details.

use std::time::{Duration, Instant};

use grpc_runtime::server::Server;
use grpc_runtime::{response_channel, BoxStream, Channel, Request, Response, Status};

use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// The size of every message the server sends.
pub const MESSAGE_SIZE: usize = 16 * 1024;
/// How many messages the server sends per call (2 MiB in all).
pub const MESSAGES: usize = 128;
/// A send that waits longer than this counts as blocked.
const BLOCKED: Duration = Duration::from_millis(100);
/// How long the client waits before it reads.
const CLIENT_PAUSE: Duration = Duration::from_millis(600);

/// Streams [`MESSAGES`] messages of [`MESSAGE_SIZE`] bytes as fast as flow control lets
/// it, and reports when a send blocks.
#[derive(Debug, Clone)]
pub struct FastSender {
    out: Transcript,
}

impl Echo for FastSender {
    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        let label = request.into_inner().message;
        // A channel of one message: its sends wait as soon as the stream's window is full.
        let (tx, stream) = response_channel(1);
        let out = self.out.clone();
        tokio::spawn(async move {
            out.line(format!(
                "server [{label}]: sending {MESSAGES} messages of {} KiB",
                MESSAGE_SIZE / 1024
            ));
            let mut blocked = false;
            for i in 0..MESSAGES {
                let started = Instant::now();
                if tx
                    .send(EchoResponse {
                        message: "x".repeat(MESSAGE_SIZE),
                    })
                    .await
                    .is_err()
                {
                    out.line(format!("server [{label}]: the client went away"));
                    return;
                }
                if !blocked && started.elapsed() > BLOCKED {
                    blocked = true;
                    let kib = i * MESSAGE_SIZE / 1024;
                    out.line(format!(
                        "server [{label}]: sending blocked after {i} messages ({kib} KiB) until the client read"
                    ));
                }
            }
            out.line(format!("server [{label}]: sent {MESSAGES} messages"));
        });
        Ok(Response::new(stream))
    }
}

/// One call: start it, do not read for [`CLIENT_PAUSE`], then read everything.
async fn slow_reader(client: &EchoClient, label: &str, out: &Transcript) -> Result<(), BoxError> {
    let mut replies = client
        .server_streaming_echo(super::echo(label))
        .await?
        .into_inner();
    out.line(format!(
        "client [{label}]: not reading for {} ms",
        CLIENT_PAUSE.as_millis()
    ));
    tokio::time::sleep(CLIENT_PAUSE).await;
    let mut n = 0;
    while let Some(reply) = replies.message().await? {
        ensure!(reply.message.len() == MESSAGE_SIZE, "short message");
        n += 1;
    }
    out.line(format!("client [{label}]: read {n} messages"));
    ensure!(n == MESSAGES, "read {n} of {MESSAGES} messages");
    Ok(())
}

/// The KiB the server got out before its sends blocked, from its report.
fn blocked_after_kib(out: &Transcript, label: &str) -> Option<usize> {
    let prefix = format!("server [{label}]: sending blocked after ");
    let line = out.lines().into_iter().find(|l| l.starts_with(&prefix))?;
    line.split('(').nth(1)?.split(' ').next()?.parse().ok()
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder().add_service(EchoServer::new(FastSender { out: out.clone() })),
    )
    .await?;
    out.line(format!("server listening on {}", server.addr()));

    // A fixed 64 KiB stream window: the server gets about that far ahead of the reader.
    let small = Channel::builder(server.url())
        .initial_stream_window_size(64 * 1024)
        .adaptive_window(false)
        .connect()
        .await?;
    slow_reader(&EchoClient::new(small), "64 KiB window", out).await?;

    // A fixed 1 MiB window (the default initial window): about 1 MiB ahead.
    let large = Channel::builder(server.url())
        .initial_stream_window_size(1024 * 1024)
        .adaptive_window(false)
        .connect()
        .await?;
    slow_reader(&EchoClient::new(large), "1 MiB window", out).await?;

    let small = blocked_after_kib(out, "64 KiB window")
        .ok_or("the server never blocked with a 64 KiB window")?;
    let large = blocked_after_kib(out, "1 MiB window")
        .ok_or("the server never blocked with a 1 MiB window")?;
    out.line(format!(
        "buffered ahead of a reader that does not read: {small} KiB (64 KiB window), {large} KiB (1 MiB window)"
    ));
    // The window plus a few messages held by the response channel and the transport.
    ensure!(
        small <= 64 + 4 * MESSAGE_SIZE / 1024,
        "too much buffered with a 64 KiB window: {small} KiB"
    );
    ensure!(
        large > small && large <= 1024 + 4 * MESSAGE_SIZE / 1024,
        "too much buffered with a 1 MiB window: {large} KiB"
    );

    server.shutdown().await?;
    Ok(())
}
