//! Retries and hedging (gRFC A6) from the service config, against real servers on
//! 127.0.0.1: a raw h2 server that answers each attempt as the test scripts it (and
//! records `grpc-previous-rpc-attempts`), and our own servers behind a killable proxy.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw_h2::{echo, frame_msg, handler, raw_server, respond, Echo, RawServer};
use futures_util::StreamExt;
use grpc_runtime::{Channel, Code, Request};

const PATH: &str = "/test.Echo/Unary";

/// How the scripted server answers one attempt.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    /// Trailers-Only with this status code and optional pushback header.
    Fail(u32, Option<&'static str>),
    /// Answer OK after this long (unless cancelled first).
    SlowOk(u64),
}

#[derive(Default)]
struct Seen {
    /// `grpc-previous-rpc-attempts` of every attempt, in arrival order.
    previous: Vec<Option<String>>,
    at: Vec<Instant>,
    /// Attempts that saw RST_STREAM(CANCEL) from the client.
    cancelled: usize,
}

/// A server answering attempt `i` (counted over the server's lifetime) with `script(i)`.
async fn scripted(
    script: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (RawServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let n = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    let s = Arc::clone(&seen);
    let srv = raw_server(handler(move |req, mut send| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let prev = req.headers().get("grpc-previous-rpc-attempts").map(|v| v.to_str().unwrap().to_string());
        {
            let mut s = s.lock().unwrap();
            s.previous.push(prev);
            s.at.push(Instant::now());
        }
        let answer = script(i);
        let s = Arc::clone(&s);
        async move {
            match answer {
                Answer::Ok => respond(send, vec![frame_msg(&echo(&format!("attempt {i}")))], 0, "").await,
                Answer::Fail(code, pushback) => {
                    let mut r = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .header("grpc-status", code.to_string())
                        .header("grpc-message", format!("attempt {i} failed"));
                    if let Some(p) = pushback {
                        r = r.header("grpc-retry-pushback-ms", p);
                    }
                    let _ = send.send_response(r.body(()).unwrap(), true);
                }
                Answer::SlowOk(ms) => {
                    let reset = std::future::poll_fn(|cx| send.poll_reset(cx));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {
                            respond(send, vec![frame_msg(&echo(&format!("attempt {i}")))], 0, "").await
                        }
                        r = reset => {
                            if r.ok() == Some(h2::Reason::CANCEL) {
                                s.lock().unwrap().cancelled += 1;
                            }
                        }
                    }
                }
            }
        }
    }))
    .await;
    (srv, seen)
}

fn retry_config(max_attempts: u32, extra: &str) -> String {
    format!(
        r#"{{"methodConfig": [{{"name": [{{"service": "test.Echo"}}], "retryPolicy": {{
            "maxAttempts": {max_attempts}, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}}}]{extra}}}"#
    )
}

async fn channel(addr: SocketAddr, config: &str) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .default_service_config(config)
        .connect()
        .await
        .unwrap()
}

async fn call(ch: &Channel) -> Result<String, grpc_runtime::Status> {
    ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .map(|r| r.into_inner().text)
}

#[tokio::test]
async fn retryable_failures_are_retried_with_the_previous_attempts_header() {
    let (srv, seen) = scripted(|i| {
        if i < 2 {
            Answer::Fail(14, None)
        } else {
            Answer::Ok
        }
    })
    .await;
    let ch = channel(srv.addr, &retry_config(4, "")).await;
    assert_eq!(call(&ch).await.unwrap(), "attempt 2");
    let prev = seen.lock().unwrap().previous.clone();
    assert_eq!(prev, [None, Some("1".to_string()), Some("2".to_string())]);
}

#[tokio::test]
async fn non_retryable_codes_and_the_attempt_cap() {
    let (srv, seen) = scripted(|_| Answer::Fail(13, None)).await;
    let ch = channel(srv.addr, &retry_config(4, "")).await;
    let s = call(&ch).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::Internal, "attempt 0 failed")
    );
    assert_eq!(
        seen.lock().unwrap().previous.len(),
        1,
        "INTERNAL is not in retryableStatusCodes"
    );

    // maxAttempts 10 is capped at 5; the last attempt's status is the call's.
    let (srv, seen) = scripted(|_| Answer::Fail(14, None)).await;
    let ch = channel(srv.addr, &retry_config(10, "")).await;
    let s = call(&ch).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unavailable, "attempt 4 failed")
    );
    assert_eq!(seen.lock().unwrap().previous.len(), 5);
}

