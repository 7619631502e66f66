//! OpenTelemetry for channels and servers (cargo feature `opentelemetry`): the metrics
//! of [gRFC A66] and trace-context propagation with one OpenTelemetry span per call.
//!
//! Build an [`OpenTelemetry`] plugin and install it with
//! [`Endpoint::opentelemetry`](crate::Endpoint::opentelemetry) and
//! [`ServerBuilder::opentelemetry`](crate::server::ServerBuilder::opentelemetry), as
//! grpc-go's `opentelemetry.DialOption(opts)` / `opentelemetry.ServerOption(opts)`:
//!
//! ```
//! use grpc_runtime::otel::OpenTelemetry;
//! use grpc_runtime::{Channel, Server};
//!
//! # fn f(meter_provider: &impl opentelemetry::metrics::MeterProvider) -> Result<(), grpc_runtime::transport::TransportError> {
//! let otel = OpenTelemetry::builder().meter_provider(meter_provider).build();
//! let channel = Channel::builder("localhost:50051").opentelemetry(otel.clone()).connect_lazy()?;
//! let server = Server::builder().opentelemetry(otel);
//! # let _ = (channel, server); Ok(()) }
//! ```
//!
//! Metrics (the meter is named `grpc-rust`, with this crate's version; histograms carry
//! A66's bucket boundaries as advice, which an SDK view can override):
//!
//! | instrument | kind, unit | attributes |
//! | --- | --- | --- |
//! | `grpc.client.attempt.started` | counter, `{attempt}` | `grpc.method`, `grpc.target` |
//! | `grpc.client.attempt.duration` | histogram, `s` | `grpc.method`, `grpc.target`, `grpc.status` |
//! | `grpc.client.attempt.sent_total_compressed_message_size` | histogram, `By` | same |
//! | `grpc.client.attempt.rcvd_total_compressed_message_size` | histogram, `By` | same |
//! | `grpc.client.call.duration` | histogram, `s` | same |
//! | `grpc.server.call.started` | counter, `{call}` | `grpc.method` |
//! | `grpc.server.call.duration` | histogram, `s` | `grpc.method`, `grpc.status` |
//! | `grpc.server.call.sent_total_compressed_message_size` | histogram, `By` | same |
//! | `grpc.server.call.rcvd_total_compressed_message_size` | histogram, `By` | same |
//!
//! - `grpc.method` is the full method without the leading slash
//!   (`helloworld.Greeter/SayHello`). On a server, a method that none of its services
//!   registered is recorded as `other` (A66: arbitrary names must not blow up the
//!   cardinality) unless [`OpenTelemetryBuilder::method_attribute_filter`] says to keep
//!   it. On a client every call names its method in the program (`&'static str`), so
//!   it is recorded as it is.
//! - `grpc.target` is the channel's target in canonical form (`dns:///host:port` for a
//!   target written without a scheme); [`OpenTelemetryBuilder::target_attribute_filter`]
//!   can replace it with `other`.
//! - `grpc.status` is the code's name (`OK`, `UNAVAILABLE`, ...).
//! - Sizes are the messages' bytes as sent (compressed when compressed), without the
//!   5-byte message prefix, metadata or HTTP/2 framing.
//! - Every attempt of a call is counted: retries and hedges (gRFC A6) and transparent
//!   retries. For streaming requests, an attempt's sent size is the message bytes the
//!   call had sent when the attempt ended (attempts share the replayed messages).
//!
//! Tracing: with [`OpenTelemetryBuilder::tracer_provider`] every client call gets a
//! span `Sent.<method>` (kind client) whose parent is the current OpenTelemetry
//! [`Context`] when the call starts, and every server call a
//! span `Recv.<method>` (kind server). With
//! [`OpenTelemetryBuilder::text_map_propagator`] (e.g. the SDK's
//! `TraceContextPropagator` for W3C `traceparent` / `tracestate`), the client injects
//! its span's context into the request metadata and the server extracts it as the
//! parent of its span. The server runs the call's interceptors and handler with its
//! span's context current ([`opentelemetry::context::FutureExt::with_context`]), so a
//! call the handler makes continues the same trace. This works on OpenTelemetry's
//! `Context` directly; `tracing` spans (`grpc_client_call`, `grpc_call`) are separate
//! and carry the method, peer and final code for logs. Spans record `rpc.system`,
//! `rpc.method`, the peer's address and `rpc.grpc.status_code`; a non-OK status sets
//! the span's status to error.
//!
//! [gRFC A66]: https://github.com/grpc/proposal/blob/master/A66-otel-stats.md

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::context::FutureExt as _;
use opentelemetry::global::{BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};

