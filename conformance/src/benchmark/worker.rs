//! [`Worker`]: grpc-rust's `grpc.testing.WorkerService`, so grpc's official benchmark driver
//! (`qps_json_driver`) can run our benchmark server and client.
//!
//! Protocol (from worker_service.proto and what the C++/Go workers do): `RunServer` /
//! `RunClient` receive a setup message first, answer it with a status (the server's bound
//! port), answer each later `Mark` with the stats since the last reset, and stop the server
//! or client when the driver closes its side of the stream. `CoreCount` reports the cores we
//! may use; `QuitWorker` ends the process.
//!
//! Supported: every server type (all served by our one async server), closed-loop and
//! Poisson load, the simple-proto payload, rpc types UNARY, STREAMING (ping-pong, with
//! `messages_per_stream`), STREAMING_FROM_CLIENT, STREAMING_FROM_SERVER and
//! STREAMING_BOTH_WAYS. Not supported (the setup fails with UNIMPLEMENTED): byte-buffer
//! (generic) payloads and TLS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grpc_runtime::{BoxStream, Channel, Code, Request, Response, Status, Streaming};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::histogram::Histogram;
use super::stats::Snapshot;
use crate::pb::benchmark_service_client::BenchmarkServiceClient;
use crate::pb::worker_service_server::WorkerService;
use crate::pb::{
    client_args, load_params, payload_config, server_args, ClientArgs, ClientConfig, ClientStats,
    ClientStatus, CoreRequest, CoreResponse, Payload, PayloadConfig, RequestResultCount, RpcType,
    SecurityParams, ServerArgs, ServerStats, ServerStatus, SimpleRequest, Void,
};

/// The worker service. `quit` is notified by `QuitWorker`; the binary shuts down on it.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Port for benchmark servers whose config leaves `port` at 0 (0: any free port).
    pub server_port: u16,
    /// Notified once when the driver asks the worker to quit.
    pub quit: Arc<Notify>,
}

/// Cores this process may use.
pub fn core_count() -> i32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i32)
        .unwrap_or(1)
}

fn check_security(s: Option<&SecurityParams>) -> Result<(), Status> {
    match s {
        Some(s) if s.use_test_ca || !s.cred_type.is_empty() && s.cred_type != "insecure" => Err(
            Status::unimplemented("benchmark_worker: secure benchmark channels are not supported"),
        ),
        _ => Ok(()),
    }
}

/// (request size, response size) from the payload config.
fn payload_sizes(p: Option<&PayloadConfig>) -> Result<(i32, i32), Status> {
    match p.and_then(|p| p.payload.as_ref()) {
        None => Ok((0, 0)),
        Some(payload_config::Payload::SimpleParams(s)) => {
            Ok((s.req_size.max(0), s.resp_size.max(0)))
        }
        Some(payload_config::Payload::BytebufParams(_)) => Err(Status::unimplemented(
            "benchmark_worker: byte-buffer (generic) payloads are not supported",
        )),
        Some(payload_config::Payload::ComplexParams(_)) => Err(Status::unimplemented(
            "benchmark_worker: complex proto payloads are not supported",
        )),
    }
}

fn boxed<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> BoxStream<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn server_stats(since: &Snapshot, now: &Snapshot) -> ServerStats {
    ServerStats {
        time_elapsed: now.wall.duration_since(since.wall).as_secs_f64(),
        time_user: now.user - since.user,
        time_system: now.system - since.system,
        total_cpu_time: now.total_ticks.saturating_sub(since.total_ticks),
        idle_cpu_time: now.idle_ticks.saturating_sub(since.idle_ticks),
        cq_poll_count: 0,
    }
}

/// Per-slot measurements of a running benchmark client.
#[derive(Debug)]
struct SlotStats {
    hist: Histogram,
    results: HashMap<i32, i64>,
}

impl SlotStats {
    fn record(&mut self, latency: Duration, code: Code) {
        if code == Code::Ok {
            self.hist.add(latency.as_nanos() as f64);
        }
        *self.results.entry(code as i32).or_insert(0) += 1;
    }
}

/// A running benchmark client: its slots' tasks and stats.
struct RunningClient {
    slots: Vec<Arc<Mutex<SlotStats>>>,
    tasks: Vec<JoinHandle<()>>,
    channels: Vec<Channel>,
    template: Histogram,
}

