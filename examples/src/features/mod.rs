//! The feature examples, one module each, all on the Echo service (`proto/echo/echo.proto`,
//! the same service grpc-go's feature examples use). Every module's `run` starts its
//! server(s) on `127.0.0.1:0`, runs the client side against them over real HTTP/2, reports
//! both sides in a [`crate::Transcript`], checks what came back and shuts down.

pub mod authentication;
pub mod authz;
pub mod cancellation;
pub mod compression;
pub mod deadlines;
pub mod errors;
pub mod flow_control;
pub mod graceful_stop;
pub mod health;
pub mod interceptors;
pub mod keepalive;
pub mod load_balancing;
pub mod metadata;
pub mod metadata_interceptor;
pub mod multiplexing;
pub mod name_resolving;
pub mod reflection;
pub mod retry;
pub mod stats_monitoring;
pub mod unix_abstract;
pub mod wait_for_ready;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::stream;
use grpc_runtime::server::Server;
use grpc_runtime::{BoxStream, Request, Response, Status, Streaming};

use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// Answers every incoming request with `reply(message)`, in order, as the response stream
/// is polled; an incoming error ends the stream with that error.
pub fn echo_each(
    incoming: Streaming<EchoRequest>,
    reply: impl Fn(String) -> String + Send + Sync + 'static,
) -> BoxStream<EchoResponse> {
    let reply = std::sync::Arc::new(reply);
    Box::pin(stream::unfold(Some(incoming), move |state| {
        let reply = reply.clone();
        async move {
            let mut incoming = state?;
            match incoming.message().await {
                Ok(Some(req)) => Some((
                    Ok(EchoResponse {
                        message: reply(req.message),
                    }),
                    Some(incoming),
                )),
                Ok(None) => None,
                Err(status) => Some((Err(status), None)),
            }
        }
    }))
}

/// A stream of `n` replies `"<message> #i"`.
pub fn repeat_reply(message: &str, n: usize) -> BoxStream<EchoResponse> {
    let items: Vec<Result<EchoResponse, Status>> = (1..=n)
        .map(|i| {
            Ok(EchoResponse {
                message: format!("{message} #{i}"),
            })
        })
        .collect();
    Box::pin(stream::iter(items))
}

/// Builds an `EchoRequest`.
pub fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_string(),
    }
}

/// An Echo server that answers every UnaryEcho with its own name, so the client can tell
/// which backend served a call (the name-resolving and load-balancing examples).
#[derive(Debug, Clone)]
pub struct NamedEcho {
    /// What every reply says, e.g. `backend-1`.
    pub name: String,
}

impl Echo for NamedEcho {
    async fn unary_echo(
        &self,
        _request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            message: self.name.clone(),
        }))
    }
}

/// One [`NamedEcho`] server.
#[derive(Debug)]
pub struct Backend {
    /// Its name (what it answers).
    pub name: String,
    /// The running server.
    pub server: RunningServer,
}

impl Backend {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// Starts `backend-1` .. `backend-<n>`, each a [`NamedEcho`] on its own `127.0.0.1:0`.
pub async fn start_backends(n: usize, out: &Transcript) -> Result<Vec<Backend>, BoxError> {
    let mut backends = Vec::with_capacity(n);
    for i in 1..=n {
        let name = format!("backend-{i}");
        let server = RunningServer::start(
            Server::builder().add_service(EchoServer::new(NamedEcho { name: name.clone() })),
        )
        .await?;
        out.line(format!("{name} listening on {}", server.addr()));
        backends.push(Backend { name, server });
    }
    Ok(backends)
}

/// Shuts down every backend.
pub async fn stop_backends(backends: Vec<Backend>) -> Result<(), BoxError> {
    for b in backends {
        b.server.shutdown().await?;
    }
    Ok(())
}

/// How many calls each backend answered, by name (sorted, so it prints the same way
/// every run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(pub BTreeMap<String, usize>);

impl Tally {
    /// Counts one call answered by `name`.
    pub fn add(&mut self, name: &str) {
        self.add_n(name, 1);
    }

    /// Counts `n` calls answered by `name`.
    pub fn add_n(&mut self, name: &str, n: usize) {
        *self.0.entry(name.to_string()).or_insert(0) += n;
    }

    /// The calls `name` answered.
    pub fn get(&self, name: &str) -> usize {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// All calls counted.
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Tally) {
        for (name, n) in &other.0 {
            self.add_n(name, *n);
        }
    }
}

impl std::fmt::Display for Tally {
    /// `backend-1: 5, backend-2: 5`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(name, n)| format!("{name}: {n}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Makes `n` UnaryEcho calls one after the other and counts which backend answered each
/// (the reply of a [`NamedEcho`] is its name). A failed call is an error.
pub async fn call_n(client: &EchoClient, n: usize) -> Result<Tally, BoxError> {
    let mut tally = Tally::default();
    for i in 0..n {
        let reply = client
            .unary_echo(echo("who are you?"))
            .await
            .map_err(|s| format!("call {i} failed: {s}"))?;
        tally.add(&reply.into_inner().message);
    }
    Ok(tally)
}

/// Calls until every backend in `names` has answered at least once (at most 5 s).
///
/// A policy that connects to every backend (round_robin, weighted_random) reports the
/// channel READY as soon as the *first* connection is up and adds the others to its
/// picker as they connect, a few milliseconds later. The examples wait for that before
/// counting, so their counts do not depend on connection timing.
pub async fn until_all_answer(client: &EchoClient, names: &[&str]) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Tally::default();
    loop {
        seen.merge(&call_n(client, names.len()).await?);
        if names.iter().all(|n| seen.get(n) > 0) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "backends {names:?} never all answered: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
