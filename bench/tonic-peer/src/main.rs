//! `tonic-peer`: tonic's side of the benchmarks. Two modes:
//!
//! - `tonic-peer server [--port=N]`: `grpc.testing.BenchmarkService` on tonic (UnaryCall,
//!   StreamingCall ping-pong, StreamingFromClient, StreamingFromServer, StreamingBothWays),
//!   printing `listening on 127.0.0.1:PORT`.
//! - `tonic-peer client --target=http://127.0.0.1:PORT --mode=unary|pingpong|server-stream
//!   [--conns=1] [--concurrency=1] [--duration=5] [--warmup=1] [--req_size=0] [--resp_size=0]`:
//!   a closed-loop load client. `--concurrency` is the total number of outstanding calls,
//!   spread round-robin over `--conns` connections. Prints one JSON line with the same fields
//!   as grpc-rust's `benchmark_worker client`, so scripts/bench.sh can compare them.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

#[allow(clippy::all, missing_docs, dead_code)]
mod pb {
    tonic::include_proto!("grpc.testing");
}

use pb::benchmark_service_client::BenchmarkServiceClient;
use pb::benchmark_service_server::{BenchmarkService, BenchmarkServiceServer};
use pb::{MemorySize, Payload, SimpleRequest, SimpleResponse};

const MAX_MSG: usize = 64 * 1024 * 1024;

fn response(size: i32) -> SimpleResponse {
    let n = size.clamp(0, MAX_MSG as i32) as usize;
    SimpleResponse {
        payload: if n > 0 {
            Some(Payload {
                r#type: 0,
                body: vec![0u8; n],
            })
        } else {
            None
        },
        ..Default::default()
    }
}

type BoxS = Pin<Box<dyn Stream<Item = Result<SimpleResponse, Status>> + Send + 'static>>;

#[derive(Default)]
struct Bench;

#[tonic::async_trait]
impl BenchmarkService for Bench {
    async fn unary_call(
        &self,
        req: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Ok(Response::new(response(req.get_ref().response_size)))
    }

