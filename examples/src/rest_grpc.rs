//! One port, REST and gRPC (grpc-runtime's `tower` cargo feature): an axum `Router`
//! (`GET /hello`, and `GET /metrics` with the server's gRFC A66 OpenTelemetry metrics in
//! Prometheus text format) as the server's fallback service, next to the Echo service,
//! health and reflection, with tower-http's `TraceLayer` around the gRPC calls. The
//! REST routes answer over HTTP/1.1 and HTTP/2 alike; gRPC calls go to gRPC.
//!
//! The Prometheus rendering is the stats monitoring example's
//! ([`PrometheusText`](crate::features::stats_monitoring::PrometheusText)).

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use bytes::Bytes;
use grpc_runtime::otel::OpenTelemetry;
use grpc_runtime::server::Server;
use grpc_runtime::services::health::health_client::HealthClient;
use grpc_runtime::services::health::{HealthCheckRequest, HealthReporter, ServingStatus};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::features::echo;
use crate::features::multiplexing::SimpleEcho;
use crate::features::stats_monitoring::{scrape, PrometheusText};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::EchoServer;
use crate::{ensure, BoxError, RunningServer, Transcript};

/// The REST side: `GET /hello`, and `GET /metrics` (the provider flushed, then the last
/// export as Prometheus text).
pub fn rest_routes(provider: SdkMeterProvider, exporter: PrometheusText) -> axum::Router {
    axum::Router::new()
        .route("/hello", get(|| async { "hello from axum\n" }))
        .route(
            "/metrics",
            get(move || {
                let (provider, exporter) = (provider.clone(), exporter.clone());
                async move {
                    let _ = provider.force_flush();
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        exporter.text(),
                    )
                }
            }),
        )
}

/// Starts the server on `addr`: Echo, health (Echo SERVING), reflection, a
/// `TraceLayer` around gRPC, the REST routes as the fallback service, A66 metrics.
pub async fn start(addr: SocketAddr) -> Result<RunningServer, BoxError> {
    let exporter = PrometheusText::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(exporter.clone())
                .with_interval(Duration::from_secs(5))
                .build(),
        )
        .build();
    let otel = OpenTelemetry::builder().meter_provider(&provider).build();
    let health = HealthReporter::new();
    health.set_serving("grpc.examples.echo.Echo");
    let builder = Server::builder()
        .opentelemetry(otel)
        .add_service(EchoServer::new(SimpleEcho))
        .add_service(health.service())
        .add_reflection()
        .layer(tower_http::trace::TraceLayer::new_for_grpc())
        .fallback_service(rest_routes(provider, exporter));
    Ok(RunningServer::start_on(builder, addr).await?)
}

/// `GET path` over HTTP/1.1: the status line and the body.
pub async fn get_http1(addr: SocketAddr, path: &str) -> Result<(String, String), BoxError> {
    let mut sock = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// `GET path` over HTTP/2 (prior knowledge): the status and the body.
pub async fn get_http2(addr: SocketAddr, path: &str) -> Result<(u16, String), BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let (client, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await?;
    let req = http::Request::get(format!("http://{addr}{path}")).body(())?;
    let (resp, _) = client.send_request(req, true)?;
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk: Bytes = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Runs the example on `addr` (port 0 for any): REST over HTTP/1.1 and HTTP/2, a gRPC
/// echo, a health check and a metrics scrape, all on one port. With `serve_for`, the
/// server stays up that long afterwards (the binary's `--serve-secs`).
pub async fn run_with(
    out: &Transcript,
    addr: SocketAddr,
    serve_for: Duration,
) -> Result<(), BoxError> {
    let server = start(addr).await?;
    let at = server.addr();
    out.line(format!(
        "one port: {at} (REST: /hello, /metrics; gRPC: Echo, health, reflection)"
    ));

    let (status, body) = get_http1(at, "/hello").await?;
    ensure!(
        status.starts_with("HTTP/1.1 200"),
        "HTTP/1.1 /hello: {status}"
    );
    out.line(format!("REST over HTTP/1.1: GET /hello -> {}", body.trim()));
    let (status, body) = get_http2(at, "/hello").await?;
    ensure!(status == 200, "HTTP/2 /hello: {status}");
    out.line(format!("REST over HTTP/2: GET /hello -> {}", body.trim()));

    let channel = crate::connect(&server.url()).await?;
    let reply = EchoClient::new(channel.clone())
        .unary_echo(echo("one port"))
        .await?
        .into_inner();
    out.line(format!("gRPC: UnaryEcho -> {:?}", reply.message));
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "grpc.examples.echo.Echo".into(),
        })
        .await?
        .into_inner();
    ensure!(
        health.status == ServingStatus::Serving as i32,
        "health: {health:?}"
    );
    out.line("gRPC health: grpc.examples.echo.Echo SERVING");

    let text = scrape(at).await?;
    let want =
        "grpc_server_call_started_total{grpc_method=\"grpc.examples.echo.Echo/UnaryEcho\"} 1";
    ensure!(
        text.lines().any(|l| l == want),
        "missing from /metrics: {want}"
    );
    out.line(format!("/metrics (same port): {want}"));

    if !serve_for.is_zero() {
        out.line(format!("serving for {}s", serve_for.as_secs()));
        tokio::time::sleep(serve_for).await;
    }
    server.shutdown().await?;
    Ok(())
}

/// [`run_with`] on an ephemeral port, exiting after the checks.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    run_with(out, SocketAddr::from(([127, 0, 0, 1], 0)), Duration::ZERO).await
}
