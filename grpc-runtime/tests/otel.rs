//! OpenTelemetry (feature `opentelemetry`) over real sockets: gRFC A66 metrics read back
//! from an SDK meter provider with a manual reader (counts per method and status, one
//! attempt per retry, sizes equal to the messages' wire bytes, positive durations,
//! unregistered methods as "other", target filtering), and W3C trace context carried
//! client -> A -> B with one trace id and parent/child links (in-memory span exporter).
#![cfg(feature = "opentelemetry")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grpc_runtime::otel::OpenTelemetry;
use grpc_runtime::server::{Server, ServerCall, Service};
use grpc_runtime::{BoxFuture, Channel, Code, MethodDescriptor, Request, Response, Status};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

const METHODS: &[MethodDescriptor] = &[
    MethodDescriptor {
        name: "Echo",
        full_path: "/otel.Test/Echo",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Fail",
        full_path: "/otel.Test/Fail",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Flaky",
        full_path: "/otel.Test/Flaky",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Hop",
        full_path: "/otel.Test/Hop",
        client_streaming: false,
        server_streaming: false,
    },
];

/// `Echo` answers with its request text doubled, `Fail` with NOT_FOUND, `Flaky` with
/// UNAVAILABLE on its first call and OK after, `Hop` calls `next` (if any) then answers.
struct TestService {
    flaky: Arc<AtomicUsize>,
    next: Option<Channel>,
}

impl Service for TestService {
    fn name(&self) -> &'static str {
        "otel.Test"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        METHODS
    }
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
        match method {
            "Echo" => call.unary(|r: Request<Msg>| async move {
                let t = r.into_inner().text;
                Ok(Response::new(Msg {
                    text: format!("{t}{t}"),
                }))
            }),
            "Fail" => call.unary(|_: Request<Msg>| async move {
                Err::<Response<Msg>, _>(Status::not_found("nope"))
            }),
            "Flaky" => {
                let n = self.flaky.fetch_add(1, Ordering::SeqCst);
                call.unary(move |_: Request<Msg>| async move {
                    if n == 0 {
                        Err(Status::unavailable("try again"))
                    } else {
                        Ok(Response::new(Msg { text: "ok".into() }))
                    }
                })
            }
            "Hop" => {
                let next = self.next.clone();
                call.unary(move |r: Request<Msg>| async move {
                    let text = r.into_inner().text;
                    if let Some(ch) = next {
                        ch.unary::<Msg, Msg>(
                            "/otel.Test/Hop",
                            Request::new(Msg { text: text.clone() }),
                        )
                        .await?;
                    }
                    Ok(Response::new(Msg { text }))
                })
            }
            _ => call.unimplemented(),
        }
    }
}

async fn serve(otel: OpenTelemetry, next: Option<Channel>) -> SocketAddr {
    common::serve(
        Server::builder()
            .opentelemetry(otel)
            .add_service(TestService {
                flaky: Arc::new(AtomicUsize::new(0)),
                next,
            }),
    )
    .await
}

/// The provider's metrics on demand: an in-memory exporter behind a periodic reader,
/// flushed (cumulative temporality: the last export holds everything) when read.
#[derive(Clone)]
struct Reader {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Reader {
    fn collect(&self) -> ResourceMetrics {
        self.provider.force_flush().unwrap();
        self.exporter
            .get_finished_metrics()
            .unwrap()
            .pop()
            .unwrap_or_default()
    }
}

fn meter() -> (SdkMeterProvider, Reader) {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    (provider.clone(), Reader { provider, exporter })
}

/// One data point: its attributes (sorted `key=value`), count (histograms) or value
/// (counters), and sum.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    attrs: Vec<String>,
    count: u64,
    sum: f64,
    min: f64,
}

fn attrs<'a>(kv: impl Iterator<Item = &'a KeyValue>) -> Vec<String> {
    let mut v: Vec<String> = kv.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
    v.sort();
    v
}

/// The points of metric `name` (empty if it was never recorded), with its unit.
fn points(reader: &Reader, name: &str) -> (String, Vec<Point>) {
    let rm = reader.collect();
    for sm in rm.scope_metrics() {
        assert_eq!(sm.scope().name(), "grpc-rust");
        for m in sm.metrics() {
            if m.name() != name {
                continue;
            }
            let pts = match m.data() {
                AggregatedMetrics::U64(MetricData::Sum(s)) => s
                    .data_points()
                    .map(|p| Point {
                        attrs: attrs(p.attributes()),
                        count: p.value(),
                        sum: p.value() as f64,
                        min: 0.0,
                    })
                    .collect(),
                AggregatedMetrics::U64(MetricData::Histogram(h)) => h
                    .data_points()
                    .map(|p| Point {
                        attrs: attrs(p.attributes()),
                        count: p.count(),
                        sum: p.sum() as f64,
                        min: p.min().unwrap_or(0) as f64,
                    })
                    .collect(),
                AggregatedMetrics::F64(MetricData::Histogram(h)) => h
                    .data_points()
                    .map(|p| Point {
                        attrs: attrs(p.attributes()),
                        count: p.count(),
                        sum: p.sum(),
                        min: p.min().unwrap_or(0.0),
                    })
                    .collect(),
                other => panic!("unexpected data for {name}: {other:?}"),
            };
            return (m.unit().to_string(), pts);
        }
    }
    (String::new(), Vec::new())
}

