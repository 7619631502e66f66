//! Cancellation: the client abandons calls (drops a bidi stream after two round trips, and
//! drops an unfinished unary call), the runtime resets the HTTP/2 stream
//! (RST_STREAM CANCEL), and the server's handler observes CANCELLED through
//! `ServerContext::cancelled()`. `cancelled()` also resolves once a call finished
//! normally (so tasks a handler spawned stop too); `ServerContext::cancellation()` tells
//! the two apart: `Some(status)` only for a real cancellation.

use std::time::Duration;

use futures_util::stream;
use grpc_runtime::server::Server;
use grpc_runtime::{BoxStream, Code, Request, Response, ServerContext, Status, Streaming};
use tokio::sync::mpsc;

use super::{echo, echo_each};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{connect, ensure, BoxError, RunningServer, Transcript};

/// How long the server waits for a cancellation before giving up watching.
const WATCH: Duration = Duration::from_secs(10);

/// The server: echoes, and reports to `cancelled` (and the transcript) every call it sees
/// cancelled; calls that finished normally are only noted in the transcript.
#[derive(Debug, Clone)]
pub struct CancelEcho {
    out: Transcript,
    cancelled: mpsc::UnboundedSender<(String, Code)>,
}

impl CancelEcho {
    /// Watches the call from a spawned task: `cancelled()` resolves when the call is over
    /// for the handler, and `cancellation()` says whether it was really cancelled (client
    /// reset, deadline, shutdown) or finished normally.
    fn watch(&self, call: &str, ctx: ServerContext) {
        let (out, tx, call) = (self.out.clone(), self.cancelled.clone(), call.to_string());
        tokio::spawn(async move {
            if tokio::time::timeout(WATCH, ctx.cancelled()).await.is_err() {
                return;
            }
            match ctx.cancellation() {
                Some(status) => {
                    out.line(format!(
                        "server: {call} call cancelled ({})",
                        status.code().as_str()
                    ));
                    let _ = tx.send((call, status.code()));
                }
                None => out.line(format!("server: {call} call finished normally")),
            }
        });
    }
}

impl Echo for CancelEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let ctx = request.context().clone();
        self.watch("unary", ctx.clone());
        self.out.line(format!(
            "server: unary {:?}, working slowly",
            request.get_ref().message
        ));
        tokio::select! {
            status = ctx.cancelled() => Err(status),
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                Ok(Response::new(EchoResponse { message: request.into_inner().message }))
            }
        }
    }

    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        self.watch("bidi", request.context().clone());
        let out = self.out.clone();
        let replies = echo_each(request.into_inner(), move |m| {
            out.line(format!("server: bidi echo {m:?}"));
            m
        });
        Ok(Response::new(replies))
    }
}

async fn expect_cancel(
    rx: &mut mpsc::UnboundedReceiver<(String, Code)>,
    call: &str,
) -> Result<(), BoxError> {
    let (got, code) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .map_err(|_| format!("server did not see the {call} call cancelled"))?
        .ok_or("server gone")?;
    ensure!(
        got == call && code == Code::Cancelled,
        "expected {call} CANCELLED, server saw {got} {}",
        code.as_str()
    );
    Ok(())
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let service = CancelEcho {
        out: out.clone(),
        cancelled: tx,
    };
    let server =
        RunningServer::start(Server::builder().add_service(EchoServer::new(service))).await?;
    let client = EchoClient::new(connect(&server.url()).await?);

    // Bidi: two round trips, then the client drops both halves of the call.
    let (send, recv) = mpsc::unbounded_channel::<EchoRequest>();
    let requests = stream::unfold(recv, |mut recv| async move {
        recv.recv().await.map(|m| (m, recv))
    });
    let mut replies = client
        .bidirectional_streaming_echo(requests)
        .await?
        .into_inner();
    for i in 1..=2 {
        send.send(echo(&format!("hello {i}")))?;
        let reply = replies.message().await?.ok_or("stream ended early")?;
        out.line(format!("client: got {:?}", reply.message));
        ensure!(
            reply.message == format!("hello {i}"),
            "wrong echo {reply:?}"
        );
    }
    out.line("client: cancelling the bidi call (dropping it)");
    drop(replies);
    drop(send);
    expect_cancel(&mut rx, "bidi").await?;

    // Unary: once the server is working on it, the client stops waiting and drops the call.
    let call = client.unary_echo(echo("slow one"));
    let server_busy = async {
        while !out.contains("working slowly") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::select! {
        r = call => return Err(format!("slow call finished: {r:?}").into()),
        _ = server_busy => out.line("client: gave up on the unary call (dropping it)"),
    }
    expect_cancel(&mut rx, "unary").await?;

    // The channel is still fine for new calls.
    let mut request = Request::new(stream::iter(vec![echo("after cancel")]));
    request.set_timeout(Duration::from_secs(5));
    let mut replies = client
        .bidirectional_streaming_echo(request)
        .await?
        .into_inner();
    let reply = replies.message().await?.ok_or("no reply after cancel")?;
    out.line(format!(
        "client: new call on the same channel -> {:?}",
        reply.message
    ));
    ensure!(reply.message == "after cancel", "wrong echo {reply:?}");
    ensure!(
        replies.message().await?.is_none(),
        "expected the end of the stream"
    );
    out.line(format!(
        "client: that call ended with {}",
        replies.status().map(|s| s.code().as_str()).unwrap_or("?")
    ));
    // A call that ended normally is not reported as cancelled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !out.contains("server: bidi call finished normally") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "server did not see the last call finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ensure!(
        rx.try_recv().is_err(),
        "server saw a cancellation of a call that ended normally"
    );

    server.shutdown().await?;
    Ok(())
}
