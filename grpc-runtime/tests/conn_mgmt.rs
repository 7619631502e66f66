//! Connection management over real sockets (gRFC A8 keepalive + enforcement, A9
//! connection age/idle): short configured timings, raw HTTP/2 frames where the
//! behaviour is only visible at frame level.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use grpc_runtime::server::{Server, ServerBuilder};
use grpc_runtime::transport::BackoffConfig;
use grpc_runtime::{Channel, Code, ConnectivityState, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

// ------------------------------------------------------------ raw frame client

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

fn raw_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A client that speaks HTTP/2 frames by hand: preface + empty SETTINGS, then whatever
/// the test writes. Never acks anything unless told to.
struct RawConn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    async fn open(addr: SocketAddr) -> RawConn {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(PREFACE).await.unwrap();
        tcp.write_all(&raw_frame(0x4, 0, 0, &[])).await.unwrap();
        RawConn {
            tcp,
            buf: Vec::new(),
        }
    }

    async fn ping(&mut self, data: u8) {
        self.tcp
            .write_all(&raw_frame(0x6, 0, 0, &[data; 8]))
            .await
            .unwrap();
    }

    /// Next frame, or `None` on EOF / connection reset.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 4096];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Frames until the server closes the connection (bounded by `within`); with `ack`,
    /// answers the server's PINGs as a live client would.
    async fn until_closed(&mut self, within: Duration, ack: bool) -> (Vec<Frame>, bool) {
        let mut frames = Vec::new();
        let closed = tokio::time::timeout(within, async {
            while let Some(f) = self.next().await {
                if ack && f.kind == 0x6 && f.flags & 1 == 0 {
                    let _ = self.tcp.write_all(&raw_frame(0x6, 1, 0, &f.payload)).await;
                }
                frames.push(f);
            }
        })
        .await
        .is_ok();
        (frames, closed)
    }
}

fn goaway(frames: &[Frame]) -> Option<(u32, u32, Vec<u8>)> {
    frames.iter().find(|f| f.kind == 0x7).map(|f| {
        let last = u32::from_be_bytes(f.payload[0..4].try_into().unwrap()) & 0x7fff_ffff;
        let code = u32::from_be_bytes(f.payload[4..8].try_into().unwrap());
        (last, code, f.payload[8..].to_vec())
    })
}

// ------------------------------------------------------------ server with an accept counter

struct CountingServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _shutdown: oneshot::Sender<()>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

