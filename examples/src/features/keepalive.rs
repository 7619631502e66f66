//! Keepalive and connection management (gRFC A8, A9), in the shape of grpc-go's
//! `features/keepalive`, with short times so it runs in a few seconds:
//! - client keepalive (`Endpoint::keepalive_time`, `keepalive_timeout`,
//!   `keepalive_without_calls`): PINGs after the connection has been silent for the
//!   keepalive time; a PING not answered within the timeout closes the connection (its
//!   calls fail UNAVAILABLE, the channel reconnects). Real settings are 10 s or more
//!   (shorter ones are raised to 10 s); the example uses
//!   `keepalive_time_unchecked_for_tests` for 200 ms;
//! - server enforcement (`ServerBuilder::permit_keepalive_time`,
//!   `permit_keepalive_without_calls`): a server that allows such PINGs answers them and
//!   the idle connection stays up; one with the default policy (one PING per 5 minutes,
//!   none without calls) closes the connection with GOAWAY(ENHANCE_YOUR_CALM,
//!   "too_many_pings") after the third early PING, and the client doubles its keepalive
//!   time for its next connections;
//! - `ServerBuilder::max_connection_idle` closes a connection without calls, and
//!   `max_connection_age` (with `max_connection_age_grace`) replaces connections
//!   however busy they are: both with a graceful GOAWAY, so no call fails; the client's
//!   channel goes IDLE and reconnects on the next call.
//!
//! The server side is observed through its connections: the example serves a listener
//! whose connections report when they open and close and how many bytes the server read
//! (an HTTP/2 PING frame is 17 bytes). The client side is observed through its channel:
//! its connectivity state and `Channel::keepalive_time`. (The server can send keepalive
//! PINGs too, `ServerBuilder::keepalive_time` and `keepalive_timeout`; clients answer
//! them.)

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grpc_runtime::server::{Server, ServerBuilder};
use grpc_runtime::{Channel, ConnectivityState};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{echo, NamedEcho};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::EchoServer;
use crate::{ensure, BoxError, Transcript};

/// The client's keepalive time in this example (far too short for real use).
pub const KEEPALIVE: Duration = Duration::from_millis(200);

/// A server connection that reports when it closes and counts the bytes the server read.
struct Logged {
    io: TcpStream,
    id: usize,
    opened: Instant,
    read: Arc<AtomicU64>,
    name: &'static str,
    out: Transcript,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let (id, ms) = (self.id, self.opened.elapsed().as_millis());
        self.out.line(format!(
            "{}: connection #{id} closed after {ms} ms",
            self.name
        ));
    }
}

