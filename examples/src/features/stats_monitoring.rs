//! Stats monitoring (grpc-go's `features/stats_monitoring`): the gRFC A66 OpenTelemetry
//! metrics of a server and a client (`grpc_runtime::otel`, cargo feature
//! `opentelemetry`), served in Prometheus text format on an HTTP endpoint.
//!
//! grpc-go's example uses OpenTelemetry's Prometheus exporter. Rust's
//! `opentelemetry-prometheus` is discontinued and brings the `prometheus` crate and its
//! dependencies, so this example renders the text format itself from an
//! `opentelemetry_sdk` `PeriodicReader` with a small exporter ([`PrometheusText`]) and
//! answers `GET /metrics` with a hand-written HTTP/1.1 response. Point Prometheus (or
//! `curl`) at the address it prints.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grpc_runtime::otel::OpenTelemetry;
use grpc_runtime::server::Server;
use grpc_runtime::{Channel, Code};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::echo;
use super::multiplexing::SimpleEcho;
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::EchoServer;
use crate::{ensure, BoxError, RunningServer, Transcript};

/// A metric exporter that keeps the last export rendered in Prometheus text format.
#[derive(Debug, Clone, Default)]
pub struct PrometheusText {
    latest: Arc<Mutex<String>>,
}

impl PrometheusText {
    /// The text of the last export.
    pub fn text(&self) -> String {
        self.latest.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl PushMetricExporter for PrometheusText {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let text = render(metrics);
        if let Ok(mut s) = self.latest.lock() {
            *s = text;
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// OpenTelemetry's name for Prometheus: dots become underscores, the unit is appended
/// (`s` -> `_seconds`, `By` -> `_bytes`; annotations like `{call}` are dropped).
fn prom_name(name: &str, unit: &str) -> String {
    let mut n = name.replace(['.', '-'], "_");
    match unit {
        "s" => n.push_str("_seconds"),
        "By" => n.push_str("_bytes"),
        _ => {}
    }
    n
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attrs
        .map(|kv| {
            format!(
                "{}=\"{}\"",
                kv.key.as_str().replace('.', "_"),
                kv.value.as_str().replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    parts.sort();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The Prometheus text exposition format of `metrics` (counters and histograms, which
/// is what gRPC records).
pub fn render(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for sm in metrics.scope_metrics() {
        for m in sm.metrics() {
            let name = prom_name(m.name(), m.unit());
            match m.data() {
                AggregatedMetrics::U64(MetricData::Sum(s)) => {
                    let _ = writeln!(
                        out,
                        "# HELP {name}_total {}\n# TYPE {name}_total counter",
                        m.description()
                    );
                    for p in s.data_points() {
                        let _ = writeln!(
                            out,
                            "{name}_total{} {}",
                            labels(p.attributes(), None),
                            p.value()
                        );
                    }
                }
                AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                    let _ = writeln!(
                        out,
                        "# HELP {name} {}\n# TYPE {name} histogram",
                        m.description()
                    );
                    for p in h.data_points() {
                        histogram(
                            &mut out,
                            &name,
                            &p.attributes().collect::<Vec<_>>(),
                            p.bounds(),
                            p.bucket_counts(),
                            p.count(),
                            p.sum(),
                        );
                    }
                }
                AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                    let _ = writeln!(
                        out,
                        "# HELP {name} {}\n# TYPE {name} histogram",
                        m.description()
                    );
                    for p in h.data_points() {
                        histogram(
                            &mut out,
                            &name,
                            &p.attributes().collect::<Vec<_>>(),
                            p.bounds(),
                            p.bucket_counts(),
                            p.count(),
                            p.sum() as f64,
                        );
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn histogram(
    out: &mut String,
    name: &str,
    attrs: &[&KeyValue],
    bounds: impl Iterator<Item = f64>,
    counts: impl Iterator<Item = u64>,
    count: u64,
    sum: f64,
) {
    let mut cumulative = 0;
    let counts: Vec<u64> = counts.collect();
    for (bound, c) in bounds.zip(counts.iter()) {
        cumulative += c;
        let _ = writeln!(
            out,
            "{name}_bucket{} {cumulative}",
            labels(attrs.iter().copied(), Some(("le", bound.to_string())))
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{} {count}",
        labels(attrs.iter().copied(), Some(("le", "+Inf".into())))
    );
    let _ = writeln!(
        out,
        "{name}_sum{} {sum}",
        labels(attrs.iter().copied(), None)
    );
    let _ = writeln!(
        out,
        "{name}_count{} {count}",
        labels(attrs.iter().copied(), None)
    );
}

/// Serves `GET /metrics` (anything else: 404) with the provider's metrics, flushed first.
pub async fn serve_metrics(
    listener: TcpListener,
    provider: SdkMeterProvider,
    exporter: PrometheusText,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let provider = provider.clone();
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => n += k,
                }
            }
            let ok = buf[..n].starts_with(b"GET /metrics ");
            let (status, body) = if ok {
                let _ = provider.force_flush();
                ("200 OK", exporter.text())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}

/// `GET http://addr/metrics`, the body.
pub async fn scrape(addr: SocketAddr) -> Result<String, BoxError> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "metrics endpoint answered {head:?}"
    );
    Ok(body.to_string())
}

/// Runs the example: a server and a client, each with its own meter provider, both
/// exported on one endpoint (`metrics_addr`, port 0 for any); ten echoes and one call to
/// a method the server lacks, then a scrape of the endpoint. With `serve_for`, the
/// endpoint stays up that long afterwards (the binary's `--serve-secs`).
pub async fn run_with(
    out: &Transcript,
    metrics_addr: SocketAddr,
    serve_for: Duration,
) -> Result<(), BoxError> {
    let exporter = PrometheusText::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(exporter.clone())
                .with_interval(Duration::from_secs(5))
                .build(),
        )
        .build();
    let otel = OpenTelemetry::builder().meter_provider(&provider).build();

    let server = RunningServer::start(
        Server::builder()
            .opentelemetry(otel.clone())
            .add_service(EchoServer::new(SimpleEcho)),
    )
    .await?;
    let listener = TcpListener::bind(metrics_addr).await?;
    let metrics_at = listener.local_addr()?;
    let metrics_task = tokio::spawn(serve_metrics(listener, provider.clone(), exporter));
    out.line(format!(
        "server on {}; metrics on http://{metrics_at}/metrics",
        server.addr()
    ));

    let channel = Channel::builder(server.url())
        .opentelemetry(otel)
        .connect()
        .await?;
    let client = EchoClient::new(channel.clone());
    for i in 0..10 {
        client.unary_echo(echo(&format!("stats {i}"))).await?;
    }
    let missing = channel
        .unary::<crate::pb::echo::EchoRequest, crate::pb::echo::EchoResponse>(
            "/grpc.examples.echo.Echo/NoSuchMethod",
            grpc_runtime::Request::new(echo("?")),
        )
        .await;
    ensure!(
        missing.as_ref().err().map(|e| e.code()) == Some(Code::Unimplemented),
        "expected UNIMPLEMENTED: {missing:?}"
    );
    out.line("client: 10 UnaryEcho calls OK, 1 call to a missing method: UNIMPLEMENTED");

    let text = scrape(metrics_at).await?;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
    {
        out.line(format!("metrics: {line}"));
    }
    let target = format!("grpc_target=\"{}\"", server.url());
    let want = [
        format!("grpc_client_attempt_started_total{{grpc_method=\"grpc.examples.echo.Echo/UnaryEcho\",{target}}} 10"),
        format!("grpc_client_call_duration_seconds_count{{grpc_method=\"grpc.examples.echo.Echo/UnaryEcho\",grpc_status=\"OK\",{target}}} 10"),
        "grpc_server_call_started_total{grpc_method=\"grpc.examples.echo.Echo/UnaryEcho\"} 10".to_string(),
        "grpc_server_call_started_total{grpc_method=\"other\"} 1".to_string(),
        "grpc_server_call_duration_seconds_count{grpc_method=\"other\",grpc_status=\"UNIMPLEMENTED\"} 1".to_string(),
    ];
    for w in &want {
        ensure!(text.lines().any(|l| l == w), "missing from the scrape: {w}");
    }
    ensure!(
        text.contains("grpc_server_call_duration_seconds_bucket{"),
        "no latency buckets"
    );
    out.line("scrape: client and server metrics present (method \"other\" for the missing method)");

    if !serve_for.is_zero() {
        out.line(format!("serving metrics for {}s", serve_for.as_secs()));
        tokio::time::sleep(serve_for).await;
    }
    metrics_task.abort();
    server.shutdown().await?;
    Ok(())
}

/// [`run_with`] on an ephemeral port, exiting after the scrape.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    run_with(out, SocketAddr::from(([127, 0, 0, 1], 0)), Duration::ZERO).await
}
