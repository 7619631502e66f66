//! User-API gaps found by the examples, over real sockets:
//! - client interceptors get a [`CallInfo`] in `finish_call` (path, kind, start time,
//!   server address, per-call state set in `start`), so they can time calls;
//! - `ServerContext::cancellation()` / `is_finished()` tell a real cancellation (client
//!   reset, deadline) from a call that finished normally (`cancelled()` resolves for both);
//! - `Request::disable_compression()` sends one call uncompressed on a compressing channel
//!   (checked on the wire: no `grpc-encoding`, flag 0);
//! - `Response::encoding()` / `Streaming::encoding()` report the response's `grpc-encoding`
//!   (and, on the server, the request stream's).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw_h2::*;
use futures_util::StreamExt;
use grpc_runtime::client::interceptor::InterceptFuture;
use grpc_runtime::client::{CallInfo, CallKind, ClientCallContext, Interceptor};
use grpc_runtime::server::{Server, ServerCall, Service};
use grpc_runtime::{
    BoxFuture, BoxStream, Channel, Code, CompressionEncoding, MethodDescriptor, Request, Response,
    Status, Streaming,
};
use tokio::sync::mpsc;

const PATH: &str = "/test.Echo/Call";

async fn channel(addr: SocketAddr) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap()
}

fn decode(p: &[u8]) -> Echo {
    <Echo as prost::Message>::decode(p).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

// ---------------------------------------------------------------------------------------
// 1. Client interceptors: per-call information in finish_call
// ---------------------------------------------------------------------------------------

/// The per-call state the timing interceptor keeps in the call's extensions.
#[derive(Clone, Debug, PartialEq)]
struct CallId(u64);

/// What `finish_call` saw for one call.
#[derive(Debug, Clone)]
struct Seen {
    id: Option<u64>,
    path: &'static str,
    kind: CallKind,
    elapsed: Duration,
    peer: Option<SocketAddr>,
    code: Code,
    /// `start_time` in `finish_call` equals the one `start` saw.
    same_start: bool,
}

/// Numbers every call in `start` and records what `finish_call` gets back.
#[derive(Clone, Default)]
struct Timer {
    next: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct StartedAt(std::time::Instant);

impl Interceptor for Timer {
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        call.extensions_mut().insert(CallId(id));
        let at = call.start_time();
        call.extensions_mut().insert(StartedAt(at));
        Box::pin(std::future::ready(Ok(())))
    }

    fn finish_call(&self, call: &CallInfo, status: &Status) {
        self.seen.lock().unwrap().push(Seen {
            id: call.extensions().get::<CallId>().map(|c| c.0),
            path: call.path(),
            kind: call.kind(),
            elapsed: call.elapsed(),
            peer: call.peer(),
            code: status.code(),
            same_start: call.extensions().get::<StartedAt>().map(|s| s.0)
                == Some(call.start_time()),
        });
    }
}

/// An interceptor written against the old `finish(path, status)` only: still called.
#[derive(Clone, Default)]
struct Legacy(Arc<Mutex<Vec<(String, Code)>>>);

impl Interceptor for Legacy {
    fn start<'a>(&'a self, _call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn finish(&self, path: &'static str, status: &Status) {
        self.0
            .lock()
            .unwrap()
            .push((path.to_string(), status.code()));
    }
}

/// Rejects calls carrying `x-reject`.
struct Rejecter;

impl Interceptor for Rejecter {
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        let r = if call.metadata().get("x-reject").is_some() {
            Err(Status::permission_denied("rejected"))
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(r))
    }
}

/// A raw server answering each request after `sleep:<ms>` (the request text) with one
/// message; on paths ending in "Stream", a message, a pause, then the trailers.
fn sleepy_server() -> Handler {
    handler(|req: http::Request<h2::RecvStream>, mut send| async move {
        let streaming = req.uri().path().ends_with("Stream");
        let mut body = req.into_body();
        let data = read_body(&mut body).await.unwrap();
        let text = decode(&unframe(&data)[0].1).text;
        let ms = text
            .strip_prefix("sleep:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if streaming {
            let mut s = send.send_response(response_headers(), false).unwrap();
            s.send_data(frame_msg(&echo("first")), false).unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = s.send_trailers(trailers(0, ""));
        } else {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            respond(send, vec![frame_msg(&echo(&text))], 0, "").await;
        }
    })
}