impl RunningClient {
    /// Collects (and with `reset`, clears) the stats of every slot.
    fn collect(&self, reset: bool) -> (Histogram, HashMap<i32, i64>) {
        let mut hist = self.template.empty_like();
        let mut results = HashMap::new();
        for s in &self.slots {
            let mut s = match s.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            hist.merge(&s.hist);
            for (k, v) in &s.results {
                *results.entry(*k).or_insert(0) += v;
            }
            if reset {
                s.hist = self.template.empty_like();
                s.results.clear();
            }
        }
        (hist, results)
    }

    fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for c in &self.channels {
            c.shutdown();
        }
    }
}

fn target_uri(t: &str) -> String {
    if t.contains("://") || t.starts_with("unix:") || t.starts_with("dns:") {
        t.to_string()
    } else {
        format!("http://{t}")
    }
}

/// A small xorshift generator for Poisson inter-arrival times (no crypto needed).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// An exponentially distributed wait with the given rate (per second).
    fn exp(&mut self, rate: f64) -> Duration {
        let u = self.next_f64().max(1e-12);
        // `rate` comes from the driver's config: a tiny offered load must not overflow
        // (from_secs_f64 panics); a day between calls is as good as never.
        Duration::try_from_secs_f64(-u.ln() / rate)
            .unwrap_or(Duration::MAX)
            .min(Duration::from_secs(86_400))
    }
}

/// How one slot paces its calls.
#[derive(Clone, Copy, Debug)]
enum Pace {
    Closed,
    Poisson(f64),
}

struct Pacer {
    pace: Pace,
    next: Instant,
    rng: Rng,
}

impl Pacer {
    fn new(pace: Pace, seed: u64) -> Pacer {
        Pacer {
            pace,
            next: Instant::now(),
            rng: Rng(seed | 1),
        }
    }
    /// Waits until the next call may start (at once in closed loop).
    async fn wait(&mut self) {
        if let Pace::Poisson(rate) = self.pace {
            self.next += self.rng.exp(rate);
            tokio::time::sleep_until(self.next.into()).await;
        }
    }
}