#[tokio::test]
async fn server_pushback_sets_the_delay_or_stops_retries() {
    let (srv, seen) = scripted(|i| {
        if i == 0 {
            Answer::Fail(14, Some("300"))
        } else {
            Answer::Ok
        }
    })
    .await;
    let ch = channel(srv.addr, &retry_config(3, "")).await;
    assert_eq!(call(&ch).await.unwrap(), "attempt 1");
    let at = seen.lock().unwrap().at.clone();
    let gap = at[1] - at[0];
    assert!(
        gap >= Duration::from_millis(290) && gap < Duration::from_millis(800),
        "{gap:?}"
    );

    for bad in ["-1", "soon"] {
        let (srv, seen) = scripted(move |_| Answer::Fail(14, Some(bad))).await;
        let ch = channel(srv.addr, &retry_config(3, "")).await;
        assert_eq!(call(&ch).await.unwrap_err().code(), Code::Unavailable);
        assert_eq!(
            seen.lock().unwrap().previous.len(),
            1,
            "pushback {bad:?} means do not retry"
        );
    }
}

#[tokio::test]
async fn throttling_stops_retries_when_tokens_run_low_and_successes_restore_them() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = Arc::clone(&failing);
    let (srv, seen) = scripted(move |_| {
        if f.load(Ordering::SeqCst) {
            Answer::Fail(14, None)
        } else {
            Answer::Ok
        }
    })
    .await;
    let throttling = r#", "retryThrottling": {"maxTokens": 10, "tokenRatio": 1}"#;
    let ch = channel(srv.addr, &retry_config(5, throttling)).await;
    let attempts = |seen: &Arc<Mutex<Seen>>| seen.lock().unwrap().previous.len();
    // 10 tokens: 4 retries (9, 8, 7, 6), the 5th failure leaves 5 = half: throttled.
    assert!(call(&ch).await.is_err());
    assert_eq!(attempts(&seen), 5);
    // Throttled: one attempt (4 tokens left).
    assert!(call(&ch).await.is_err());
    assert_eq!(attempts(&seen), 6);
    // Three successes give back 3 tokens (7): failures at 6 (retried), then 5 (throttled).
    failing.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        call(&ch).await.unwrap();
    }
    failing.store(true, Ordering::SeqCst);
    let before = attempts(&seen);
    assert!(call(&ch).await.is_err());
    assert_eq!(attempts(&seen) - before, 2);
}

fn hedging_config(max_attempts: u32, delay: &str) -> String {
    format!(
        r#"{{"methodConfig": [{{"name": [{{"service": "test.Echo"}}], "hedgingPolicy": {{
            "maxAttempts": {max_attempts}, "hedgingDelay": "{delay}", "nonFatalStatusCodes": ["UNAVAILABLE"]}}}}]}}"#
    )
}

#[tokio::test]
async fn hedging_sends_the_next_attempt_after_the_delay_and_cancels_the_loser() {
    let (srv, seen) = scripted(|i| {
        if i == 0 {
            Answer::SlowOk(3000)
        } else {
            Answer::Ok
        }
    })
    .await;
    let ch = channel(srv.addr, &hedging_config(3, "0.1s")).await;
    let started = Instant::now();
    assert_eq!(call(&ch).await.unwrap(), "attempt 1");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(95) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = seen.lock().unwrap();
    assert_eq!(
        s.previous,
        [None, Some("1".to_string())],
        "the third attempt was never needed"
    );
    assert_eq!(s.cancelled, 1, "the slow first attempt was cancelled");
}

#[tokio::test]
async fn hedging_non_fatal_failure_sends_the_next_at_once_fatal_ends_the_call() {
    let (srv, seen) = scripted(|i| {
        if i == 0 {
            Answer::Fail(14, None)
        } else {
            Answer::Ok
        }
    })
    .await;
    let ch = channel(srv.addr, &hedging_config(3, "5s")).await;
    let started = Instant::now();
    assert_eq!(call(&ch).await.unwrap(), "attempt 1");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.lock().unwrap().previous.len(), 2);

    let (srv, seen) = scripted(|_| Answer::Fail(9, None)).await;
    let ch = channel(srv.addr, &hedging_config(3, "0.05s")).await;
    assert_eq!(
        call(&ch).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.lock().unwrap().previous.len(),
        1,
        "a fatal status commits at once"
    );
}