#[tokio::test]
async fn interceptor_finish_call_gets_its_own_call_info() {
    let srv = raw_server(sleepy_server()).await;
    let timer = Timer::default();
    let legacy = Legacy::default();
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .interceptor(timer.clone())
        .interceptor(legacy.clone())
        .interceptor(Rejecter)
        .connect()
        .await
        .unwrap();

    // Two concurrent calls on the same path; the one started first finishes last. Each
    // finish_call must get back its own id and its own duration.
    let (c1, c2) = (ch.clone(), ch.clone());
    let slow = tokio::spawn(async move {
        c1.unary::<Echo, Echo>(PATH, Request::new(echo("sleep:400")))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fast = tokio::spawn(async move {
        c2.unary::<Echo, Echo>(PATH, Request::new(echo("sleep:10")))
            .await
    });
    assert_eq!(fast.await.unwrap().unwrap().get_ref().text, "sleep:10");
    assert_eq!(slow.await.unwrap().unwrap().get_ref().text, "sleep:400");
    {
        let seen = timer.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let (f, s) = (&seen[0], &seen[1]);
        assert_eq!(
            (f.id, s.id),
            (Some(1), Some(0)),
            "the fast call (id 1) finished first: {seen:?}"
        );
        assert!(
            f.elapsed < Duration::from_millis(300),
            "fast call timed {:?}",
            f.elapsed
        );
        assert!(
            s.elapsed >= Duration::from_millis(400),
            "slow call timed {:?}",
            s.elapsed
        );
        for x in [f, s] {
            assert_eq!(
                (x.path, x.kind, x.code, x.peer),
                (PATH, CallKind::Unary, Code::Ok, Some(srv.addr))
            );
            assert!(x.same_start);
        }
        timer.seen.lock().unwrap().clear();
    }
    assert_eq!(
        *legacy.0.lock().unwrap(),
        vec![(PATH.to_string(), Code::Ok), (PATH.to_string(), Code::Ok)]
    );

    // Server streaming: finish_call runs when the stream ends, timing the whole call.
    let path = "/test.Echo/ServerStream";
    let mut s = ch
        .server_streaming::<Echo, Echo>(path, Request::new(echo("sleep:300")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "first");
    assert!(
        timer.seen.lock().unwrap().is_empty(),
        "not finished while the stream runs"
    );
    assert!(s.message().await.unwrap().is_none());
    {
        let seen = timer.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].id, seen[0].path, seen[0].kind, seen[0].code),
            (Some(2), path, CallKind::ServerStreaming, Code::Ok)
        );
        assert_eq!(seen[0].peer, Some(srv.addr));
        assert!(
            seen[0].elapsed >= Duration::from_millis(300),
            "{:?}",
            seen[0].elapsed
        );
        timer.seen.lock().unwrap().clear();
    }

    // Bidi with a stream that ends early on the client: kind and CANCELLED on drop.
    let reqs = futures_util::stream::iter(vec![echo("sleep:0")]);
    let s = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Echo/BidiStream", Request::new(reqs))
        .await
        .unwrap();
    drop(s);
    {
        let seen = timer.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].id, seen[0].kind, seen[0].code),
            (Some(3), CallKind::BidiStreaming, Code::Cancelled)
        );
        timer.seen.lock().unwrap().clear();
    }

    // Rejected by an inner interceptor: the outer ones get their own state back, no peer.
    let before = srv.requests.lock().unwrap().len();
    let mut req = Request::new(echo("x"));
    req.metadata_mut().insert("x-reject", "1").unwrap();
    let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(srv.requests.lock().unwrap().len(), before);
    let seen = timer.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].id, seen[0].code, seen[0].peer, seen[0].kind),
        (Some(4), Code::PermissionDenied, None, CallKind::Unary)
    );
    assert!(seen[0].same_start);
    assert_eq!(
        legacy.0.lock().unwrap().last().unwrap().1,
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn interceptor_call_info_without_a_server() {
    // Nothing listens: the call fails UNAVAILABLE before any connection, so no peer.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let timer = Timer::default();
    let ch = Channel::builder(format!("http://{addr}"))
        .interceptor(timer.clone())
        .connect_lazy()
        .unwrap();
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let seen = timer.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].id, seen[0].code, seen[0].peer),
        (Some(0), Code::Unavailable, None)
    );
}

// ---------------------------------------------------------------------------------------
// 2. ServerContext: real cancellation vs normal completion
// ---------------------------------------------------------------------------------------

/// What a watcher task spawned by the handler saw once `cancelled()` resolved:
/// (method, cancelled() code, cancellation() code, is_finished()).
type Outcome = (String, Code, Option<Code>, bool);

struct CancelService {
    events: mpsc::UnboundedSender<Outcome>,
}

