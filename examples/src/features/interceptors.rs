//! Interceptors on both sides:
//! - client: a logging interceptor timing every call (its `start` and `finish_call` hooks:
//!   `start` numbers the call in the call's extensions, `finish_call` gets that number back
//!   with the call's start time and server address in a `CallInfo`), and a token
//!   interceptor adding `authorization: Bearer <token>`;
//! - server: a logging interceptor timing every call (it wraps the rest of the chain), and
//!   a token-auth interceptor answering UNAUTHENTICATED without calling the handler when
//!   the token is missing or wrong.
//!
//! Every log line is a `tracing` event (target `examples::interceptors`) and is also added
//! to the transcript.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grpc_runtime::client::interceptor::InterceptFuture;
use grpc_runtime::client::{interceptor_fn, CallInfo, ClientCallContext, Interceptor};
use grpc_runtime::server::{self, CallHead, Next, Server};
use grpc_runtime::{BoxStream, Channel, Code, Request, Response, Status};

use super::{echo, repeat_reply};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// The token the server accepts.
pub const TOKEN: &str = "some-secret-token";

/// The echo service behind the interceptors.
#[derive(Debug, Clone, Copy)]
pub struct PlainEcho;

impl Echo for PlainEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
        }))
    }

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        Ok(Response::new(repeat_reply(
            &request.into_inner().message,
            3,
        )))
    }
}

fn log(out: &Transcript, line: String) {
    tracing::info!(target: "examples::interceptors", "{line}");
    out.line(line);
}

/// Client logging interceptor: logs each call's start and its final status with the time
/// it took and the server it went to. `start` numbers the call in the call's extensions;
/// `finish_call` gets that number back, with the start time, in its `CallInfo`: no table
/// of calls in flight, exact however calls overlap.
pub struct ClientLogger {
    out: Transcript,
    calls: AtomicU64,
}

/// The number `ClientLogger` gives a call (per-call state, from `start` to `finish_call`).
#[derive(Clone, Copy, Debug)]
struct CallNumber(u64);

impl ClientLogger {
    /// A logger writing to `out`.
    pub fn new(out: Transcript) -> ClientLogger {
        ClientLogger {
            out,
            calls: AtomicU64::new(0),
        }
    }
}

impl Interceptor for ClientLogger {
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        call.extensions_mut().insert(CallNumber(n));
        log(
            &self.out,
            format!(
                "client: start {} ({:?}) call #{n}",
                call.path(),
                call.kind()
            ),
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn finish_call(&self, call: &CallInfo, status: &Status) {
        let n = call
            .extensions()
            .get::<CallNumber>()
            .map(|c| c.0)
            .unwrap_or_default();
        let ms = call.elapsed().as_secs_f64() * 1000.0;
        let server = call
            .peer()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "not reached".into());
        log(
            &self.out,
            format!(
                "client: end {}: {} in {ms:.1} ms (call #{n}, server {server})",
                call.path(),
                status.code().as_str()
            ),
        );
    }
}

/// Client interceptor adding `authorization: Bearer <token>` to every call.
pub fn token_interceptor(token: &'static str) -> impl Interceptor {
    interceptor_fn(move |call| {
        call.metadata_mut()
            .insert("authorization", format!("Bearer {token}"))
            .map_err(|e| Status::internal(format!("cannot set authorization: {e}")))
    })
}

/// Server logging interceptor: times the whole call (including later interceptors).
pub fn server_logger(out: Transcript) -> impl server::Interceptor {
    server::interceptor_fn(move |head: CallHead, next: Next| {
        let out = out.clone();
        async move {
            let method = head.method().to_string();
            let peer = head
                .context()
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            log(&out, format!("server: start {method} from {peer}"));
            let started = Instant::now();
            let status = next.run(head).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log(
                &out,
                format!(
                    "server: end {method}: {} in {ms:.1} ms",
                    status.code().as_str()
                ),
            );
            status
        }
    })
}

/// Server token-auth interceptor: UNAUTHENTICATED unless `authorization` is
/// `Bearer <token>`; the handler is not called then.
pub fn server_auth(token: &'static str) -> impl server::Interceptor {
    server::interceptor_fn(move |head: CallHead, next: Next| async move {
        let ok = head
            .metadata
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(token);
        if ok {
            next.run(head).await
        } else {
            Status::unauthenticated("missing or invalid token")
        }
    })
}

async fn client_calls(
    client: &EchoClient,
    label: &str,
    out: &Transcript,
) -> Result<Vec<Code>, BoxError> {
    let mut codes = Vec::new();
    match client.unary_echo(echo(label)).await {
        Ok(r) => {
            out.line(format!("{label}: unary reply {:?}", r.get_ref().message));
            codes.push(Code::Ok);
        }
        Err(status) => {
            out.line(format!(
                "{label}: unary failed: {} ({})",
                status.code().as_str(),
                status.message()
            ));
            codes.push(status.code());
        }
    }
    let result = async {
        let mut replies = client
            .server_streaming_echo(echo(label))
            .await?
            .into_inner();
        let mut n = 0;
        while replies.message().await?.is_some() {
            n += 1;
        }
        Ok::<usize, Status>(n)
    }
    .await;
    match result {
        Ok(n) => {
            out.line(format!("{label}: streaming call got {n} replies"));
            codes.push(Code::Ok);
        }
        Err(status) => {
            out.line(format!(
                "{label}: streaming call failed: {} ({})",
                status.code().as_str(),
                status.message()
            ));
            codes.push(status.code());
        }
    }
    Ok(codes)
}

/// Runs the example: server and clients in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder()
            .add_interceptor(server_logger(out.clone()))
            .add_interceptor(server_auth(TOKEN))
            .add_service(EchoServer::new(PlainEcho)),
    )
    .await?;

    let with_token = Channel::builder(server.url())
        .interceptor(ClientLogger::new(out.clone()))
        .interceptor(token_interceptor(TOKEN))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let codes = client_calls(&EchoClient::new(with_token), "with token", out).await?;
    ensure!(
        codes == [Code::Ok, Code::Ok],
        "with token: expected OK, OK; got {codes:?}"
    );

    let without = Channel::builder(server.url())
        .interceptor(ClientLogger::new(out.clone()))
        .connect()
        .await?;
    let codes = client_calls(&EchoClient::new(without), "without token", out).await?;
    ensure!(
        codes == [Code::Unauthenticated, Code::Unauthenticated],
        "without token: expected UNAUTHENTICATED twice; got {codes:?}"
    );

    let wrong = Channel::builder(server.url())
        .interceptor(token_interceptor("not-the-token"))
        .connect()
        .await?;
    let codes = client_calls(&EchoClient::new(wrong), "wrong token", out).await?;
    ensure!(
        codes == [Code::Unauthenticated, Code::Unauthenticated],
        "wrong token: got {codes:?}"
    );

    server.shutdown().await?;
    Ok(())
}