async fn slot_loop(
    client: BenchmarkServiceClient,
    rpc_type: RpcType,
    req: SimpleRequest,
    messages_per_stream: i32,
    stats: Arc<Mutex<SlotStats>>,
    mut pacer: Pacer,
) {
    let record = |lat: Duration, code: Code| {
        let mut s = match stats.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.record(lat, code);
    };
    match rpc_type {
        RpcType::Unary => loop {
            pacer.wait().await;
            let t0 = Instant::now();
            let code = match client.unary_call(req.clone()).await {
                Ok(_) => Code::Ok,
                Err(e) => e.code(),
            };
            record(t0.elapsed(), code);
            if code != Code::Ok {
                // A failing target (e.g. the server already gone at the end of a run)
                // must not turn the closed loop into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
        RpcType::Streaming | RpcType::StreamingFromClient | RpcType::StreamingBothWays => loop {
            // One stream; ping-pong on it (or, from-client / both-ways, send and time the
            // sends), restart after messages_per_stream messages.
            let (tx, rx) = mpsc::channel::<SimpleRequest>(1);
            let outgoing = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|m| (m, rx))
            });
            if rpc_type == RpcType::StreamingFromClient {
                let call = tokio::spawn({
                    let client = client.clone();
                    async move { client.streaming_from_client(outgoing).await }
                });
                let mut sent = 0;
                while messages_per_stream <= 0 || sent < messages_per_stream {
                    pacer.wait().await;
                    let t0 = Instant::now();
                    if tx.send(req.clone()).await.is_err() {
                        break;
                    }
                    record(t0.elapsed(), Code::Ok);
                    sent += 1;
                }
                drop(tx);
                if let Ok(Err(e)) = call.await {
                    record(Duration::ZERO, e.code());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
            // Ping-pong: the first request is queued before the call starts, since a server
            // may hold its response headers until it has something to answer (grpc-go does).
            let mut t0 = Instant::now();
            if rpc_type == RpcType::Streaming {
                pacer.wait().await;
                t0 = Instant::now();
                if tx.send(req.clone()).await.is_err() {
                    continue;
                }
            } else if tx.send(req.clone()).await.is_err() {
                continue;
            }
            let mut incoming = match if rpc_type == RpcType::Streaming {
                client.streaming_call(outgoing).await
            } else {
                client.streaming_both_ways(outgoing).await
            } {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    record(Duration::ZERO, e.code());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if rpc_type == RpcType::StreamingBothWays {
                // Both ways: the server streams back on its own; time the receive intervals
                // while a side task keeps sending.
                let sender = tokio::spawn(async move {
                    while tx.send(SimpleRequest::default()).await.is_ok() {}
                });
                t0 = Instant::now();
                loop {
                    match incoming.message().await {
                        Ok(Some(_)) => {
                            record(t0.elapsed(), Code::Ok);
                            t0 = Instant::now();
                        }
                        Ok(None) => break,
                        Err(e) => {
                            record(Duration::ZERO, e.code());
                            break;
                        }
                    }
                }
                sender.abort();
                continue;
            }
            let mut n = 0;
            while messages_per_stream <= 0 || n < messages_per_stream {
                match incoming.message().await {
                    Ok(Some(_)) => record(t0.elapsed(), Code::Ok),
                    Ok(None) => break,
                    Err(e) => {
                        record(t0.elapsed(), e.code());
                        break;
                    }
                }
                n += 1;
                if messages_per_stream > 0 && n >= messages_per_stream {
                    break;
                }
                pacer.wait().await;
                t0 = Instant::now();
                if tx.send(req.clone()).await.is_err() {
                    break;
                }
            }
            drop(tx);
            // Drain to the end of the call (trailers) before starting the next stream.
            while let Ok(Some(_)) = incoming.message().await {}
        },
        RpcType::StreamingFromServer => loop {
            let mut incoming = match client.streaming_from_server(req.clone()).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    record(Duration::ZERO, e.code());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let mut t0 = Instant::now();
            loop {
                match incoming.message().await {
                    Ok(Some(_)) => {
                        record(t0.elapsed(), Code::Ok);
                        t0 = Instant::now();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        record(Duration::ZERO, e.code());
                        break;
                    }
                }
            }
        },
    }
}

async fn start_client(cfg: &ClientConfig) -> Result<RunningClient, Status> {
    check_security(cfg.security_params.as_ref())?;
    let (req_size, resp_size) = payload_sizes(cfg.payload_config.as_ref())?;
    let rpc_type = RpcType::try_from(cfg.rpc_type)
        .map_err(|_| Status::invalid_argument(format!("unknown rpc_type {}", cfg.rpc_type)))?;
    if cfg.server_targets.is_empty() {
        return Err(Status::invalid_argument(
            "ClientConfig has no server_targets",
        ));
    }
    let channels_n = cfg.client_channels.max(1) as usize;
    let outstanding = cfg.outstanding_rpcs_per_channel.max(1) as usize;
    let pace = match cfg.load_params.as_ref().and_then(|l| l.load.as_ref()) {
        Some(load_params::Load::Poisson(p)) if p.offered_load > 0.0 => {
            Pace::Poisson(p.offered_load / (channels_n * outstanding) as f64)
        }
        _ => Pace::Closed,
    };
    let template = Histogram::from_params(cfg.histogram_params.as_ref());
    let req = SimpleRequest {
        response_size: resp_size,
        payload: Some(Payload {
            r#type: 0,
            body: vec![0u8; req_size as usize],
        }),
        ..Default::default()
    };
    let mut channels = Vec::with_capacity(channels_n);
    for i in 0..channels_n {
        let target = target_uri(&cfg.server_targets[i % cfg.server_targets.len()]);
        let ch = Channel::builder(target.clone())
            .connect_timeout(Duration::from_secs(10))
            .max_decoding_message_size(super::service::MAX_MESSAGE)
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("connecting to {target}: {e}")))?;
        channels.push(ch);
    }
    let mut slots = Vec::new();
    let mut tasks = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for ch in &channels {
        for _ in 0..outstanding {
            let s = Arc::new(Mutex::new(SlotStats {
                hist: template.empty_like(),
                results: HashMap::new(),
            }));
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            tasks.push(tokio::spawn(slot_loop(
                BenchmarkServiceClient::new(ch.clone()),
                rpc_type,
                req.clone(),
                cfg.messages_per_stream,
                Arc::clone(&s),
                Pacer::new(pace, seed),
            )));
            slots.push(s);
        }
    }
    Ok(RunningClient {
        slots,
        tasks,
        channels,
        template,
    })
}