const CANCEL_METHODS: &[MethodDescriptor] = &[
    MethodDescriptor {
        name: "Ok",
        full_path: "/test.Cancel/Ok",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Fail",
        full_path: "/test.Cancel/Fail",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Slow",
        full_path: "/test.Cancel/Slow",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Bidi",
        full_path: "/test.Cancel/Bidi",
        client_streaming: true,
        server_streaming: true,
    },
];

fn watch(ctx: grpc_runtime::ServerContext, name: &str, events: mpsc::UnboundedSender<Outcome>) {
    // While the handler runs: neither cancelled nor finished.
    assert!(ctx.cancellation().is_none() && !ctx.is_finished() && !ctx.is_cancelled());
    let name = name.to_string();
    tokio::spawn(async move {
        let st = ctx.cancelled().await;
        let _ = events.send((
            name,
            st.code(),
            ctx.cancellation().map(|s| s.code()),
            ctx.is_finished(),
        ));
    });
}

impl Service for CancelService {
    fn name(&self) -> &'static str {
        "test.Cancel"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        CANCEL_METHODS
    }
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
        let events = self.events.clone();
        match method {
            "Ok" => call.unary(move |req: Request<Echo>| async move {
                watch(req.context().clone(), "Ok", events);
                Ok(Response::new(echo("done")))
            }),
            "Fail" => call.unary(move |req: Request<Echo>| async move {
                watch(req.context().clone(), "Fail", events);
                Err::<Response<Echo>, _>(Status::not_found("nothing here"))
            }),
            "Slow" => call.unary(move |req: Request<Echo>| async move {
                let ctx = req.context().clone();
                watch(ctx.clone(), "Slow", events);
                tokio::select! {
                    st = ctx.cancelled() => Err(st),
                    _ = tokio::time::sleep(Duration::from_secs(10)) => Ok(Response::new(echo("late"))),
                }
            }),
            "Bidi" => call.bidi_streaming(move |req: Request<Streaming<Echo>>| async move {
                watch(req.context().clone(), "Bidi", events);
                let out: BoxStream<Echo> = Box::pin(req.into_inner().map(|m| m.map(|m| echo(&m.text))));
                Ok(Response::new(out))
            }),
            _ => call.unimplemented(),
        }
    }
}

async fn cancel_server() -> (SocketAddr, mpsc::UnboundedReceiver<Outcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(CancelService { events: tx });
    tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    });
    (addr, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no outcome within 5 s")
        .unwrap()
}

#[tokio::test]
async fn server_context_tells_cancellation_from_normal_completion() {
    let (addr, mut rx) = cancel_server().await;
    let ch = channel(addr).await;

    // Finished normally (OK, or an error status the handler returned): cancelled() still
    // resolves (CANCELLED, so spawned tasks stop) but cancellation() is None.
    let r = ch
        .unary::<Echo, Echo>("/test.Cancel/Ok", Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "done");
    assert_eq!(
        next(&mut rx).await,
        ("Ok".to_string(), Code::Cancelled, None, true)
    );
    let e = ch
        .unary::<Echo, Echo>("/test.Cancel/Fail", Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        next(&mut rx).await,
        ("Fail".to_string(), Code::Cancelled, None, true)
    );

    // A bidi call that ends normally.
    let reqs = futures_util::stream::iter(vec![echo("a"), echo("b")]);
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Cancel/Bidi", Request::new(reqs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "a");
    assert_eq!(s.message().await.unwrap().unwrap().text, "b");
    assert!(s.message().await.unwrap().is_none());
    assert_eq!(
        next(&mut rx).await,
        ("Bidi".to_string(), Code::Cancelled, None, true)
    );

    // The client drops a unary call the server is working on: a real cancellation.
    let call = ch.unary::<Echo, Echo>("/test.Cancel/Slow", Request::new(echo("x")));
    assert!(tokio::time::timeout(Duration::from_millis(200), call)
        .await
        .is_err());
    assert_eq!(
        next(&mut rx).await,
        (
            "Slow".to_string(),
            Code::Cancelled,
            Some(Code::Cancelled),
            false
        )
    );

    // A bidi call the client cancels mid-stream.
    let (tx, reqs) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(reqs, |mut r| async move { r.recv().await.map(|m| (m, r)) });
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Cancel/Bidi", Request::new(reqs))
        .await
        .unwrap()
        .into_inner();
    tx.send(echo("one")).unwrap();
    assert_eq!(s.message().await.unwrap().unwrap().text, "one");
    s.cancel();
    assert_eq!(
        next(&mut rx).await,
        (
            "Bidi".to_string(),
            Code::Cancelled,
            Some(Code::Cancelled),
            false
        )
    );

    // The deadline passes while the handler works. A raw h2 client sends the grpc-timeout
    // but, unlike our client, does not reset the stream at its own deadline (that reset
    // would race with the server's timer and look like a client cancel).
    let io = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2c, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut h2c = h2c.ready().await.unwrap();
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/test.Cancel/Slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "150m")
        .body(())
        .unwrap();
    let (resp, mut body) = h2c.send_request(head, false).unwrap();
    body.send_data(frame_msg(&echo("x")), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap()),
        Some("4"),
        "{resp:?}"
    );
    assert_eq!(
        next(&mut rx).await,
        (
            "Slow".to_string(),
            Code::DeadlineExceeded,
            Some(Code::DeadlineExceeded),
            false
        )
    );
}