use crate::metadata::MetadataMap;
use crate::request::BoxFuture;
use crate::stats::{ClientCallTracer, ClientStatsHandler, ServerCallTracer, ServerStatsHandler};
use crate::status::{Code, Status};

/// Latency buckets of gRFC A66, in seconds.
pub const LATENCY_BUCKETS: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
    0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
    0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// Size buckets of gRFC A66, in bytes.
pub const SIZE_BUCKETS: [f64; 14] = [
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// The name of the meter and tracer (gRFC A66: the library's name; the version is this
/// crate's).
pub const INSTRUMENTATION_NAME: &str = "grpc-rust";

const METHOD: &str = "grpc.method";
const TARGET: &str = "grpc.target";
const STATUS: &str = "grpc.status";
const OTHER: &str = "other";

type Filter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The OpenTelemetry plugin: metrics (gRFC A66) and, optionally, spans with trace
/// context propagation. Cheap to clone; one plugin may serve many channels and servers.
/// Made with [`OpenTelemetry::builder`]; see the [module docs](self).
#[derive(Clone)]
pub struct OpenTelemetry {
    inner: Arc<Plugin>,
}

impl std::fmt::Debug for OpenTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTelemetry")
            .field("metrics", &self.inner.metrics.is_some())
            .field("tracing", &self.inner.tracer.is_some())
            .field("propagation", &self.inner.propagator.is_some())
            .finish()
    }
}

struct Plugin {
    metrics: Option<Instruments>,
    method_filter: Option<Filter>,
    target_filter: Option<Filter>,
    tracer: Option<BoxedTracer>,
    propagator: Option<Box<dyn TextMapPropagator + Send + Sync>>,
}