async fn start_counting(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> CountingServer {
    start_counting_at("127.0.0.1:0".parse().unwrap(), configure).await
}

async fn start_counting_at(
    at: SocketAddr,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> CountingServer {
    let (etx, _erx) = mpsc::unbounded_channel();
    std::mem::forget(_erx);
    let listener = TcpListener::bind(at).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let incoming = futures_util::stream::unfold(listener, move |l| {
        let count = Arc::clone(&count);
        async move {
            let item = l.accept().await.map(|(s, peer)| {
                count.fetch_add(1, Ordering::SeqCst);
                (s, Some(peer))
            });
            Some((item, l))
        }
    });
    let builder = configure(
        Server::builder().add_service(echo_server::EchoServer::new(TestEcho { events: etx })),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(
        builder
            .grace_period(Duration::from_millis(200))
            .serve_with_incoming_stream(incoming, async {
                let _ = rx.await;
            }),
    );
    CountingServer {
        addr,
        accepted,
        _shutdown: tx,
        done: Some(done),
    }
}

impl CountingServer {
    /// Graceful shutdown; returns when the listener and connections are gone.
    async fn stop(self) {
        let _ = self._shutdown.send(());
        if let Some(done) = self.done {
            let _ = done.await;
        }
    }
}

fn echo_req(message: &str, sleep_ms: i64) -> Request<EchoRequest> {
    Request::new(EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms,
    })
}

// ------------------------------------------------------------ A8 enforcement

#[tokio::test]
async fn ping_flood_earns_goaway_too_many_pings() {
    let srv = start(|b| b).await;
    let mut c = RawConn::open(srv.addr).await;
    for i in 0..6 {
        c.ping(i).await;
    }
    let (frames, closed) = c.until_closed(Duration::from_secs(5), true).await;
    assert!(closed, "server must close the connection");
    let (_, code, debug) = goaway(&frames).expect("a GOAWAY frame");
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
    assert_eq!(debug, b"too_many_pings");
    // The first ping is free and two strikes are tolerated, so at least 3 were answered
    // (h2 may answer the rest of the same read batch before the GOAWAY goes out).
    let acks = frames
        .iter()
        .filter(|f| f.kind == 0x6 && f.flags & 1 == 1)
        .count();
    assert!(acks >= 3, "{frames:?}");
}

#[tokio::test]
async fn pings_at_the_permitted_rate_are_answered() {
    let srv = start(|b| {
        b.permit_keepalive_time(Duration::from_millis(100))
            .permit_keepalive_without_calls(true)
    })
    .await;
    let mut c = RawConn::open(srv.addr).await;
    let mut acks = 0;
    for i in 0..6 {
        c.ping(i).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let f = tokio::time::timeout_at(deadline.into(), c.next())
                .await
                .expect("an ack in time")
                .expect("open");
            assert_ne!(f.kind, 0x7, "unexpected GOAWAY: {f:?}");
            if f.kind == 0x6 && f.flags & 1 == 1 {
                assert_eq!(f.payload, vec![i; 8]);
                acks += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(acks, 6);
}

#[tokio::test]
async fn pings_without_calls_are_strikes_unless_permitted() {
    // Permitted interval is short, but without calls pings are still limited (2 h).
    let srv = start(|b| b.permit_keepalive_time(Duration::from_millis(10))).await;
    let mut c = RawConn::open(srv.addr).await;
    for i in 0..4 {
        c.ping(i).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (frames, closed) = c.until_closed(Duration::from_secs(5), true).await;
    assert!(closed);
    let (_, code, debug) = goaway(&frames).expect("GOAWAY");
    assert_eq!((code, debug.as_slice()), (0xb, &b"too_many_pings"[..]));
}

// ------------------------------------------------------------ server keepalive

#[tokio::test]
async fn server_keepalive_closes_a_silent_client() {
    let srv = start(|b| {
        b.keepalive_time(Duration::from_millis(200))
            .keepalive_timeout(Duration::from_millis(300))
    })
    .await;
    let mut c = RawConn::open(srv.addr).await;
    let started = Instant::now();
    let (frames, closed) = c.until_closed(Duration::from_secs(5), false).await;
    assert!(closed, "a client that never acks must be dropped");
    let elapsed = started.elapsed();
    assert!(
        frames.iter().any(|f| f.kind == 0x6 && f.flags & 1 == 0),
        "server sent a keepalive PING: {frames:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn server_keepalive_keeps_an_answering_client() {
    let srv = start(|b| {
        b.keepalive_time(Duration::from_millis(100))
            .keepalive_timeout(Duration::from_millis(200))
    })
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // h2 answers the server's pings, so the same connection still serves calls.
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("still here", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "still here");
}

// ------------------------------------------------------------ A9

#[tokio::test]
async fn max_connection_idle_closes_an_idle_connection_only() {
    let srv = start_counting(|b| b.max_connection_idle(Duration::from_millis(300))).await;
    // A call longer than the idle limit keeps the connection.
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("long", 700))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "long");
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
    // Then idle: the server sends GOAWAY(NO_ERROR) and closes.
    let mut c = RawConn::open(srv.addr).await;
    let started = Instant::now();
    let (frames, closed) = c.until_closed(Duration::from_secs(5), true).await;
    assert!(closed);
    let (last, code, _) = goaway(&frames).expect("GOAWAY");
    assert_eq!(code, 0, "NO_ERROR");
    assert_eq!(last, 0x7fff_ffff, "first phase of the graceful GOAWAY");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // The channel reconnects transparently after its idle connection was closed.
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("again", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "again");
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn max_connection_age_drains_with_no_failed_calls() {
    let srv = start_counting(|b| {
        b.max_connection_age(Duration::from_millis(250))
            .max_connection_age_grace(Duration::from_secs(5))
    })
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (ch, ok) = (ch.clone(), Arc::clone(&ok));
        tasks.push(tokio::spawn(async move {
            let end = Instant::now() + Duration::from_millis(2000);
            let mut i = 0;
            while Instant::now() < end {
                let text = format!("w{w}-{i}");
                let r = ch
                    .unary::<_, EchoReply>("/test.Echo/Unary", echo_req(&text, 20))
                    .await;
                match r {
                    Ok(r) => assert_eq!(r.into_inner().message, text),
                    Err(s) => panic!("call {text} failed: {s:?}"),
                }
                ok.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let conns = srv.accepted.load(Ordering::SeqCst);
    assert!(
        conns >= 4,
        "connections should have been cycled by max age, got {conns}"
    );
    assert!(
        ok.load(Ordering::SeqCst) > 100,
        "{}",
        ok.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn max_connection_age_grace_ends_long_calls() {
    let srv = start_counting(|b| {
        b.max_connection_age(Duration::from_millis(200))
            .max_connection_age_grace(Duration::from_millis(300))
    })
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("too long", 5000))
        .await;
    let s = r.expect_err("the call outlived age + grace");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            s.code(),
            grpc_runtime::Code::Unavailable | grpc_runtime::Code::Cancelled
        ),
        "{s:?}"
    );
}

// ------------------------------------------------------------ a TCP proxy that can go silent

/// Forwards TCP to `upstream`. `freeze()` makes every connection accepted so far stop
/// forwarding in both directions (the sockets stay open: a silent peer); connections
/// accepted later forward normally.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    frozen_below: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let (acc, fro) = (Arc::clone(&accepted), Arc::clone(&frozen_below));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let index = acc.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, index, Arc::clone(&fro)));
                tokio::spawn(pump(sr, cw, index, Arc::clone(&fro)));
            }
        });
        Proxy {
            addr,
            accepted,
            frozen_below,
        }
    }

    fn freeze(&self) {
        self.frozen_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    index: usize,
    frozen_below: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if index < frozen_below.load(Ordering::SeqCst) {
            // Silent from now on: swallow everything, never close.
            loop {
                if matches!(from.read(&mut buf).await, Ok(0) | Err(_)) {
                    std::future::pending::<()>().await;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------ client keepalive (A8)

#[tokio::test]
async fn client_keepalive_detects_a_silent_peer_and_reconnects() {
    let srv = start(|b| b.permit_keepalive_time(Duration::from_millis(10))).await;
    let proxy = Proxy::start(srv.addr).await;
    let ch = Channel::builder(format!("http://{}", proxy.addr))
        .keepalive_time_unchecked_for_tests(Duration::from_millis(200))
        .keepalive_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    // A slow call in flight, then the peer goes silent.
    let call = {
        let ch = ch.clone();
        tokio::spawn(async move {
            ch.unary::<_, EchoReply>("/test.Echo/Unary", echo_req("slow", 10_000))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.freeze();
    let frozen_at = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("detected in time")
        .unwrap();
    let elapsed = frozen_at.elapsed();
    let s = r.expect_err("the call cannot succeed through a silent peer");
    assert_eq!(s.code(), grpc_runtime::Code::Unavailable, "{s:?}");
    assert!(s.message().contains("keepalive timeout"), "{s:?}");
    // keepalive_time (200 ms from the last read) + timeout (300 ms), with slack.
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    // The channel reconnects (a new proxied connection, not frozen).
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("after", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "after");
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_keepalive_without_calls_stays_quiet_by_default() {
    // The server punishes any idle pinging (permit_without_calls false, 2 h rule).
    let srv = start_counting(|b| b).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .keepalive_time_unchecked_for_tests(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        ch.keepalive_time(),
        Some(Duration::from_millis(50)),
        "no too_many_pings expected"
    );
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("x", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "x");
    assert_eq!(
        srv.accepted.load(Ordering::SeqCst),
        1,
        "the connection survived"
    );
}

#[tokio::test]
async fn client_doubles_keepalive_time_after_too_many_pings() {
    let srv = start(|b| b.permit_keepalive_without_calls(true)).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .keepalive_time_unchecked_for_tests(Duration::from_millis(50))
        .keepalive_without_calls(true)
        .connect()
        .await
        .unwrap();
    assert_eq!(ch.keepalive_time(), Some(Duration::from_millis(50)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while ch.keepalive_time() == Some(Duration::from_millis(50)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ch.keepalive_time(), Some(Duration::from_millis(100)));
    // Calls still work on a new connection.
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("y", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "y");
}

#[test]
fn keepalive_time_has_a_10s_floor() {
    let ch = Channel::builder("http://127.0.0.1:1")
        .keepalive_time(Duration::from_secs(1))
        .connect_lazy()
        .unwrap();
    assert_eq!(ch.keepalive_time(), Some(Duration::from_secs(10)));
    let ch = Channel::builder("http://127.0.0.1:1")
        .connect_lazy()
        .unwrap();
    assert_eq!(ch.keepalive_time(), None);
}

// ------------------------------------------------------------ channel: backoff, states, wait-for-ready

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        base_delay: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.0,
        max_delay: Duration::from_millis(400),
    }
}

#[tokio::test]
async fn fail_fast_call_fails_unavailable_while_server_is_down() {
    let srv = start_counting(|b| b).await;
    let addr = srv.addr;
    let ch = Channel::builder(format!("http://{addr}"))
        .backoff(fast_backoff())
        .connect()
        .await
        .unwrap();
    assert_eq!(ch.state(), ConnectivityState::Ready);
    srv.stop().await;
    // The first call after the server went away tries to reconnect and fails.
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("x", 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert_eq!(ch.state(), ConnectivityState::TransientFailure);
    // While in TRANSIENT_FAILURE, calls fail at once (no waiting for the backoff).
    let started = Instant::now();
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("y", 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_restart_reconnects_with_backoff_and_wait_for_ready_calls_succeed() {
    let srv = start_counting(|b| b).await;
    let addr = srv.addr;
    let ch = Channel::builder(format!("http://{addr}"))
        .backoff(fast_backoff())
        .connect()
        .await
        .unwrap();
    srv.stop().await;
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("down", 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    // Wait-for-ready calls queue while the server is down...
    let mut waiting = Vec::new();
    for i in 0..3 {
        let ch = ch.clone();
        waiting.push(tokio::spawn(async move {
            let mut r = echo_req(&format!("wfr{i}"), 0);
            r.set_wait_for_ready(true);
            r.set_timeout(Duration::from_secs(5));
            ch.unary::<_, EchoReply>("/test.Echo/Unary", r).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ch.state(), ConnectivityState::TransientFailure);
    // ...and succeed once it is back (same port), within about one max backoff.
    let restarted_at = Instant::now();
    let srv2 = start_counting_at(addr, |b| b).await;
    let state = tokio::time::timeout(
        Duration::from_secs(3),
        ch.wait_for_state_change(ConnectivityState::TransientFailure),
    )
    .await
    .expect("reconnected");
    assert_eq!(state, ConnectivityState::Ready);
    assert!(
        restarted_at.elapsed() < Duration::from_millis(1000),
        "{:?}",
        restarted_at.elapsed()
    );
    for (i, w) in waiting.into_iter().enumerate() {
        let r = w
            .await
            .unwrap()
            .expect("wait-for-ready call succeeds after the restart");
        assert_eq!(r.into_inner().message, format!("wfr{i}"));
    }
    assert_eq!(
        srv2.accepted.load(Ordering::SeqCst),
        1,
        "one connection shared by the queued calls"
    );
}

#[tokio::test]
async fn wait_for_ready_is_bounded_by_the_deadline() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l); // nothing listens there
    let ch = Channel::builder(format!("http://{addr}"))
        .backoff(fast_backoff())
        .connect_lazy()
        .unwrap();
    let mut r = echo_req("never", 0);
    r.set_wait_for_ready(true);
    r.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", r)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    let e = started.elapsed();
    assert!(
        e >= Duration::from_millis(280) && e < Duration::from_millis(1000),
        "{e:?}"
    );
}

#[tokio::test]
async fn reconnect_attempts_back_off_exponentially() {
    // A listener that accepts and hangs up at once: every attempt fails, and each is counted.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let attempts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = Arc::clone(&attempts);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            seen.lock().unwrap().push(Instant::now());
            drop(s);
        }
    });
    let backoff = BackoffConfig {
        base_delay: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.0,
        max_delay: Duration::from_secs(10),
    };
    let ch = Channel::builder(format!("http://{addr}"))
        .backoff(backoff)
        .connect_lazy()
        .unwrap();
    let _ = ch.get_state(true);
    // Attempts at about 0, 0.1, 0.3, 0.7, 1.5 s (delays 100, 200, 400, 800 ms), then 1.6 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while attempts.lock().unwrap().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(ch.state(), ConnectivityState::TransientFailure);
    let times = attempts.lock().unwrap().clone();
    assert_eq!(
        times.len(),
        5,
        "the 6th attempt is due 1.6 s after the 5th: {times:?}"
    );
    for (i, w) in [0.1f64, 0.2, 0.4, 0.8].iter().enumerate() {
        let gap = (times[i + 1] - times[i]).as_secs_f64();
        assert!(
            gap >= w - 0.01 && gap < w + 0.3,
            "gap {i}: {gap} vs {w} ({times:?})"
        );
    }
}

#[tokio::test]
async fn channel_states_and_idle_timeout() {
    let srv = start_counting(|b| b).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .idle_timeout(Some(Duration::from_millis(300)))
        .connect_lazy()
        .unwrap();
    assert_eq!(ch.state(), ConnectivityState::Idle);
    assert_eq!(ch.get_state(true), ConnectivityState::Idle);
    let mut s = ConnectivityState::Idle;
    let deadline = Instant::now() + Duration::from_secs(3);
    while s != ConnectivityState::Ready && Instant::now() < deadline {
        s = tokio::time::timeout(Duration::from_secs(3), ch.wait_for_state_change(s))
            .await
            .unwrap();
    }
    assert_eq!(s, ConnectivityState::Ready);
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("a", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "a");
    // No calls for the idle timeout: back to IDLE, connection released.
    let s = tokio::time::timeout(
        Duration::from_secs(2),
        ch.wait_for_state_change(ConnectivityState::Ready),
    )
    .await
    .unwrap();
    assert_eq!(s, ConnectivityState::Idle);
    // A call longer than the idle timeout keeps the connection (streams are open).
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("b", 700))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "b");
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 2);
    ch.shutdown();
    assert_eq!(ch.state(), ConnectivityState::Shutdown);
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("c", 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
}

// ------------------------------------------------------------ GOAWAY following under mixed load

#[tokio::test]
async fn goaway_mid_load_loses_no_call_of_any_kind() {
    // Connections are drained (two-phase GOAWAY) every ~200 ms while unary, server-streaming
    // and slow bidi calls run: calls under the last-stream-id finish on the old
    // connection, new ones go to a new connection, none fails.
    let srv = start_counting(|b| {
        b.max_connection_age(Duration::from_millis(200))
            .max_connection_age_grace(Duration::from_secs(10))
    })
    .await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_millis(1500);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..3 {
        let (ch, done) = (ch.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < end {
                let text = format!("u{w}-{i}");
                let r = ch
                    .unary::<_, EchoReply>("/test.Echo/Unary", echo_req(&text, 5))
                    .await;
                assert_eq!(
                    r.unwrap_or_else(|s| panic!("unary {text}: {s:?}"))
                        .into_inner()
                        .message,
                    text
                );
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for w in 0..2 {
        let (ch, done) = (ch.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < end {
                let text = format!("s{w}-{i}");
                let req = Request::new(EchoRequest {
                    message: text.clone(),
                    count: 20,
                    sleep_ms: 0,
                });
                let mut stream = ch
                    .server_streaming::<_, EchoReply>("/test.Echo/ServerStream", req)
                    .await
                    .unwrap_or_else(|s| panic!("server stream {text}: {s:?}"))
                    .into_inner();
                let mut n = 0;
                while let Some(m) = stream
                    .message()
                    .await
                    .unwrap_or_else(|s| panic!("server stream {text}: {s:?}"))
                {
                    assert!(m.message.contains(&text), "{} vs {text}", m.message);
                    n += 1;
                }
                assert_eq!(n, 20, "{text}");
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for w in 0..2 {
        let (ch, done) = (ch.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < end {
                let tag = format!("b{w}-{i}");
                let t2 = tag.clone();
                // 8 messages, 40 ms apart: each call spans at least one drain.
                let reqs = futures_util::stream::unfold(0, move |k| {
                    let t = t2.clone();
                    async move {
                        if k == 8 {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        Some((
                            EchoRequest {
                                message: format!("{t}/{k}"),
                                count: 0,
                                sleep_ms: 0,
                            },
                            k + 1,
                        ))
                    }
                });
                let mut stream = ch
                    .bidi_streaming::<_, _, EchoReply>("/test.Echo/Bidi", Request::new(reqs))
                    .await
                    .unwrap_or_else(|s| panic!("bidi {tag}: {s:?}"))
                    .into_inner();
                let mut got = Vec::new();
                while let Some(m) = stream
                    .message()
                    .await
                    .unwrap_or_else(|s| panic!("bidi {tag}: {s:?}"))
                {
                    got.push(m.message);
                }
                let want: Vec<String> = (0..8).map(|k| format!("echo:{tag}/{k}")).collect();
                assert_eq!(got, want);
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let conns = srv.accepted.load(Ordering::SeqCst);
    assert!(conns >= 4, "connections were drained repeatedly: {conns}");
    assert!(
        done.load(Ordering::SeqCst) > 50,
        "{}",
        done.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_call_after_long_silence_pings_first() {
    // Keepalive sleeps while no call is open; a call started after more than
    // keepalive_time of silence sends a PING at once, so a dead peer is found within
    // keepalive_timeout (not keepalive_time + keepalive_timeout).
    let srv = start(|b| b.permit_keepalive_time(Duration::from_millis(10))).await;
    let proxy = Proxy::start(srv.addr).await;
    let ch = Channel::builder(format!("http://{}", proxy.addr))
        .keepalive_time_unchecked_for_tests(Duration::from_millis(1000))
        .keepalive_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    proxy.freeze();
    let started = Instant::now();
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("x", 0))
        .await
        .unwrap_err();
    let e = started.elapsed();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(
        e >= Duration::from_millis(250) && e < Duration::from_millis(900),
        "{e:?}"
    );
}

#[tokio::test]
async fn responses_reset_ping_strikes_h2_client() {
    // An h2 client pinging before every call: each response (HEADERS/DATA from the
    // server) resets the strikes, so it is never told off; once it pings without calls
    // in between, it earns GOAWAY(ENHANCE_YOUR_CALM).
    let srv = start(|b| b).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let (mut client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut pp = conn.ping_pong().unwrap();
    let driver = tokio::spawn(conn);
    for i in 0..6 {
        pp.ping(h2::Ping::opaque()).await.unwrap();
        let head = grpc_head(srv.addr, "/test.Echo/Unary", &[]);
        let body = frame(&EchoRequest {
            message: format!("m{i}"),
            count: 0,
            sleep_ms: 0,
        });
        let r = call(&mut client, head, &[body]).await;
        assert_eq!(r.grpc_status().as_deref(), Some("0"), "call {i}");
    }
    for _ in 0..4 {
        if pp.ping(h2::Ping::opaque()).await.is_err() {
            break;
        }
    }
    let e = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.is_go_away() && e.is_remote(), "{e:?}");
    assert_eq!(e.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
}

// ------------------------------------------------------------ cancel bursts (issue 15)

#[tokio::test]
async fn bursts_of_cancelled_calls_do_not_end_the_connection() {
    let srv = start_counting(|b| b).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    // A long call in flight on the connection.
    let long = {
        let ch = ch.clone();
        tokio::spawn(async move {
            ch.unary::<_, EchoReply>("/test.Echo/Unary", echo_req("long", 800))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in [25, 100, 200, 200] {
        // A fan-out cancelled by its parent: n calls started and dropped within about a
        // millisecond (HEADERS and DATA, then RST_STREAM(CANCEL) for each).
        let mut fanout = Vec::new();
        for _ in 0..n {
            let ch = ch.clone();
            fanout.push(tokio::spawn(async move {
                ch.unary::<_, EchoReply>("/test.Echo/Unary", echo_req("fanout", 5000))
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        for t in fanout {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = long
        .await
        .unwrap()
        .expect("the call in flight survives the bursts");
    assert_eq!(r.into_inner().message, "long");
    let r = ch
        .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("after", 0))
        .await
        .unwrap();
    assert_eq!(r.into_inner().message, "after");
    assert_eq!(
        srv.accepted.load(Ordering::SeqCst),
        1,
        "one connection throughout"
    );
}

// ------------------------------------------------------------ header read timeout

/// HPACK: one integer with an `n`-bit prefix (RFC 7541 section 5.1), `first` holding the
/// bits above the prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// An HPACK block of literal fields without indexing (no Huffman): a gRPC request head.
fn request_block(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        out.push(0);
        hpack_int(&mut out, 0, 7, k.len());
        out.extend_from_slice(k.as_bytes());
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// A unary Echo request message, gRPC-framed.
fn echo_message(message: &str) -> Vec<u8> {
    frame(&EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms: 0,
    })
    .to_vec()
}

/// Writes `bytes` one chunk every `gap` until the server closes the connection; returns
/// the frames received and when the connection closed (`None`: not within `within`).
async fn trickle(
    c: &mut RawConn,
    chunks: Vec<Vec<u8>>,
    gap: Duration,
    within: Duration,
) -> (Vec<Frame>, Option<Duration>) {
    let started = Instant::now();
    let mut frames = Vec::new();
    let mut chunks = chunks.into_iter();
    while started.elapsed() < within {
        if let Some(chunk) = chunks.next() {
            let _ = c.tcp.write_all(&chunk).await;
        }
        let until = tokio::time::Instant::now() + gap;
        loop {
            match tokio::time::timeout_at(until, c.next()).await {
                Err(_) => break,
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, Some(started.elapsed())),
            }
        }
    }
    (frames, None)
}

#[tokio::test]
async fn a_trickled_header_block_is_closed_while_other_connections_keep_working() {
    let limit = Duration::from_secs(1);
    let srv = start_counting(|b| b.header_read_timeout(limit)).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    // A normal client on its own connection, calling all along.
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let normal = tokio::spawn(async move {
        let mut ok = 0;
        loop {
            let r = ch
                .unary::<_, EchoReply>("/test.Echo/Unary", echo_req("normal", 0))
                .await;
            assert_eq!(
                r.expect("the normal client's call").into_inner().message,
                "normal"
            );
            ok += 1;
            if tokio::time::timeout(Duration::from_millis(50), &mut stop_rx)
                .await
                .is_ok()
            {
                return ok;
            }
        }
    });
    let block = request_block("/test.Echo/Unary");
    // 1. HEADERS without END_HEADERS, then a CONTINUATION whose payload comes one byte
    //    every 200 ms. (Many small CONTINUATION frames h2 cuts off by itself: GOAWAY
    //    ENHANCE_YOUR_CALM "too_many_continuations" after a few.)
    let mut chunks = vec![raw_frame(0x1, 0, 1, &block[..4])];
    let mut cont = raw_frame(0x9, 0x4, 1, &block[4..]);
    chunks.push(cont.drain(..9).collect());
    chunks.extend(cont.into_iter().map(|b| vec![b]));
    // 2. A frame header announcing 16 KiB of HEADERS (END_HEADERS), then its payload
    //    one byte every 200 ms.
    let mut big = raw_frame(0x1, 0x4, 1, &[]);
    big[0..3].copy_from_slice(&[0, 0x40, 0]);
    let big_chunks: Vec<Vec<u8>> = std::iter::once(big)
        .chain((0..100).map(|_| vec![0u8]))
        .collect();
    for (name, chunks) in [("continuations", chunks), ("16 KiB frame", big_chunks)] {
        let mut c = RawConn::open(srv.addr).await;
        let (frames, closed) = trickle(
            &mut c,
            chunks,
            Duration::from_millis(200),
            Duration::from_secs(6),
        )
        .await;
        let closed =
            closed.unwrap_or_else(|| panic!("{name}: the trickling connection was not closed"));
        assert!(
            closed >= limit && closed < limit + Duration::from_millis(1500),
            "{name}: closed after {closed:?}"
        );
        let (_, code, debug) =
            goaway(&frames).unwrap_or_else(|| panic!("{name}: GOAWAY expected: {frames:?}"));
        assert_eq!(
            (code, debug.as_slice()),
            (0, &b"header_read_timeout"[..]),
            "{name}"
        );
    }
    let _ = stop_tx.send(());
    let calls = normal.await.unwrap();
    assert!(calls >= 10, "the normal client made {calls} calls");
    srv.stop().await;
}

#[tokio::test]
async fn a_slow_but_complete_request_is_not_cut_off() {
    let srv = start_counting(|b| b.header_read_timeout(Duration::from_secs(1))).await;
    let mut c = RawConn::open(srv.addr).await;
    let block = request_block("/test.Echo/Unary");
    let (a, b) = block.split_at(block.len() / 2);
    // Idle for longer than the limit first: idle time is not timed.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for (id, message) in [(1u32, "slow-1"), (3, "slow-2")] {
        // The header block in two frames 600 ms apart (within the limit) ...
        c.tcp.write_all(&raw_frame(0x1, 0, id, a)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.tcp.write_all(&raw_frame(0x9, 0x4, id, b)).await.unwrap();
        // ... then the body 1.3 s later (bodies are not timed), the message split in two.
        let body = echo_message(message);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        c.tcp
            .write_all(&raw_frame(0x0, 0, id, &body[..3]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.tcp
            .write_all(&raw_frame(0x0, 0x1, id, &body[3..]))
            .await
            .unwrap();
        // The answer: DATA carrying the echo, then trailers ending the stream.
        let mut data = Vec::new();
        loop {
            let f = tokio::time::timeout(Duration::from_secs(5), c.next())
                .await
                .unwrap()
                .expect("connection open");
            assert_ne!(f.kind, 0x7, "no GOAWAY: {f:?}");
            assert_ne!(f.kind, 0x3, "no RST_STREAM: {f:?}");
            if f.kind == 0x0 {
                data.extend_from_slice(&f.payload);
            }
            if f.kind == 0x1 && f.flags & 0x1 != 0 {
                break;
            }
        }
        assert!(
            data.windows(message.len()).any(|w| w == message.as_bytes()),
            "{message}: {data:?}"
        );
    }
    srv.stop().await;
}

// ------------------------------------------------------------ MAX_CONCURRENT_STREAMS

#[tokio::test]
async fn max_concurrent_streams_is_advertised_and_enforced() {
    let srv = start_counting(|b| b.max_concurrent_streams(2)).await;
    let mut c = RawConn::open(srv.addr).await;
    // Advertised: SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 2 in the server's SETTINGS.
    let settings = loop {
        let f = c.next().await.expect("server SETTINGS");
        if f.kind == 0x4 && f.flags & 1 == 0 {
            break f.payload;
        }
    };
    let advertised = settings
        .chunks(6)
        .find(|s| u16::from_be_bytes([s[0], s[1]]) == 0x3)
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(advertised, Some(2));
    c.tcp.write_all(&raw_frame(0x4, 0x1, 0, &[])).await.unwrap();
    // Enforced: two requests whose bodies never end hold both slots; a third stream is
    // refused, and the connection goes on.
    let block = request_block("/test.Echo/Unary");
    for id in [1u32, 3, 5] {
        c.tcp
            .write_all(&raw_frame(0x1, 0x4, id, &block))
            .await
            .unwrap();
    }
    let refused = loop {
        let f = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap()
            .expect("connection open");
        assert_ne!(f.kind, 0x7, "no GOAWAY: {f:?}");
        if f.kind == 0x3 {
            break u32::from_be_bytes(f.payload[..4].try_into().unwrap());
        }
    };
    assert_eq!(refused, 0x7, "REFUSED_STREAM");
    // Once a slot frees (stream 1 completes), a new stream is served.
    let body = echo_message("freed");
    c.tcp
        .write_all(&raw_frame(0x0, 0x1, 1, &body))
        .await
        .unwrap();
    c.tcp
        .write_all(&raw_frame(0x1, 0x4, 7, &block))
        .await
        .unwrap();
    c.tcp
        .write_all(&raw_frame(0x0, 0x1, 7, &echo_message("after")))
        .await
        .unwrap();
    let mut data = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !data.windows(5).any(|w| w == b"after") {
        let f = tokio::time::timeout_at(deadline, c.next())
            .await
            .expect("stream 7 answered")
            .expect("connection open");
        assert!(f.kind != 0x3 && f.kind != 0x7, "{f:?}");
        if f.kind == 0x0 {
            data.extend_from_slice(&f.payload);
        }
    }
    // Our client queues calls within the advertised limit instead of being refused:
    // three 300 ms calls on one connection limited to 2 all succeed, the third after
    // one of the first two.
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let calls = (0..3).map(|i| {
        let ch = ch.clone();
        async move {
            ch.unary::<_, EchoReply>("/test.Echo/Unary", echo_req(&format!("q{i}"), 300))
                .await
        }
    });
    for r in futures_util::future::join_all(calls).await {
        r.expect("queued, not refused");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    srv.stop().await;
}