// ---------------------------------------------------------------------------------------
// 3. Per-call "no compression" on a compressing channel, on the wire
// ---------------------------------------------------------------------------------------

/// Per call: the request's `grpc-encoding` and each frame's (flag, text).
type Recorded = Arc<Mutex<Vec<(Option<String>, Vec<(u8, String)>)>>>;

fn recording_server(seen: Recorded) -> Handler {
    handler(move |req: http::Request<h2::RecvStream>, send| {
        let seen = seen.clone();
        async move {
            let enc = req
                .headers()
                .get("grpc-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            let mut body = req.into_body();
            let data = read_body(&mut body).await.unwrap();
            let frames = unframe(&data)
                .into_iter()
                .map(|(flag, p)| {
                    let plain = if flag == 1 { gunzip(&p) } else { p };
                    (flag, decode(&plain).text)
                })
                .collect();
            seen.lock().unwrap().push((enc, frames));
            respond(send, vec![frame_msg(&echo("done"))], 0, "").await;
        }
    })
}

#[tokio::test]
async fn disable_compression_overrides_the_channel_default_on_the_wire() {
    let seen: Recorded = Arc::new(Mutex::new(Vec::new()));
    let srv = raw_server(recording_server(seen.clone())).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .send_compressed(CompressionEncoding::Gzip)
        .connect()
        .await
        .unwrap();

    // 0: channel default applies
    ch.unary::<Echo, Echo>(PATH, Request::new(echo("default")))
        .await
        .unwrap();
    // 1: explicit identity for this call
    let mut req = Request::new(echo("off"));
    assert!(!req.compression_disabled());
    req.disable_compression();
    assert!(req.compression_disabled());
    assert_eq!(req.compression(), None);
    ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    // 2: set_compression(None) only clears the per-call choice: channel default again
    let mut req = Request::new(echo("unset"));
    req.set_compression(None);
    ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    // 3: a later set_compression undoes disable_compression
    let mut req = Request::new(echo("re-enabled"));
    req.disable_compression();
    req.set_compression(Some(CompressionEncoding::Gzip));
    assert!(!req.compression_disabled());
    ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    // 4: streaming request, identity for the whole call
    let mut req = Request::new(futures_util::stream::iter(vec![echo("s1"), echo("s2")]));
    req.disable_compression();
    let r: Response<Echo> = ch.client_streaming(PATH, req).await.unwrap();
    assert_eq!(r.get_ref().text, "done");
    // 5: bidi, identity; the request stream keeps the option through `map`
    let req = Request::new(futures_util::stream::iter(vec![echo("b1")]));
    let mut req = req.map(|s| s.map(|m| echo(&format!("{}!", m.text))));
    req.disable_compression();
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "done");
    assert!(s.message().await.unwrap().is_none());

    let seen = seen.lock().unwrap().clone();
    let gz = Some("gzip".to_string());
    let f = |v: &[(u8, &str)]| {
        v.iter()
            .map(|(flag, t)| (*flag, t.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], (gz.clone(), f(&[(1, "default")])));
    assert_eq!(seen[1], (None, f(&[(0, "off")])));
    assert_eq!(seen[2], (gz.clone(), f(&[(1, "unset")])));
    assert_eq!(seen[3], (gz, f(&[(1, "re-enabled")])));
    assert_eq!(seen[4], (None, f(&[(0, "s1"), (0, "s2")])));
    assert_eq!(seen[5], (None, f(&[(0, "b1!")])));
}

// ---------------------------------------------------------------------------------------
// 4. The encoding a response (or request stream) arrived in
// ---------------------------------------------------------------------------------------

/// Answers with `grpc-encoding: <enc>` taken from the path's last segment ("gzip",
/// "identity", "snappy", "none" = no header, "trailers-only" = Trailers-Only OK).
fn encoding_server() -> Handler {
    handler(|req: http::Request<h2::RecvStream>, mut send| async move {
        let enc = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let mut body = req.into_body();
        let _ = read_body(&mut body).await;
        if enc == "trailers-only" {
            let mut head = response_headers();
            head.headers_mut()
                .insert("grpc-status", "0".parse().unwrap());
            let _ = send.send_response(head, true);
            return;
        }
        let mut head = response_headers();
        if enc != "none" {
            head.headers_mut()
                .insert("grpc-encoding", enc.parse().unwrap());
        }
        let mut s = send.send_response(head, false).unwrap();
        let payload = prost::Message::encode_to_vec(&echo(&enc));
        let first = if enc == "gzip" {
            frame(1, &gzip(&payload))
        } else {
            frame(0, &payload)
        };
        s.send_data(first, false).unwrap();
        s.send_trailers(trailers(0, "")).unwrap();
    })
}

#[tokio::test]
async fn client_sees_the_response_encoding() {
    let srv = raw_server(encoding_server()).await;
    let ch = channel(srv.addr).await;

    let cases = [
        ("gzip", Some(CompressionEncoding::Gzip)),
        ("identity", None),
        ("none", None),
        // an encoding we lack: uncompressed messages still decode; the encoding is unknown
        ("snappy", None),
    ];
    for (enc, want) in cases {
        let path: &'static str = Box::leak(format!("/test.Enc/{enc}").into_boxed_str());
        let r = ch
            .unary::<Echo, Echo>(path, Request::new(echo("x")))
            .await
            .unwrap();
        assert_eq!(r.encoding(), want, "unary {enc}");
        assert_eq!(r.get_ref().text, enc);
        // grpc-encoding is not user metadata
        assert_eq!(r.metadata().get("grpc-encoding"), None);

        let r = ch
            .server_streaming::<Echo, Echo>(path, Request::new(echo("x")))
            .await
            .unwrap();
        assert_eq!(r.encoding(), want, "server streaming {enc}");
        let mut s = r.into_inner();
        assert_eq!(s.encoding(), want, "stream {enc}");
        assert_eq!(s.message().await.unwrap().unwrap().text, enc);
        assert!(s.message().await.unwrap().is_none());
        assert_eq!(s.encoding(), want);

        let reqs = futures_util::stream::iter(vec![echo("y")]);
        let r: Response<Echo> = ch.client_streaming(path, Request::new(reqs)).await.unwrap();
        assert_eq!(r.encoding(), want, "client streaming {enc}");
    }

    // Trailers-Only: no messages, no encoding.
    let r = ch
        .server_streaming::<Echo, Echo>("/test.Enc/trailers-only", Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(r.encoding(), None);
    let mut s = r.into_inner();
    assert!(s.message().await.unwrap().is_none());
    assert_eq!(s.encoding(), None);

    // A response built locally knows nothing.
    assert_eq!(Response::new(echo("x")).encoding(), None);
}

/// Real server: the handler reports its request stream's encoding; the reply goes back
/// in the server's default choice (the request's encoding), which the client sees.
struct EncService;

const ENC_METHODS: &[MethodDescriptor] = &[MethodDescriptor {
    name: "Stream",
    full_path: "/test.EncSrv/Stream",
    client_streaming: true,
    server_streaming: false,
}];

impl Service for EncService {
    fn name(&self) -> &'static str {
        "test.EncSrv"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        ENC_METHODS
    }
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
        match method {
            "Stream" => call.client_streaming(|req: Request<Streaming<Echo>>| async move {
                let mut s = req.into_inner();
                let enc = s
                    .encoding()
                    .map(|e| e.as_str())
                    .unwrap_or("identity")
                    .to_string();
                while s.message().await?.is_some() {}
                Ok(Response::new(echo(&enc)))
            }),
            _ => call.unimplemented(),
        }
    }
}

#[tokio::test]
async fn encoding_on_both_sides_with_the_real_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(EncService);
    tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    });
    let ch = channel(addr).await;

    let mut req = Request::new(futures_util::stream::iter(vec![echo("a"), echo("b")]));
    req.set_compression(Some(CompressionEncoding::Gzip));
    let r: Response<Echo> = ch
        .client_streaming("/test.EncSrv/Stream", req)
        .await
        .unwrap();
    assert_eq!(
        r.get_ref().text,
        "gzip",
        "server saw the request stream's encoding"
    );
    assert_eq!(
        r.encoding(),
        Some(CompressionEncoding::Gzip),
        "server answered in the request's encoding"
    );
    assert_eq!(r.message_compressed(), Some(true));

    let req = Request::new(futures_util::stream::iter(vec![echo("a")]));
    let r: Response<Echo> = ch
        .client_streaming("/test.EncSrv/Stream", req)
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "identity");
    assert_eq!(r.encoding(), None);
}