/// The point of `name` whose attributes are exactly `want`.
fn point(reader: &Reader, name: &str, want: &[&str]) -> Option<Point> {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    points(reader, name).1.into_iter().find(|p| p.attrs == want)
}

fn wire_len(m: &Msg) -> f64 {
    m.encoded_len() as f64
}

#[tokio::test]
async fn metrics_per_method_and_status_with_sizes_and_durations() {
    let (server_provider, server_reader) = meter();
    let addr = serve(
        OpenTelemetry::builder()
            .meter_provider(&server_provider)
            .build(),
        None,
    )
    .await;
    let (client_provider, client_reader) = meter();
    let target = format!("127.0.0.1:{}", addr.port());
    let ch = Channel::builder(target.clone())
        .opentelemetry(
            OpenTelemetry::builder()
                .meter_provider(&client_provider)
                .build(),
        )
        .connect()
        .await
        .unwrap();
    let req = Msg {
        text: "hello".into(),
    };
    for _ in 0..3 {
        let r = ch
            .unary::<Msg, Msg>("/otel.Test/Echo", Request::new(req.clone()))
            .await
            .unwrap();
        assert_eq!(r.into_inner().text, "hellohello");
    }
    for _ in 0..2 {
        let e = ch
            .unary::<Msg, Msg>("/otel.Test/Fail", Request::new(req.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    let reply_len = wire_len(&Msg {
        text: "hellohello".into(),
    });
    let target_attr = format!("grpc.target=dns:///{target}");
    let echo = ["grpc.method=otel.Test/Echo", target_attr.as_str()];
    let fail = ["grpc.method=otel.Test/Fail", target_attr.as_str()];
    let echo_ok = [
        "grpc.method=otel.Test/Echo",
        target_attr.as_str(),
        "grpc.status=OK",
    ];
    let fail_nf = [
        "grpc.method=otel.Test/Fail",
        target_attr.as_str(),
        "grpc.status=NOT_FOUND",
    ];

    // Client: attempts started per method, one attempt per call here.
    let (unit, _) = points(&client_reader, "grpc.client.attempt.started");
    assert_eq!(unit, "{attempt}");
    assert_eq!(
        point(&client_reader, "grpc.client.attempt.started", &echo)
            .unwrap()
            .count,
        3
    );
    assert_eq!(
        point(&client_reader, "grpc.client.attempt.started", &fail)
            .unwrap()
            .count,
        2
    );
    for (name, unit) in [
        ("grpc.client.attempt.duration", "s"),
        ("grpc.client.call.duration", "s"),
    ] {
        assert_eq!(points(&client_reader, name).0, unit);
        let ok = point(&client_reader, name, &echo_ok).unwrap();
        assert_eq!(ok.count, 3, "{name}");
        assert!(ok.min > 0.0, "{name}: durations are positive");
        assert_eq!(
            point(&client_reader, name, &fail_nf).unwrap().count,
            2,
            "{name}"
        );
    }
    // Sizes: the messages' bytes without the 5-byte prefix.
    let sent = point(
        &client_reader,
        "grpc.client.attempt.sent_total_compressed_message_size",
        &echo_ok,
    )
    .unwrap();
    assert_eq!((sent.count, sent.sum), (3, 3.0 * wire_len(&req)));
    assert_eq!(
        points(
            &client_reader,
            "grpc.client.attempt.sent_total_compressed_message_size"
        )
        .0,
        "By"
    );
    let rcvd = point(
        &client_reader,
        "grpc.client.attempt.rcvd_total_compressed_message_size",
        &echo_ok,
    )
    .unwrap();
    assert_eq!((rcvd.count, rcvd.sum), (3, 3.0 * reply_len));
    let rcvd = point(
        &client_reader,
        "grpc.client.attempt.rcvd_total_compressed_message_size",
        &fail_nf,
    )
    .unwrap();
    assert_eq!((rcvd.count, rcvd.sum), (2, 0.0));

    // Server.
    let (unit, _) = points(&server_reader, "grpc.server.call.started");
    assert_eq!(unit, "{call}");
    assert_eq!(
        point(
            &server_reader,
            "grpc.server.call.started",
            &["grpc.method=otel.Test/Echo"]
        )
        .unwrap()
        .count,
        3
    );
    assert_eq!(
        point(
            &server_reader,
            "grpc.server.call.started",
            &["grpc.method=otel.Test/Fail"]
        )
        .unwrap()
        .count,
        2
    );
    let s_ok = ["grpc.method=otel.Test/Echo", "grpc.status=OK"];
    let s_nf = ["grpc.method=otel.Test/Fail", "grpc.status=NOT_FOUND"];
    let d = point(&server_reader, "grpc.server.call.duration", &s_ok).unwrap();
    assert!(d.count == 3 && d.min > 0.0, "{d:?}");
    assert_eq!(
        point(&server_reader, "grpc.server.call.duration", &s_nf)
            .unwrap()
            .count,
        2
    );
    let r = point(
        &server_reader,
        "grpc.server.call.rcvd_total_compressed_message_size",
        &s_ok,
    )
    .unwrap();
    assert_eq!((r.count, r.sum), (3, 3.0 * wire_len(&req)));
    let s = point(
        &server_reader,
        "grpc.server.call.sent_total_compressed_message_size",
        &s_ok,
    )
    .unwrap();
    assert_eq!((s.count, s.sum), (3, 3.0 * reply_len));
    let s = point(
        &server_reader,
        "grpc.server.call.sent_total_compressed_message_size",
        &s_nf,
    )
    .unwrap();
    assert_eq!((s.count, s.sum), (2, 0.0));
}

#[tokio::test]
async fn every_retry_attempt_is_counted() {
    let (server_provider, server_reader) = meter();
    let addr = serve(
        OpenTelemetry::builder()
            .meter_provider(&server_provider)
            .build(),
        None,
    )
    .await;
    let (client_provider, client_reader) = meter();
    let config = r#"{"methodConfig": [{"name": [{"service": "otel.Test"}], "retryPolicy": {
        "maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.01s", "backoffMultiplier": 1,
        "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;
    let ch = Channel::builder(format!("ipv4:127.0.0.1:{}", addr.port()))
        .default_service_config(config)
        .opentelemetry(
            OpenTelemetry::builder()
                .meter_provider(&client_provider)
                .target_attribute_filter(|t| !t.starts_with("ipv4:"))
                .build(),
        )
        .connect()
        .await
        .unwrap();
    let r = ch
        .unary::<Msg, Msg>("/otel.Test/Flaky", Request::new(Msg { text: "x".into() }))
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "ok");

    let m = "grpc.method=otel.Test/Flaky";
    // The target filter said no: "other".
    assert_eq!(
        point(
            &client_reader,
            "grpc.client.attempt.started",
            &[m, "grpc.target=other"]
        )
        .unwrap()
        .count,
        2
    );
    let unavailable = [m, "grpc.target=other", "grpc.status=UNAVAILABLE"];
    let ok = [m, "grpc.target=other", "grpc.status=OK"];
    assert_eq!(
        point(&client_reader, "grpc.client.attempt.duration", &unavailable)
            .unwrap()
            .count,
        1
    );
    assert_eq!(
        point(&client_reader, "grpc.client.attempt.duration", &ok)
            .unwrap()
            .count,
        1
    );
    let sent = point(
        &client_reader,
        "grpc.client.attempt.sent_total_compressed_message_size",
        &unavailable,
    )
    .unwrap();
    assert_eq!(
        sent.sum,
        wire_len(&Msg { text: "x".into() }),
        "the failed attempt sent the message too"
    );
    // One call, which succeeded.
    let calls = points(&client_reader, "grpc.client.call.duration").1;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        point(&client_reader, "grpc.client.call.duration", &ok)
            .unwrap()
            .count,
        1
    );
    // Both attempts reached the server.
    assert_eq!(
        point(&server_reader, "grpc.server.call.started", &[m])
            .unwrap()
            .count,
        2
    );
    assert_eq!(
        point(
            &server_reader,
            "grpc.server.call.duration",
            &[m, "grpc.status=UNAVAILABLE"]
        )
        .unwrap()
        .count,
        1
    );
    assert_eq!(
        point(
            &server_reader,
            "grpc.server.call.duration",
            &[m, "grpc.status=OK"]
        )
        .unwrap()
        .count,
        1
    );
}

#[tokio::test]
async fn unregistered_methods_are_other_unless_the_filter_keeps_them() {
    for keep in [false, true] {
        let (server_provider, server_reader) = meter();
        let mut b = OpenTelemetry::builder().meter_provider(&server_provider);
        if keep {
            b = b.method_attribute_filter(|m| m == "otel.Test/Nope");
        }
        let addr = serve(b.build(), None).await;
        let (client_provider, client_reader) = meter();
        let ch = Channel::builder(format!("127.0.0.1:{}", addr.port()))
            .opentelemetry(
                OpenTelemetry::builder()
                    .meter_provider(&client_provider)
                    .build(),
            )
            .connect()
            .await
            .unwrap();
        for path in ["/otel.Test/Nope", "/other.Service/Nope"] {
            let e = ch
                .unary::<Msg, Msg>(path, Request::new(Msg::default()))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::Unimplemented);
        }
        let started = points(&server_reader, "grpc.server.call.started").1;
        let (kept, other) = if keep { (1, 1) } else { (0, 2) };
        assert_eq!(
            point(
                &server_reader,
                "grpc.server.call.started",
                &["grpc.method=other"]
            )
            .map(|p| p.count),
            Some(other),
            "{started:?}"
        );
        let named = point(
            &server_reader,
            "grpc.server.call.duration",
            &["grpc.method=otel.Test/Nope", "grpc.status=UNIMPLEMENTED"],
        );
        assert_eq!(named.map(|p| p.count).unwrap_or(0), kept, "{started:?}");
        let d = point(
            &server_reader,
            "grpc.server.call.duration",
            &["grpc.method=other", "grpc.status=UNIMPLEMENTED"],
        )
        .unwrap();
        assert_eq!(d.count, other);
        // The client names the methods it called.
        let t = format!("grpc.target=dns:///127.0.0.1:{}", addr.port());
        let c = point(
            &client_reader,
            "grpc.client.call.duration",
            &[
                "grpc.method=other.Service/Nope",
                &t,
                "grpc.status=UNIMPLEMENTED",
            ],
        );
        assert_eq!(c.unwrap().count, 1);
    }
}