fn client_status(c: &RunningClient, since: &Snapshot, now: &Snapshot, reset: bool) -> ClientStatus {
    let (hist, results) = c.collect(reset);
    let mut request_results: Vec<RequestResultCount> = results
        .into_iter()
        .map(|(status_code, count)| RequestResultCount { status_code, count })
        .collect();
    request_results.sort_by_key(|r| r.status_code);
    ClientStatus {
        stats: Some(ClientStats {
            latencies: Some(hist.to_proto()),
            time_elapsed: now.wall.duration_since(since.wall).as_secs_f64(),
            time_user: now.user - since.user,
            time_system: now.system - since.system,
            request_results,
            cq_poll_count: 0,
        }),
    }
}

impl WorkerService for Worker {
    async fn run_server(
        &self,
        request: Request<Streaming<ServerArgs>>,
    ) -> Result<Response<BoxStream<ServerStatus>>, Status> {
        let mut args = request.into_inner();
        let setup = match args.message().await?.and_then(|a| a.argtype) {
            Some(server_args::Argtype::Setup(c)) => c,
            _ => {
                return Err(Status::invalid_argument(
                    "RunServer: the first message must be a setup",
                ))
            }
        };
        check_security(setup.security_params.as_ref())?;
        payload_sizes(setup.payload_config.as_ref())?;
        let port = if setup.port > 0 {
            setup.port as u16
        } else {
            self.server_port
        };
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            Status::unavailable(format!("binding benchmark server port {port}: {e}"))
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        tracing::info!(port, "benchmark server starting");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(super::service::serve(listener, async {
            let _ = stop_rx.await;
        }));
        let (tx, rx) = mpsc::channel(4);
        let mut since = Snapshot::now();
        let first = ServerStatus {
            stats: Some(server_stats(&since, &since)),
            port: port as i32,
            cores: core_count(),
        };
        let _ = tx.send(Ok(first)).await;
        tokio::spawn(async move {
            loop {
                match args.message().await {
                    Ok(Some(ServerArgs {
                        argtype: Some(server_args::Argtype::Mark(m)),
                    })) => {
                        let now = Snapshot::now();
                        let st = ServerStatus {
                            stats: Some(server_stats(&since, &now)),
                            port: port as i32,
                            cores: core_count(),
                        };
                        if m.reset {
                            since = now;
                        }
                        if tx.send(Ok(st)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(_)) => {
                        let _ = tx
                            .send(Err(Status::invalid_argument("RunServer: expected a mark")))
                            .await;
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = stop_tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
            tracing::info!(port, "benchmark server stopped");
        });
        Ok(Response::new(boxed(rx)))
    }

    async fn run_client(
        &self,
        request: Request<Streaming<ClientArgs>>,
    ) -> Result<Response<BoxStream<ClientStatus>>, Status> {
        let mut args = request.into_inner();
        let setup = match args.message().await?.and_then(|a| a.argtype) {
            Some(client_args::Argtype::Setup(c)) => c,
            _ => {
                return Err(Status::invalid_argument(
                    "RunClient: the first message must be a setup",
                ))
            }
        };
        tracing::info!(targets = ?setup.server_targets, rpc_type = setup.rpc_type, "benchmark client starting");
        let client = start_client(&setup).await?;
        let (tx, rx) = mpsc::channel(4);
        let mut since = Snapshot::now();
        let _ = tx
            .send(Ok(client_status(&client, &since, &since, false)))
            .await;
        tokio::spawn(async move {
            loop {
                match args.message().await {
                    Ok(Some(ClientArgs {
                        argtype: Some(client_args::Argtype::Mark(m)),
                    })) => {
                        let now = Snapshot::now();
                        let st = client_status(&client, &since, &now, m.reset);
                        if m.reset {
                            since = now;
                        }
                        if tx.send(Ok(st)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(_)) => {
                        let _ = tx
                            .send(Err(Status::invalid_argument("RunClient: expected a mark")))
                            .await;
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            client.stop();
            tracing::info!("benchmark client stopped");
        });
        Ok(Response::new(boxed(rx)))
    }

    async fn core_count(
        &self,
        _request: Request<CoreRequest>,
    ) -> Result<Response<CoreResponse>, Status> {
        Ok(Response::new(CoreResponse {
            cores: core_count(),
        }))
    }

    async fn quit_worker(&self, _request: Request<Void>) -> Result<Response<Void>, Status> {
        tracing::info!("QuitWorker: shutting down");
        self.quit.notify_one();
        Ok(Response::new(Void {}))
    }
}