// ------------------------------------------------------------ a backend dies mid-run

/// A TCP proxy in front of a backend that can be killed: every socket closes at once.
struct Proxy {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let t = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                t.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { addr, tasks }
    }

    fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test]
async fn a_backend_killed_mid_run_loses_no_call_with_a_retry_policy() {
    let a = common::start(|b| b).await;
    let b = common::start(|b| b).await;
    let (pa, pb) = (Proxy::start(a.addr).await, Proxy::start(b.addr).await);
    let config = r#"{"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [{"name": [{"service": "test.Echo"}],
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.02s", "maxBackoff": "0.2s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;
    let ch = Channel::builder(format!("ipv4:{},{}", pa.addr, pb.addr))
        .default_service_config(config)
        .connect()
        .await
        .unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (ch, ok) = (ch.clone(), Arc::clone(&ok));
        load.push(tokio::spawn(async move {
            let until = Instant::now() + Duration::from_millis(600);
            while Instant::now() < until {
                let r = ch
                    .unary::<_, common::EchoReply>(
                        PATH,
                        Request::new(common::EchoRequest {
                            message: "m".into(),
                            count: 0,
                            sleep_ms: 20,
                        }),
                    )
                    .await;
                r.expect("no call is lost when a backend dies");
                ok.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    pa.kill();
    for l in load {
        l.await.unwrap();
    }
    assert!(
        ok.load(Ordering::SeqCst) > 20,
        "{}",
        ok.load(Ordering::SeqCst)
    );
    pb.kill();
}

// ------------------------------------------------------------ streaming requests are replayed

/// A server for streaming calls: attempt `i` reads `read(i)` messages (all if `None`),
/// then fails it Trailers-Only with UNAVAILABLE if `fail(i)`, else echoes every message
/// it reads as a reply, then OK. Records the texts each attempt received.
/// Per attempt: its `grpc-previous-rpc-attempts` and the message texts it received.
type Received = Arc<Mutex<Vec<(Option<String>, Vec<String>)>>>;

async fn streaming_server(
    read: impl Fn(usize) -> Option<usize> + Send + Sync + 'static,
    fail: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> (RawServer, Received) {
    use prost::Message;
    let got: Received = Arc::default();
    let n = Arc::new(AtomicUsize::new(0));
    let (read, fail) = (Arc::new(read), Arc::new(fail));
    let g = Arc::clone(&got);
    let srv = raw_server(handler(move |req, mut send| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let prev = req
            .headers()
            .get("grpc-previous-rpc-attempts")
            .map(|v| v.to_str().unwrap().to_string());
        // `x-single`: answer a client-streaming call with one message, the last one read.
        let single = req.headers().contains_key("x-single");
        g.lock().unwrap().push((prev, Vec::new()));
        let (g, read, fail) = (Arc::clone(&g), Arc::clone(&read), Arc::clone(&fail));
        async move {
            let mut body = common::raw_h2::FrameReader::new(req.into_body());
            let limit = read(i);
            if fail(i) {
                let mut k = 0;
                while limit.map_or(true, |l| k < l) {
                    let Some((_, m)) = body.next().await else {
                        break;
                    };
                    g.lock().unwrap()[i]
                        .1
                        .push(Echo::decode(&m[..]).unwrap().text);
                    k += 1;
                }
                let r = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "14")
                    .body(())
                    .unwrap();
                let _ = send.send_response(r, true);
                return;
            }
            let Ok(mut out) = send.send_response(common::raw_h2::response_headers(), false) else {
                return;
            };
            let mut last = String::new();
            while let Some((_, m)) = body.next().await {
                last = Echo::decode(&m[..]).unwrap().text;
                g.lock().unwrap()[i].1.push(last.clone());
                if !single && out.send_data(frame_msg(&echo(&last)), false).is_err() {
                    return;
                }
            }
            if single {
                let _ = out.send_data(frame_msg(&echo(&last)), false);
            }
            let _ = out.send_trailers(common::raw_h2::trailers(0, ""));
        }
    }))
    .await;
    (srv, got)
}

#[tokio::test]
async fn client_streaming_is_replayed_on_retry() {
    let (srv, got) = streaming_server(|_| None, |i| i == 0).await;
    let ch = channel(srv.addr, &retry_config(3, "")).await;
    let mut req = Request::new(futures_util::stream::iter(["a", "b", "c"].map(echo)));
    req.metadata_mut().insert("x-single", "1").unwrap();
    let r = ch
        .client_streaming::<_, Echo, Echo>(PATH, req)
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "c");
    let got = got.lock().unwrap().clone();
    let want: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, [(None, want.clone()), (Some("1".to_string()), want)]);
}

#[tokio::test]
async fn bidi_replays_what_was_sent_then_goes_on_after_commit() {
    // Attempt 0 reads one message and fails; attempt 1 gets it replayed, commits (its
    // headers), and then sees the messages sent afterwards.
    let (srv, got) = streaming_server(|i| if i == 0 { Some(1) } else { None }, |i| i == 0).await;
    let ch = channel(srv.addr, &retry_config(3, "")).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Echo>(4);
    tx.send(echo("first")).await.unwrap();
    let rx =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut replies = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, Request::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "first");
    tx.send(echo("second")).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "second");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    let got = got.lock().unwrap().clone();
    assert_eq!(got[0], (None, vec!["first".to_string()]));
    assert_eq!(
        got[1],
        (
            Some("1".to_string()),
            vec!["first".to_string(), "second".to_string()]
        )
    );
}

