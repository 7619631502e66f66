//! Health checking, in the shape of grpc-go's `features/health`, on both sides:
//! - server: a [`HealthReporter`] serves `grpc.health.v1.Health` next to the Echo service
//!   and flips the Echo service between SERVING and NOT_SERVING; hooked to the server's
//!   shutdown (`ServerBuilder::on_shutdown`) it reports NOT_SERVING as the server stops;
//! - a client `Watch` stream sees every change as it happens;
//! - client-side health checking (gRFC A17): a round_robin channel over two backends with
//!   `healthCheckConfig` in its service config watches each backend's health itself and
//!   sends calls only to the backends that are SERVING. A NOT_SERVING backend leaves the
//!   rotation (its connection stays up) and comes back when it serves again; with no
//!   backend serving, calls fail with UNAVAILABLE.

use std::time::{Duration, Instant};

use grpc_runtime::server::Server;
use grpc_runtime::services::health::health_client::HealthClient;
use grpc_runtime::services::health::{
    HealthCheckRequest, HealthCheckResponse, HealthReporter, ServingStatus,
};
use grpc_runtime::{Channel, Code, Streaming};

use super::{call_n, echo, until_all_answer, NamedEcho, Tally};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{EchoServer, SERVICE_NAME};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// A backend: a [`NamedEcho`] and the reporter of its health.
struct HealthBackend {
    name: String,
    health: HealthReporter,
    server: RunningServer,
}

async fn start_backend(name: &str, out: &Transcript) -> Result<HealthBackend, BoxError> {
    let health = HealthReporter::new();
    health.set_serving(SERVICE_NAME);
    let on_shutdown = health.clone();
    let server = RunningServer::start(
        Server::builder()
            .add_service(EchoServer::new(NamedEcho {
                name: name.to_string(),
            }))
            .add_service(health.service())
            .on_shutdown(move || on_shutdown.shutdown()),
    )
    .await?;
    out.line(format!(
        "{name} listening on {} ({SERVICE_NAME}: SERVING)",
        server.addr()
    ));
    Ok(HealthBackend {
        name: name.to_string(),
        health,
        server,
    })
}

impl HealthBackend {
    fn set(&self, status: ServingStatus, out: &Transcript) {
        out.line(format!(
            "{}: {SERVICE_NAME} -> {}",
            self.name,
            status.as_str_name()
        ));
        self.health.set_serving_status(SERVICE_NAME, status);
    }
}

async fn next_status(
    watch: &mut Streaming<HealthCheckResponse>,
    out: &Transcript,
) -> Result<ServingStatus, BoxError> {
    let reply = tokio::time::timeout(Duration::from_secs(5), watch.message()).await?;
    let status = reply?.ok_or("the Watch stream ended")?.status();
    out.line(format!("watcher: {}", status.as_str_name()));
    Ok(status)
}

/// Calls until a batch of calls is answered by `expected` alone (at most 5 s): health
/// changes reach the client's channel a moment after the server reports them.
async fn until_only(client: &EchoClient, expected: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tally = call_n(client, 4).await?;
        if tally.get(expected) == tally.total() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "calls still go elsewhere than {expected}: {tally}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the example: servers and clients in this process over real sockets.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let b1 = start_backend("backend-1", out).await?;
    let b2 = start_backend("backend-2", out).await?;

    // A Watch stream on backend-1: the current status at once, then every change.
    let health_client = HealthClient::new(crate::connect(&b1.server.url()).await?);
    let mut watch = health_client
        .watch(HealthCheckRequest {
            service: SERVICE_NAME.to_string(),
        })
        .await?
        .into_inner();
    ensure!(
        next_status(&mut watch, out).await? == ServingStatus::Serving,
        "first Watch answer"
    );
    b1.set(ServingStatus::NotServing, out);
    ensure!(
        next_status(&mut watch, out).await? == ServingStatus::NotServing,
        "Watch after NOT_SERVING"
    );
    b1.set(ServingStatus::Serving, out);
    ensure!(
        next_status(&mut watch, out).await? == ServingStatus::Serving,
        "Watch after SERVING"
    );

    // Client-side health checking: round_robin skips backends that are not SERVING.
    let config = format!(
        r#"{{"loadBalancingConfig": [{{"round_robin": {{}}}}], "healthCheckConfig": {{"serviceName": "{SERVICE_NAME}"}}}}"#
    );
    let target = format!("ipv4:{},{}", b1.server.addr(), b2.server.addr());
    let client = EchoClient::new(
        Channel::builder(&target)
            .default_service_config(config)
            .connect()
            .await?,
    );
    out.line(format!(
        "client: round_robin over {target}, health-checking {SERVICE_NAME}"
    ));
    until_all_answer(&client, &["backend-1", "backend-2"]).await?;
    let tally = call_n(&client, 10).await?;
    out.line(format!("client: 10 calls -> {tally}"));
    ensure!(tally == both(5, 5), "both serving: {tally}");

    b2.set(ServingStatus::NotServing, out);
    until_only(&client, "backend-1").await?;
    let tally = call_n(&client, 10).await?;
    out.line(format!("client: 10 calls -> {tally}"));
    ensure!(
        tally.get("backend-1") == 10,
        "backend-2 not serving: {tally}"
    );

    b1.set(ServingStatus::NotServing, out);
    ensure!(
        next_status(&mut watch, out).await? == ServingStatus::NotServing,
        "Watch after NOT_SERVING"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match client.unary_echo(echo("anyone?")).await {
            Err(status) => break status,
            Ok(_) => ensure!(
                Instant::now() < deadline,
                "calls still succeed with no backend serving"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    out.line(format!(
        "client: no backend serving: {} ({})",
        err.code().as_str(),
        err.message()
    ));
    ensure!(
        err.code() == Code::Unavailable,
        "no backend serving: {err:?}"
    );

    b1.set(ServingStatus::Serving, out);
    b2.set(ServingStatus::Serving, out);
    ensure!(
        next_status(&mut watch, out).await? == ServingStatus::Serving,
        "Watch after SERVING"
    );
    // The channel learns of it through its own health streams a moment later; until then
    // it is still TRANSIENT_FAILURE and calls fail fast.
    let ready_by = Instant::now() + Duration::from_secs(5);
    while client.channel().state() != grpc_runtime::ConnectivityState::Ready {
        ensure!(
            Instant::now() < ready_by,
            "the channel never became READY again"
        );
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            client
                .channel()
                .wait_for_state_change(client.channel().state()),
        )
        .await;
    }
    until_all_answer(&client, &["backend-1", "backend-2"]).await?;
    let tally = call_n(&client, 10).await?;
    out.line(format!("client: 10 calls -> {tally}"));
    ensure!(tally == both(5, 5), "both serving again: {tally}");

    // Shutting backend-1 down: its on_shutdown hook reports NOT_SERVING to the watcher
    // while the Watch stream is still open. The watcher then ends its call, so the
    // graceful shutdown does not wait for it. The round_robin channel goes first: its
    // health checks are Watch calls on the backends too, which a graceful shutdown would
    // wait for (our channel does not yet end them on the server's GOAWAY, as grpc-go's
    // does).
    drop(client);
    let stopping = tokio::spawn(b1.server.shutdown());
    out.line("backend-1: shutting down");
    ensure!(
        next_status(&mut watch, out).await? == ServingStatus::NotServing,
        "Watch at shutdown"
    );
    drop(watch);
    stopping.await??;
    b2.server.shutdown().await?;
    Ok(())
}

fn both(a: usize, b: usize) -> Tally {
    let mut t = Tally::default();
    t.add_n("backend-1", a);
    t.add_n("backend-2", b);
    t
}