struct Instruments {
    attempt_started: Counter<u64>,
    attempt_duration: Histogram<f64>,
    attempt_sent: Histogram<u64>,
    attempt_rcvd: Histogram<u64>,
    call_duration: Histogram<f64>,
    server_started: Counter<u64>,
    server_duration: Histogram<f64>,
    server_sent: Histogram<u64>,
    server_rcvd: Histogram<u64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Instruments {
        let latency = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let size = |name: &'static str, description: &'static str| {
            meter
                .u64_histogram(name)
                .with_unit("By")
                .with_description(description)
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build()
        };
        Instruments {
            attempt_started: meter
                .u64_counter("grpc.client.attempt.started")
                .with_unit("{attempt}")
                .with_description("Number of client call attempts started.")
                .build(),
            attempt_duration: latency(
                "grpc.client.attempt.duration",
                "End-to-end time taken to complete a client call attempt.",
            ),
            attempt_sent: size(
                "grpc.client.attempt.sent_total_compressed_message_size",
                "Compressed message bytes sent per client call attempt.",
            ),
            attempt_rcvd: size(
                "grpc.client.attempt.rcvd_total_compressed_message_size",
                "Compressed message bytes received per call attempt.",
            ),
            call_duration: latency(
                "grpc.client.call.duration",
                "Time taken by gRPC to complete an RPC from application's perspective.",
            ),
            server_started: meter
                .u64_counter("grpc.server.call.started")
                .with_unit("{call}")
                .with_description("Number of server calls started.")
                .build(),
            server_duration: latency(
                "grpc.server.call.duration",
                "End-to-end time taken to complete a call from server transport's perspective.",
            ),
            server_sent: size(
                "grpc.server.call.sent_total_compressed_message_size",
                "Compressed message bytes sent per server call.",
            ),
            server_rcvd: size(
                "grpc.server.call.rcvd_total_compressed_message_size",
                "Compressed message bytes received per server call.",
            ),
        }
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(INSTRUMENTATION_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Builder of an [`OpenTelemetry`] plugin (grpc-go's `opentelemetry.Options`:
/// `MetricsOptions` and `TraceOptions`). Without a meter provider no metrics are
/// recorded (A66: never the global provider); without a tracer provider no spans are made.
#[derive(Default)]
pub struct OpenTelemetryBuilder {
    meter: Option<Meter>,
    method_filter: Option<Filter>,
    target_filter: Option<Filter>,
    tracer: Option<BoxedTracer>,
    propagator: Option<Box<dyn TextMapPropagator + Send + Sync>>,
}

impl std::fmt::Debug for OpenTelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTelemetryBuilder")
            .finish_non_exhaustive()
    }
}

impl OpenTelemetry {
    /// A builder with nothing set (a plugin that records nothing).
    pub fn builder() -> OpenTelemetryBuilder {
        OpenTelemetryBuilder::default()
    }

    pub(crate) fn client_handler(&self, canonical_target: &str) -> Arc<dyn ClientStatsHandler> {
        let keep = self
            .inner
            .target_filter
            .as_ref()
            .map_or(true, |f| f(canonical_target));
        let target: Value = if keep {
            Value::from(Arc::<str>::from(canonical_target))
        } else {
            Value::from(OTHER)
        };
        Arc::new(ClientHandler(Arc::new(ClientShared {
            plugin: Arc::clone(&self.inner),
            target: KeyValue::new(TARGET, target),
        })))
    }

    pub(crate) fn server_handler(&self) -> Arc<dyn ServerStatsHandler> {
        Arc::new(ServerHandler(Arc::clone(&self.inner)))
    }
}

impl OpenTelemetryBuilder {
    /// Records the metrics with a meter `grpc-rust` from `provider` (grpc-go's
    /// `MetricsOptions.MeterProvider`), e.g. an `opentelemetry_sdk`
    /// `SdkMeterProvider` with the reader or exporter of your choice.
    pub fn meter_provider(mut self, provider: &impl MeterProvider) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Server side: a method no service registered is recorded as `other` unless
    /// `filter(method)` returns true (grpc-go's `MetricsOptions.MethodAttributeFilter`,
    /// C++'s `SetGenericMethodAttributeFilter`). `method` is the path without its
    /// leading slash. Registered methods are always recorded by name.
    pub fn method_attribute_filter(
        mut self,
        filter: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.method_filter = Some(Arc::new(filter));
        self
    }

    /// Client side: the channel's canonical target is recorded as `grpc.target` when
    /// `filter(target)` returns true, else as `other` (A66, C++'s
    /// `SetTargetAttributeFilter`, Java's `targetFilter`). Asked once per channel. By
    /// default every target is recorded as it is.
    pub fn target_attribute_filter(
        mut self,
        filter: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.target_filter = Some(Arc::new(filter));
        self
    }

    /// Makes a span per call with a tracer `grpc-rust` from `provider` (grpc-go's
    /// `TraceOptions.TracerProvider`).
    pub fn tracer_provider<P, T, S>(mut self, provider: &P) -> Self
    where
        S: opentelemetry::trace::Span + Send + Sync + 'static,
        T: Tracer<Span = S> + Send + Sync + 'static,
        P: TracerProvider<Tracer = T>,
    {
        self.tracer = Some(BoxedTracer::new(provider.boxed_tracer(scope())));
        self
    }

    /// Propagates the call span's context in the request metadata with `propagator`
    /// (grpc-go's `TraceOptions.TextMapPropagator`), e.g. the SDK's
    /// `TraceContextPropagator` for W3C `traceparent` / `tracestate`.
    pub fn text_map_propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagator = Some(Box::new(propagator));
        self
    }

    /// The plugin.
    pub fn build(self) -> OpenTelemetry {
        OpenTelemetry {
            inner: Arc::new(Plugin {
                metrics: self.meter.as_ref().map(Instruments::new),
                method_filter: self.method_filter,
                target_filter: self.target_filter,
                tracer: self.tracer,
                propagator: self.propagator,
            }),
        }
    }
}

fn status_attr(status: &Status) -> KeyValue {
    KeyValue::new(STATUS, status.code().as_str())
}

/// Sets the span's status attributes and status, then ends it.
fn end_span(cx: &Context, status: &Status) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "rpc.grpc.status_code",
        i64::from(status.code() as i32),
    ));
    if status.code() != Code::Ok {
        span.set_status(opentelemetry::trace::Status::error(
            status.message().to_string(),
        ));
    }
    span.end();
}

fn span_builder(name: String, kind: SpanKind, method: &str) -> SpanBuilder {
    let (service, method_name) = method.rsplit_once('/').unwrap_or(("", method));
    SpanBuilder::from_name(name)
        .with_kind(kind)
        .with_attributes([
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_string()),
            KeyValue::new("rpc.method", method_name.to_string()),
        ])
}

fn peer_attrs(cx: &Context, peer: Option<SocketAddr>, prefix: &'static str) {
    if let Some(a) = peer {
        let span = cx.span();
        let (addr, port) = match prefix {
            "server" => ("server.address", "server.port"),
            _ => ("client.address", "client.port"),
        };
        span.set_attribute(KeyValue::new(addr, a.ip().to_string()));
        span.set_attribute(KeyValue::new(port, i64::from(a.port())));
    }
}

struct ClientShared {
    plugin: Arc<Plugin>,
    target: KeyValue,
}

struct ClientHandler(Arc<ClientShared>);

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let Err(e) = self.0.insert(key, value) {
            tracing::debug!(key, error = %e, "trace context not propagated");
        }
    }
}