    type StreamingCallStream = BoxS;
    async fn streaming_call(
        &self,
        req: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<Self::StreamingCallStream>, Status> {
        let s = req
            .into_inner()
            .map(|r| r.map(|r| response(r.response_size)));
        Ok(Response::new(Box::pin(s)))
    }

    async fn streaming_from_client(
        &self,
        req: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let mut s = req.into_inner();
        let mut last = SimpleRequest::default();
        while let Some(r) = s.message().await? {
            last = r;
        }
        Ok(Response::new(response(last.response_size)))
    }

    type StreamingFromServerStream = BoxS;
    async fn streaming_from_server(
        &self,
        req: Request<SimpleRequest>,
    ) -> Result<Response<Self::StreamingFromServerStream>, Status> {
        let resp = response(req.get_ref().response_size);
        Ok(Response::new(Box::pin(futures_util::stream::repeat_with(
            move || Ok(resp.clone()),
        ))))
    }

    type StreamingBothWaysStream = BoxS;
    async fn streaming_both_ways(
        &self,
        req: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<Self::StreamingBothWaysStream>, Status> {
        let mut incoming = req.into_inner();
        let first = incoming.message().await?.unwrap_or_default();
        tokio::spawn(async move { while let Some(Ok(_)) = incoming.next().await {} });
        let resp = response(first.response_size);
        Ok(Response::new(Box::pin(futures_util::stream::repeat_with(
            move || Ok(resp.clone()),
        ))))
    }

    async fn get_before_snapshot(
        &self,
        _req: Request<SimpleRequest>,
    ) -> Result<Response<MemorySize>, Status> {
        Ok(Response::new(MemorySize { rss: 0 }))
    }
}

struct Flags(Vec<String>);

impl Flags {
    fn get(&self, name: &str) -> Option<&str> {
        let prefix = format!("--{name}=");
        self.0.iter().find_map(|a| a.strip_prefix(&prefix))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{name}={v}: not a number"))),
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("tonic-peer: {msg}");
    std::process::exit(2)
}

async fn run_server(flags: &Flags) {
    let port: u16 = flags.num("port", 50056);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| die(&format!("binding port {port}: {e}")));
    if let Ok(a) = listener.local_addr() {
        println!("listening on {a}");
    }
    // Server::tcp_nodelay only applies to listeners tonic binds itself; set it on every
    // accepted socket here, as grpc-go and grpc-rust do (without it Nagle + delayed ACKs
    // add ~40 ms to a lone call).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        },
    );
    let svc = BenchmarkServiceServer::new(Bench).max_decoding_message_size(MAX_MSG);
    let r = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    if let Err(e) = r {
        die(&format!("server: {e}"));
    }
}

#[derive(Default)]
struct Tally {
    calls: u64,
    errors: u64,
    bytes: u64,
    lat_us: Vec<u32>,
}

async fn worker(
    client: BenchmarkServiceClient<tonic::transport::Channel>,
    mode: String,
    req: SimpleRequest,
    start_measure: Instant,
    end: Instant,
) -> Tally {
    let mut t = Tally::default();
    match mode.as_str() {
        "unary" => {
            let mut c = client;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = c.unary_call(req.clone()).await;
                let dt = t0.elapsed();
                if t0 >= start_measure {
                    match r {
                        Ok(resp) => {
                            t.calls += 1;
                            t.bytes += resp
                                .get_ref()
                                .payload
                                .as_ref()
                                .map_or(0, |p| p.body.len() as u64);
                            t.lat_us.push(dt.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(_) => t.errors += 1,
                    }
                }
            }
        }
        "pingpong" => {
            // The first request is queued before the call starts: a server may hold its
            // response headers until it has a message to answer (grpc-go does).
            let mut c = client;
            let (tx, rx) = tokio::sync::mpsc::channel::<SimpleRequest>(1);
            if tx.send(req.clone()).await.is_err() {
                t.errors += 1;
                return t;
            }
            let mut t0 = Instant::now();
            let mut resp = match c
                .streaming_call(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(r) => r.into_inner(),
                Err(_) => {
                    t.errors += 1;
                    return t;
                }
            };
            loop {
                match resp.message().await {
                    Ok(Some(m)) => {
                        if t0 >= start_measure {
                            t.calls += 1;
                            t.bytes += m.payload.as_ref().map_or(0, |p| p.body.len() as u64);
                            t.lat_us
                                .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
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
        "server-stream" => {
            let mut c = client;
            let mut resp = match c.streaming_from_server(req.clone()).await {
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
                match tokio::time::timeout(end - now, resp.message()).await {
                    Err(_) => break,
                    Ok(Ok(Some(m))) => {
                        if Instant::now() >= start_measure {
                            t.calls += 1;
                            t.bytes += m.payload.as_ref().map_or(0, |p| p.body.len() as u64);
                        }
                    }
                    Ok(_) => {
                        t.errors += 1;
                        break;
                    }
                }
            }
        }
        m => die(&format!(
            "unknown --mode={m} (unary, pingpong, server-stream)"
        )),
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

async fn run_client(flags: &Flags) {
    let target = flags
        .get("target")
        .unwrap_or("http://127.0.0.1:50051")
        .to_string();
    let mode = flags.get("mode").unwrap_or("unary").to_string();
    let conns: usize = flags.num("conns", 1usize).max(1);
    let concurrency: usize = flags.num("concurrency", 1usize).max(1);
    let duration: f64 = flags.num("duration", 5.0);
    let warmup: f64 = flags.num("warmup", 1.0);
    let req = SimpleRequest {
        response_size: flags.num("resp_size", 0i32),
        payload: Some(Payload {
            r#type: 0,
            body: vec![0u8; flags.num("req_size", 0usize)],
        }),
        ..Default::default()
    };
    let mut clients = Vec::new();
    for _ in 0..conns {
        let ep = tonic::transport::Endpoint::from_shared(target.clone())
            .unwrap_or_else(|e| die(&format!("--target={target}: {e}")))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        let ch = ep
            .connect()
            .await
            .unwrap_or_else(|e| die(&format!("connecting {target}: {e}")));
        clients.push(BenchmarkServiceClient::new(ch).max_decoding_message_size(MAX_MSG));
    }
    let start = Instant::now();
    let start_measure = start + Duration::from_secs_f64(warmup);
    let end = start_measure + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let c = clients[i % conns].clone();
        tasks.push(tokio::spawn(worker(
            c,
            mode.clone(),
            req.clone(),
            start_measure,
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
    let secs = duration.max(1e-9);
    println!(
        "{{\"impl\":\"tonic\",\"mode\":\"{mode}\",\"conns\":{conns},\"concurrency\":{concurrency},\"calls\":{},\"errors\":{},\"secs\":{secs},\"qps\":{:.1},\"mbps\":{:.2},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{}}}",
        all.calls,
        all.errors,
        all.calls as f64 / secs,
        all.bytes as f64 / secs / 1e6,
        pct(&all.lat_us, 50.0),
        pct(&all.lat_us, 90.0),
        pct(&all.lat_us, 99.0),
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        die("usage: tonic-peer server|client [--flags]")
    };
    let flags = Flags(args[1..].to_vec());
    match cmd.as_str() {
        "server" => run_server(&flags).await,
        "client" => run_client(&flags).await,
        c => die(&format!("unknown command {c} (server, client)")),
    }
}