impl AsyncRead for Logged {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        self.read
            .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Logged {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A server whose connections report themselves; `read` counts the bytes it read.
struct LoggedServer {
    addr: SocketAddr,
    read: Arc<AtomicU64>,
    opened: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl LoggedServer {
    async fn start(
        name: &'static str,
        builder: ServerBuilder,
        out: &Transcript,
    ) -> Result<LoggedServer, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (read, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, o, out2) = (read.clone(), opened.clone(), out.clone());
        let incoming = futures_util::stream::unfold(listener, move |l| {
            let (r, o, out) = (r.clone(), o.clone(), out2.clone());
            async move {
                let item = l.accept().await.map(|(io, peer)| {
                    let id = o.fetch_add(1, Ordering::Relaxed) + 1;
                    out.line(format!("{name}: connection #{id} opened"));
                    (
                        Logged {
                            io,
                            id,
                            opened: Instant::now(),
                            read: r,
                            name,
                            out,
                        },
                        Some(peer),
                    )
                });
                Some((item, l))
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let builder = builder.add_service(EchoServer::new(NamedEcho {
            name: name.to_string(),
        }));
        let task = tokio::spawn(builder.serve_with_incoming_stream(incoming, async move {
            let _ = stopped.await;
        }));
        out.line(format!("{name} listening on {addr}"));
        Ok(LoggedServer {
            addr,
            read,
            opened,
            stop,
            task,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

/// Waits (at most `limit`) for the channel to leave READY; returns the new state.
async fn left_ready(channel: &Channel, limit: Duration) -> Option<ConnectivityState> {
    tokio::time::timeout(
        limit,
        channel.wait_for_state_change(ConnectivityState::Ready),
    )
    .await
    .ok()
}

fn client_with_keepalive(url: String) -> Result<Channel, BoxError> {
    Ok(Channel::builder(url)
        .keepalive_time_unchecked_for_tests(KEEPALIVE)
        .keepalive_timeout(Duration::from_secs(1))
        .keepalive_without_calls(true)
        .connect_lazy()?)
}

/// Runs the example: servers and clients in this process over real sockets.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    // 1. A server that permits PINGs every 100 ms, with or without calls.
    let permissive = Server::builder()
        .permit_keepalive_time(Duration::from_millis(100))
        .permit_keepalive_without_calls(true);
    let server = LoggedServer::start("lenient server", permissive, out).await?;
    let channel = client_with_keepalive(server.url())?;
    EchoClient::new(channel.clone())
        .unary_echo(echo("hi"))
        .await?;
    let before = server.read.load(Ordering::Relaxed);
    out.line(format!(
        "client: one call, then idle for 1 s with keepalive every {} ms",
        KEEPALIVE.as_millis()
    ));
    let state = left_ready(&channel, Duration::from_secs(1)).await;
    let bytes = server.read.load(Ordering::Relaxed) - before;
    let pings = bytes / 17;
    out.line(format!(
        "lenient server: read {bytes} bytes while idle (about {pings} PING frames of 17 bytes), answered them"
    ));
    out.line(format!("client: channel still READY: {}", state.is_none()));
    ensure!(state.is_none(), "the connection did not stay up: {state:?}");
    ensure!(pings >= 2, "too few keepalive PINGs: {pings}");
    drop(channel);
    server.shutdown().await?;

    // 2. A server with the default policy: the same client's PINGs are abuse.
    let server = LoggedServer::start("strict server", Server::builder(), out).await?;
    let channel = client_with_keepalive(server.url())?;
    EchoClient::new(channel.clone())
        .unary_echo(echo("hi"))
        .await?;
    let started = Instant::now();
    let state = left_ready(&channel, Duration::from_secs(5))
        .await
        .ok_or("the strict server kept the connection")?;
    out.line(format!(
        "client: channel {state:?} after {} ms (GOAWAY too_many_pings); keepalive time now {:?}",
        started.elapsed().as_millis(),
        channel.keepalive_time()
    ));
    ensure!(
        channel.keepalive_time() == Some(KEEPALIVE * 2),
        "keepalive time not doubled: {:?}",
        channel.keepalive_time()
    );
    drop(channel);
    server.shutdown().await?;

    // 3. max_connection_idle: a connection without calls is closed; the next call reconnects.
    let server = LoggedServer::start(
        "idle-limited server",
        Server::builder().max_connection_idle(Duration::from_millis(300)),
        out,
    )
    .await?;
    let channel = Channel::builder(server.url()).connect().await?;
    let client = EchoClient::new(channel.clone());
    client.unary_echo(echo("hi")).await?;
    let started = Instant::now();
    let state = left_ready(&channel, Duration::from_secs(5))
        .await
        .ok_or("the idle connection was kept")?;
    out.line(format!(
        "client: channel {state:?} after {} ms without calls",
        started.elapsed().as_millis()
    ));
    client.unary_echo(echo("again")).await?;
    out.line(format!(
        "client: the next call reconnected (server connections opened: {})",
        server.opened.load(Ordering::Relaxed)
    ));
    ensure!(
        server.opened.load(Ordering::Relaxed) == 2,
        "expected a second connection"
    );
    drop((client, channel));
    server.shutdown().await?;

    // 4. max_connection_age: busy connections are replaced too, without a failed call.
    let aged = Server::builder()
        .max_connection_age(Duration::from_millis(400))
        .max_connection_age_grace(Duration::from_secs(1));
    let server = LoggedServer::start("age-limited server", aged, out).await?;
    let client = EchoClient::new(Channel::builder(server.url()).connect().await?);
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        client.unary_echo(echo("busy")).await?;
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = server.opened.load(Ordering::Relaxed);
    out.line(format!(
        "client: {calls} calls in 1.2 s, none failed, over {opened} connections"
    ));
    ensure!(opened >= 2, "the connection was never replaced");
    drop(client);
    server.shutdown().await?;
    Ok(())
}