#[tokio::test]
async fn a_full_retry_buffer_commits_the_call() {
    let (srv, got) = streaming_server(|_| None, |_| true).await;
    // Each message is 5 + 3 bytes framed; a 10-byte per-call buffer holds one.
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .default_service_config(retry_config(3, ""))
        .retry_buffer_size(10, 1 << 20)
        .connect()
        .await
        .unwrap();
    let msgs = futures_util::stream::iter(["a", "b"].map(echo)).then(|m| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        m
    });
    let s = ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(msgs))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "not retried once the buffer overflowed"
    );
    // Within the bounds the same call is retried (and fails 3 times here).
    let (srv, got) = streaming_server(|_| None, |_| true).await;
    let ch = channel(srv.addr, &retry_config(3, "")).await;
    let msgs = futures_util::stream::iter(["a", "b"].map(echo));
    assert!(ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(msgs))
        .await
        .is_err());
    assert_eq!(got.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn hedged_client_streaming_gives_every_attempt_all_messages_and_cancels_the_loser() {
    use prost::Message;
    // Attempt 0 reads everything and never answers; attempt 1 answers with what it read.
    let got: Received = Arc::default();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let n = Arc::new(AtomicUsize::new(0));
    let (g, c) = (Arc::clone(&got), Arc::clone(&cancelled));
    let srv = raw_server(handler(move |req, mut send| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let prev = req
            .headers()
            .get("grpc-previous-rpc-attempts")
            .map(|v| v.to_str().unwrap().to_string());
        g.lock().unwrap().push((prev, Vec::new()));
        let (g, c) = (Arc::clone(&g), Arc::clone(&c));
        async move {
            let mut body = common::raw_h2::FrameReader::new(req.into_body());
            let mut texts = Vec::new();
            while let Some((_, m)) = body.next().await {
                texts.push(Echo::decode(&m[..]).unwrap().text);
            }
            g.lock().unwrap()[i].1 = texts.clone();
            if i == 0 {
                if std::future::poll_fn(|cx| send.poll_reset(cx)).await.ok()
                    == Some(h2::Reason::CANCEL)
                {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            respond(send, vec![frame_msg(&echo(&texts.join(",")))], 0, "").await;
        }
    }))
    .await;
    let ch = channel(srv.addr, &hedging_config(3, "0.1s")).await;
    let msgs = futures_util::stream::iter(["a", "b", "c"].map(echo));
    let started = Instant::now();
    let r = ch
        .client_streaming::<_, Echo, Echo>(PATH, Request::new(msgs))
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "a,b,c");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = got.lock().unwrap().clone();
    let all: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, [(None, all.clone()), (Some("1".to_string()), all)]);
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        1,
        "the first attempt was cancelled"
    );
}