impl ClientStatsHandler for ClientHandler {
    fn call_started(
        &self,
        method: &'static str,
        metadata: &mut MetadataMap,
    ) -> Box<dyn ClientCallTracer> {
        let name = method.strip_prefix('/').unwrap_or(method);
        let plugin = &self.0.plugin;
        let cx = plugin.tracer.as_ref().map(|tracer| {
            let parent = Context::current();
            let span = tracer.build_with_context(
                span_builder(format!("Sent.{name}"), SpanKind::Client, name),
                &parent,
            );
            let cx = parent.with_span(span);
            if let Some(p) = &plugin.propagator {
                p.inject_context(&cx, &mut MetadataInjector(metadata));
            }
            cx
        });
        Box::new(ClientCall {
            shared: Arc::clone(&self.0),
            method: KeyValue::new(METHOD, name),
            cx,
        })
    }
}

struct ClientCall {
    shared: Arc<ClientShared>,
    method: KeyValue,
    cx: Option<Context>,
}

impl ClientCallTracer for ClientCall {
    fn attempt_started(&self) {
        if let Some(m) = &self.shared.plugin.metrics {
            m.attempt_started
                .add(1, &[self.method.clone(), self.shared.target.clone()]);
        }
    }

    fn attempt_peer(&self, peer: Option<SocketAddr>) {
        if let Some(cx) = &self.cx {
            peer_attrs(cx, peer, "server");
        }
    }

    fn attempt_ended(&self, status: &Status, duration: Duration, sent: u64, rcvd: u64) {
        if let Some(m) = &self.shared.plugin.metrics {
            let attrs = [
                self.method.clone(),
                self.shared.target.clone(),
                status_attr(status),
            ];
            m.attempt_duration.record(duration.as_secs_f64(), &attrs);
            m.attempt_sent.record(sent, &attrs);
            m.attempt_rcvd.record(rcvd, &attrs);
        }
    }

    fn call_ended(&self, status: &Status, duration: Duration) {
        if let Some(m) = &self.shared.plugin.metrics {
            let attrs = [
                self.method.clone(),
                self.shared.target.clone(),
                status_attr(status),
            ];
            m.call_duration.record(duration.as_secs_f64(), &attrs);
        }
        if let Some(cx) = &self.cx {
            end_span(cx, status);
        }
    }
}

struct ServerHandler(Arc<Plugin>);

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl ServerStatsHandler for ServerHandler {
    fn call_started(
        &self,
        method: &str,
        registered: bool,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Box<dyn ServerCallTracer> {
        let name = method.strip_prefix('/').unwrap_or(method);
        let plugin = &self.0;
        let recorded: Cow<'static, str> =
            if registered || plugin.method_filter.as_ref().is_some_and(|f| f(name)) {
                Cow::Owned(name.to_string())
            } else {
                Cow::Borrowed(OTHER)
            };
        let method_attr = KeyValue::new(METHOD, recorded);
        if let Some(m) = &plugin.metrics {
            m.server_started.add(1, std::slice::from_ref(&method_attr));
        }
        let cx = plugin.tracer.as_ref().map(|tracer| {
            let parent = match &plugin.propagator {
                Some(p) => p.extract_with_context(&Context::new(), &HeaderExtractor(headers)),
                None => Context::new(),
            };
            // The span name follows the attribute rule: no arbitrary names.
            let span_method = if registered { name } else { OTHER };
            let span = tracer.build_with_context(
                span_builder(format!("Recv.{span_method}"), SpanKind::Server, span_method),
                &parent,
            );
            let cx = parent.with_span(span);
            peer_attrs(&cx, peer, "client");
            cx
        });
        Box::new(ServerCall {
            plugin: Arc::clone(plugin),
            method: method_attr,
            cx,
        })
    }
}

struct ServerCall {
    plugin: Arc<Plugin>,
    method: KeyValue,
    cx: Option<Context>,
}

impl ServerCallTracer for ServerCall {
    fn instrument(&self, work: BoxFuture<Status>) -> BoxFuture<Status> {
        match &self.cx {
            Some(cx) => Box::pin(work.with_context(cx.clone())),
            None => work,
        }
    }

    fn call_ended(&self, status: &Status, duration: Duration, sent: u64, rcvd: u64) {
        if let Some(m) = &self.plugin.metrics {
            let attrs = [self.method.clone(), status_attr(status)];
            m.server_duration.record(duration.as_secs_f64(), &attrs);
            m.server_sent.record(sent, &attrs);
            m.server_rcvd.record(rcvd, &attrs);
        }
        if let Some(cx) = &self.cx {
            end_span(cx, status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_increasing() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(SIZE_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(SIZE_BUCKETS[13], 4294967296.0);
    }
}
