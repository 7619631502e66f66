//! Flow control over real sockets: BDP-based adaptive windows against fixed windows,
//! through a TCP proxy on loopback that delays every byte by a fixed time each way (a
//! long fat link without `tc netem`). Assertions are on what the wire shows (SETTINGS
//! windows, bytes in flight inside the proxy), never on wall-clock time; throughput
//! numbers live in docs/flow-control.md (`measure_throughput`, ignored by default).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_runtime::server::ServerBuilder;
use grpc_runtime::transport::BDP_LIMIT;
use grpc_runtime::{Channel, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// ------------------------------------------------------------ the delaying proxy

/// What one direction of the proxy saw.
#[derive(Default, Debug)]
struct DirStats {
    /// Bytes read from the sender and not yet written to the receiver.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Largest SETTINGS_INITIAL_WINDOW_SIZE sent this way (0: none).
    max_stream_window: AtomicU64,
    /// SETTINGS frames carrying SETTINGS_INITIAL_WINDOW_SIZE.
    window_settings: AtomicU64,
    /// Sum of connection-level WINDOW_UPDATE increments.
    conn_window_updates: AtomicU64,
    /// PINGs (not ACKs).
    pings: AtomicU64,
    goaways: AtomicU64,
    bytes: AtomicU64,
}

/// Frame-header scanner for one direction (just enough HTTP/2 for the assertions).
struct Scan {
    preface: usize,
    buf: Vec<u8>,
}

impl Scan {
    fn feed(&mut self, mut data: &[u8], st: &DirStats) {
        let skip = self.preface.min(data.len());
        self.preface -= skip;
        data = &data[skip..];
        self.buf.extend_from_slice(data);
        loop {
            if self.buf.len() < 9 {
                return;
            }
            let len = (usize::from(self.buf[0]) << 16)
                | (usize::from(self.buf[1]) << 8)
                | usize::from(self.buf[2]);
            let (kind, flags) = (self.buf[3], self.buf[4]);
            let stream = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                & 0x7fff_ffff;
            // Only control frames need their payload; DATA is skipped as it streams by.
            if kind == 0 {
                let have = (self.buf.len() - 9).min(len);
                if have < len {
                    // Keep a synthetic header for the rest of the payload.
                    let rest = len - have;
                    self.buf.clear();
                    self.buf.extend_from_slice(&[
                        (rest >> 16) as u8,
                        (rest >> 8) as u8,
                        rest as u8,
                        0,
                        0,
                        0,
                        0,
                        0,
                        1,
                    ]);
                    return;
                }
                self.buf.drain(..9 + len);
                continue;
            }
            if self.buf.len() < 9 + len {
                return;
            }
            let payload = &self.buf[9..9 + len];
            match kind {
                0x4 if flags & 1 == 0 => {
                    for p in payload.chunks_exact(6) {
                        if u16::from_be_bytes([p[0], p[1]]) == 0x4 {
                            let v = u64::from(u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
                            st.max_stream_window.fetch_max(v, Ordering::SeqCst);
                            st.window_settings.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                0x6 if flags & 1 == 0 => {
                    st.pings.fetch_add(1, Ordering::SeqCst);
                }
                0x7 => {
                    st.goaways.fetch_add(1, Ordering::SeqCst);
                }
                0x8 if stream == 0 && payload.len() == 4 => {
                    let inc = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                    st.conn_window_updates
                        .fetch_add(u64::from(inc), Ordering::SeqCst);
                }
                _ => {}
            }
            self.buf.drain(..9 + len);
        }
    }
}

/// A TCP proxy on loopback that delivers every byte `delay` after it was read, in each
/// direction, through a bounded queue.
struct DelayProxy {
    addr: SocketAddr,
    /// Client to server.
    up: Arc<DirStats>,
    /// Server to client.
    down: Arc<DirStats>,
}

impl DelayProxy {
    async fn start(upstream: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, down) = (Arc::new(DirStats::default()), Arc::new(DirStats::default()));
        let (u, d) = (Arc::clone(&up), Arc::clone(&down));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, delay, Arc::clone(&u), 24));
                tokio::spawn(pump(sr, cw, delay, Arc::clone(&d), 0));
            }
        });
        DelayProxy { addr, up, down }
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    st: Arc<DirStats>,
    preface: usize,
) {
    // Bounded: at most 1024 chunks of up to 64 KiB queued.
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Bytes)>(1024);
    let stats = Arc::clone(&st);
    tokio::spawn(async move {
        let mut scan = Scan {
            preface,
            buf: Vec::new(),
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            scan.feed(&buf[..n], &stats);
            stats.bytes.fetch_add(n as u64, Ordering::SeqCst);
            let now = stats.in_flight.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if tx
                .send((
                    tokio::time::Instant::now() + delay,
                    Bytes::copy_from_slice(&buf[..n]),
                ))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    while let Some((at, chunk)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
        st.in_flight.fetch_sub(chunk.len() as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
}

// ------------------------------------------------------------ transfers

const DELAY: Duration = Duration::from_millis(20);
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Downloads `messages` replies of `size` bytes each over one server-streaming call;
/// checks every reply arrived and returns the payload bytes received.
async fn download(ch: &Channel, size: usize, messages: i32) -> u64 {
    let req = Request::new(EchoRequest {
        message: "x".repeat(size),
        count: messages,
        sleep_ms: 0,
    });
    let mut s = ch
        .server_streaming::<_, EchoReply>("/test.Echo/ServerStream", req)
        .await
        .unwrap()
        .into_inner();
    let (mut total, mut count) = (0u64, 0);
    while let Some(m) = s.message().await.unwrap() {
        // "{text}-{i}-{200 x 'z'}"
        assert!(m
            .message
            .starts_with(&format!("{}-{count}-", &"x".repeat(size))));
        total += m.message.len() as u64;
        count += 1;
    }
    assert_eq!(count, messages);
    total
}

/// Uploads `messages` requests of `size` bytes each over one client-streaming call.
async fn upload(ch: &Channel, size: usize, messages: usize) {
    let body = "y".repeat(size);
    let mut reqs: Vec<EchoRequest> = (0..messages)
        .map(|_| EchoRequest {
            message: body.clone(),
            count: 0,
            sleep_ms: 0,
        })
        .collect();
    reqs.push(EchoRequest {
        message: "stop".into(),
        count: 0,
        sleep_ms: 0,
    });
    let r = ch
        .client_streaming::<_, EchoRequest, EchoReply>(
            "/test.Echo/ClientStream",
            Request::new(futures_util::stream::iter(reqs)),
        )
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "stopped");
}

async fn channel(
    addr: SocketAddr,
    configure: impl FnOnce(grpc_runtime::Endpoint) -> grpc_runtime::Endpoint,
) -> Channel {
    configure(Channel::builder(format!("http://{addr}")))
        .connect()
        .await
        .unwrap()
}

fn fixed_64k(e: grpc_runtime::Endpoint) -> grpc_runtime::Endpoint {
    e.adaptive_window(false)
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(64 * 1024)
}

fn server_defaults(b: ServerBuilder) -> ServerBuilder {
    b.max_send_message_size(8 * MIB as usize)
        .max_receive_message_size(8 * MIB as usize)
}

#[tokio::test]
async fn fixed_windows_bound_bytes_in_flight() {
    let srv = start(server_defaults).await;
    let proxy = DelayProxy::start(srv.addr, DELAY).await;
    let ch = channel(proxy.addr, fixed_64k).await;
    assert!(download(&ch, 64 * 1024, 48).await > 48 * 64 * KIB);
    let d = &proxy.down;
    let u = &proxy.up;
    assert_eq!(
        u.max_stream_window.load(Ordering::SeqCst),
        64 * KIB,
        "only the initial SETTINGS"
    );
    assert_eq!(u.window_settings.load(Ordering::SeqCst), 1);
    // The whole transfer moved, yet never more than a 64 KiB window (plus frame headers
    // and the response HEADERS) was on the way.
    assert!(d.bytes.load(Ordering::SeqCst) > 3 * MIB);
    let max = d.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 64 * KIB + 8 * KIB, "in flight {max}");
    assert_eq!(
        u.pings.load(Ordering::SeqCst),
        1,
        "only the connect PING: no BDP PINGs"
    );
}

#[tokio::test]
async fn adaptive_windows_grow_on_a_delayed_link_and_stay_bounded() {
    let srv = start(server_defaults).await;
    let proxy = DelayProxy::start(srv.addr, DELAY).await;
    // Default client: adaptive windows on, starting at 64 KiB here so growth shows early.
    let ch = channel(proxy.addr, |e| {
        e.initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(64 * 1024)
    })
    .await;
    let n = 512;
    assert!(download(&ch, 64 * 1024, n).await > n as u64 * 64 * KIB);
    let (d, u) = (&proxy.down, &proxy.up);
    let window = u.max_stream_window.load(Ordering::SeqCst);
    let in_flight = d.max_in_flight.load(Ordering::SeqCst);
    eprintln!(
        "adaptive: stream window {window}, settings {}, conn updates {}, max in flight {in_flight}, pings {}",
        u.window_settings.load(Ordering::SeqCst),
        u.conn_window_updates.load(Ordering::SeqCst),
        u.pings.load(Ordering::SeqCst)
    );
    // The client raised its stream window with SETTINGS, and the server used it.
    assert!(window >= 512 * KIB, "window {window}");
    assert!(window <= u64::from(BDP_LIMIT));
    assert!(u.window_settings.load(Ordering::SeqCst) >= 2);
    assert!(in_flight >= 4 * 64 * KIB, "in flight {in_flight}");
    // Memory bounded: never more than the 16 MiB limit (plus frame overhead) in flight.
    assert!(
        in_flight <= u64::from(BDP_LIMIT) + MIB,
        "in flight {in_flight}"
    );
    // Many BDP PINGs went to a server enforcing the default ping policy (5 minutes),
    // each following DATA it sent: no strikes, no GOAWAY.
    assert!(u.pings.load(Ordering::SeqCst) >= 3);
    assert_eq!(d.goaways.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn server_adaptive_windows_grow_for_uploads() {
    for adaptive in [false, true] {
        let srv = start(|b| server_defaults(b).adaptive_window(adaptive)).await;
        let proxy = DelayProxy::start(srv.addr, DELAY).await;
        let ch = channel(proxy.addr, |e| e).await;
        upload(&ch, 64 * 1024, 192).await;
        let (d, u) = (&proxy.down, &proxy.up);
        // The server's windows start at HTTP/2's 64 KiB default.
        let window = d.max_stream_window.load(Ordering::SeqCst);
        let in_flight = u.max_in_flight.load(Ordering::SeqCst);
        eprintln!("server adaptive={adaptive}: stream window {window}, max in flight {in_flight}");
        if adaptive {
            assert!(window >= 256 * KIB, "window {window}");
            assert!(window <= u64::from(BDP_LIMIT));
            assert!(in_flight >= 3 * 64 * KIB, "in flight {in_flight}");
            assert!(d.pings.load(Ordering::SeqCst) >= 3, "server sent BDP PINGs");
        } else {
            assert_eq!(
                window, 0,
                "no SETTINGS_INITIAL_WINDOW_SIZE: the default stays"
            );
            assert!(in_flight <= 64 * KIB + 8 * KIB, "in flight {in_flight}");
        }
        assert_eq!(d.goaways.load(Ordering::SeqCst), 0);
    }
}

/// Throughput numbers for docs/flow-control.md (not a test: timing varies with load).
/// `cargo test --release -p grpc-runtime --test flow_control -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: FLOW_MESSAGES=2048 cargo test --release -p grpc-runtime --test flow_control -- --ignored --nocapture measure"]
async fn measure_throughput() {
    let delays = [Duration::ZERO, DELAY];
    // (name, fixed (stream, connection) windows or the defaults, adaptive)
    type Config = (&'static str, Option<(u32, u32)>, bool);
    let configs: [Config; 5] = [
        ("fixed 64K/64K", Some((64 * 1024, 64 * 1024)), false),
        ("fixed 1M/2M (default)", None, false),
        ("fixed 4M/8M", Some((4 << 20, 8 << 20)), false),
        ("fixed 16M/16M", Some((16 << 20, 16 << 20)), false),
        ("adaptive from 1M/2M (default)", None, true),
    ];
    let srv = start(server_defaults).await;
    for delay in delays {
        let proxy = DelayProxy::start(srv.addr, delay).await;
        for (name, windows, adaptive) in configs {
            let ch = channel(proxy.addr, |mut e| {
                if let Some((s, c)) = windows {
                    e = e
                        .initial_stream_window_size(s)
                        .initial_connection_window_size(c);
                }
                e.adaptive_window(adaptive)
            })
            .await;
            // FLOW_MESSAGES (default 512 = 32 MiB) sets the transfer size; fixed 64 KiB
            // windows over the delayed link get 1/8 of it (they are that slow).
            let big: i32 = std::env::var("FLOW_MESSAGES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(512);
            let messages = if !delay.is_zero() && windows == Some((64 * 1024, 64 * 1024)) {
                big / 8
            } else {
                big
            };
            let t = Instant::now();
            let bytes = download(&ch, 64 * 1024, messages).await;
            let s = t.elapsed().as_secs_f64();
            println!(
                "delay {:>2} ms each way | {name:<30} | {:>5.1} MiB in {:>6.2} s = {:>7.1} MiB/s",
                delay.as_millis(),
                bytes as f64 / MIB as f64,
                s,
                bytes as f64 / MIB as f64 / s
            );
        }
    }
}