#[tokio::test]
async fn trace_context_propagates_client_to_a_to_b() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel = || {
        OpenTelemetry::builder()
            .tracer_provider(&provider)
            .text_map_propagator(TraceContextPropagator::new())
            .build()
    };
    let b = serve(otel(), None).await;
    let to_b = Channel::builder(format!("127.0.0.1:{}", b.port()))
        .opentelemetry(otel())
        .connect()
        .await
        .unwrap();
    let a = serve(otel(), Some(to_b)).await;
    let to_a = Channel::builder(format!("127.0.0.1:{}", a.port()))
        .opentelemetry(otel())
        .connect()
        .await
        .unwrap();

    // The application's own span is the root.
    let tracer = provider.tracer("test");
    let root = tracer.start("root");
    let root_cx = opentelemetry::Context::current_with_span(root);
    let call = to_a.unary::<Msg, Msg>("/otel.Test/Hop", Request::new(Msg { text: "t".into() }));
    let r = opentelemetry::context::FutureExt::with_context(call, root_cx.clone())
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "t");
    root_cx.span().end();
    // Server spans end just after the client saw the status.
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = exporter.get_finished_spans().unwrap();
        if spans.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(spans.len(), 5, "{names:?}");
    let find = |name: &str, kind: SpanKind, nth: usize| {
        spans
            .iter()
            .filter(|s| s.name == name && s.span_kind == kind)
            .nth(nth)
            .unwrap_or_else(|| panic!("{name} in {names:?}"))
    };
    let root = find("root", SpanKind::Internal, 0);
    let trace_id = root.span_context.trace_id();
    assert!(
        spans.iter().all(|s| s.span_context.trace_id() == trace_id),
        "one trace: {spans:?}"
    );
    // client -> A: Sent (child of root) -> Recv on A (child of Sent).
    let sent: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "Sent.otel.Test/Hop")
        .collect();
    let recv: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "Recv.otel.Test/Hop")
        .collect();
    assert_eq!((sent.len(), recv.len()), (2, 2), "{names:?}");
    let sent_by_client = sent
        .iter()
        .find(|s| s.parent_span_id == root.span_context.span_id())
        .expect("client span under root");
    let recv_a = recv
        .iter()
        .find(|s| s.parent_span_id == sent_by_client.span_context.span_id())
        .expect("A's span under the client's");
    assert_eq!(recv_a.span_kind, SpanKind::Server);
    assert!(recv_a.parent_span_is_remote);
    // A's handler calls B: Sent (child of A's Recv) -> Recv on B.
    let sent_by_a = sent
        .iter()
        .find(|s| s.parent_span_id == recv_a.span_context.span_id())
        .expect("A's call under A's span");
    assert_eq!(sent_by_a.span_kind, SpanKind::Client);
    let recv_b = recv
        .iter()
        .find(|s| s.parent_span_id == sent_by_a.span_context.span_id())
        .expect("B's span under A's call");
    assert!(recv_b
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "rpc.grpc.status_code" && kv.value.as_str() == "0"));
    assert!(sent_by_client
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "server.port" && kv.value.as_str() == a.port().to_string()));
}
