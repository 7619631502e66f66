//! Per-call and per-message controls over real sockets: per-message "do not compress"
//! on streaming requests (`OutboundStream` of `OutboundMessage`), the compressed flag of received messages
//! on both sides (`Streaming::last_message_compressed`, `Request/Response::message_compressed`),
//! explicit cancellation (`Streaming::cancel`, `CancelHandle`) and the peer address of a
//! call (`Response::remote_addr`). Wire-level checks use a raw h2 peer.

mod common;

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw_h2::*;
use grpc_runtime::client::interceptor::InterceptFuture;
use grpc_runtime::client::{ClientCallContext, Interceptor};
use grpc_runtime::server::{ServerCall, Service};
use grpc_runtime::{
    BoxFuture, BoxStream, Channel, Code, CompressionEncoding, IntoStreamingRequest,
    MethodDescriptor, OutboundMessage, OutboundStream, Request, Response, Status, Streaming,
};
use tokio::sync::mpsc;

const PATH: &str = "/test.Echo/Call";

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap()
}

fn decode(p: &[u8]) -> Echo {
    <Echo as prost::Message>::decode(p).unwrap()
}

/// A raw server that records the request's `grpc-encoding` and each request frame's
/// flag and (decompressed) text, then answers one message.
/// Per call: the request's `grpc-encoding` and each frame's (flag, text).
type Seen = Arc<Mutex<Vec<(Option<String>, Vec<(u8, String)>)>>>;

fn recording_server(seen: Seen) -> Handler {
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

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn per_message_do_not_compress_on_the_wire() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let srv = raw_server(recording_server(seen.clone())).await;
    let ch = channel(srv.addr).await;

    // client streaming, gzip call: flags follow each message's choice
    let msgs = vec![
        OutboundMessage::new(echo("a")),
        OutboundMessage::new(echo("b")).compress(false),
        OutboundMessage::new(echo("c")),
        OutboundMessage::from(echo("d")).compress(false),
    ];
    let mut req = Request::new(OutboundStream::new(futures_util::stream::iter(msgs)));
    req.set_compression(Some(CompressionEncoding::Gzip));
    let r = ch
        .client_streaming(PATH, req.into_streaming_request())
        .await
        .unwrap();
    let r: Response<Echo> = r;
    assert_eq!(r.get_ref().text, "done");

    // bidi from a bare OutboundStream
    let msgs = vec![
        OutboundMessage::new(echo("e")).compress(false),
        OutboundMessage::new(echo("f")),
    ];
    let mut req = OutboundStream::new(futures_util::stream::iter(msgs)).into_streaming_request();
    req.set_compression(Some(CompressionEncoding::Gzip));
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "done");
    assert_eq!(s.message().await.unwrap(), None);

    // bidi with plain messages: every message compressed under the call's encoding
    let mut req = Request::new(futures_util::stream::iter(vec![echo("x"), echo("y")]));
    req.set_compression(Some(CompressionEncoding::Gzip));
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "done");
    assert_eq!(s.message().await.unwrap(), None);

    // no encoding: compress(true) cannot compress; every flag is 0
    let msgs = vec![
        OutboundMessage::new(echo("p")),
        OutboundMessage::new(echo("q")),
    ];
    let mut req = Request::new(OutboundStream::new(futures_util::stream::iter(msgs)))
        .into_streaming_request();
    req.set_compression(None);
    ch.client_streaming::<_, Echo, Echo>(PATH, req)
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    let gz = Some("gzip".to_string());
    let s = |v: &[(u8, &str)]| {
        v.iter()
            .map(|(f, t)| (*f, t.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen[0],
        (gz.clone(), s(&[(1, "a"), (0, "b"), (1, "c"), (0, "d")]))
    );
    assert_eq!(seen[1], (gz.clone(), s(&[(0, "e"), (1, "f")])));
    assert_eq!(seen[2], (gz, s(&[(1, "x"), (1, "y")])));
    assert_eq!(seen[3], (None, s(&[(0, "p"), (0, "q")])));
}

#[tokio::test]
async fn client_sees_the_compressed_flag_of_each_response() {
    // Responses under grpc-encoding gzip: first compressed, second not.
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, mut send| async move {
            let unary = req.uri().path().ends_with("Unary");
            let mut body = req.into_body();
            let _ = read_body(&mut body).await;
            let mut head = response_headers();
            head.headers_mut()
                .insert("grpc-encoding", "gzip".parse().unwrap());
            let mut s = send.send_response(head, false).unwrap();
            let one = frame(1, &gzip(&prost::Message::encode_to_vec(&echo("z1"))));
            let two = frame_msg(&echo("p2"));
            if unary {
                s.send_data(one, false).unwrap();
            } else {
                s.send_data(one, false).unwrap();
                s.send_data(two, false).unwrap();
            }
            s.send_trailers(trailers(0, "")).unwrap();
        },
    ))
    .await;
    let ch = channel(srv.addr).await;

    let r = ch
        .unary::<Echo, Echo>("/test.Echo/Unary", Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "z1");
    assert_eq!(r.message_compressed(), Some(true));

    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.last_message_compressed(), None);
    assert_eq!(s.message().await.unwrap().unwrap().text, "z1");
    assert_eq!(s.last_message_compressed(), Some(true));
    assert_eq!(s.message().await.unwrap().unwrap().text, "p2");
    assert_eq!(s.last_message_compressed(), Some(false));
    assert_eq!(s.message().await.unwrap(), None);

    // An uncompressed unary response on the same channel says false.
    let srv = raw_server(handler(
        |req: http::Request<h2::RecvStream>, send| async move {
            let mut body = req.into_body();
            let _ = read_body(&mut body).await;
            respond(send, vec![frame_msg(&echo("plain"))], 0, "").await;
        },
    ))
    .await;
    let ch = channel(srv.addr).await;
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(r.message_compressed(), Some(false));
    // A response built locally knows nothing.
    assert_eq!(Response::new(echo("x")).message_compressed(), None);
}

/// A hand-written service reporting the compressed flags the server saw, in the reply
/// text: unary "Unary" -> "1"/"0"; client-streaming "Stream" -> "1010...".
struct FlagService;

const METHODS: &[MethodDescriptor] = &[
    MethodDescriptor {
        name: "Unary",
        full_path: "/test.Flags/Unary",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Stream",
        full_path: "/test.Flags/Stream",
        client_streaming: true,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Bidi",
        full_path: "/test.Flags/Bidi",
        client_streaming: true,
        server_streaming: true,
    },
];

fn flag(c: Option<bool>) -> &'static str {
    match c {
        Some(true) => "1",
        Some(false) => "0",
        None => "?",
    }
}

impl Service for FlagService {
    fn name(&self) -> &'static str {
        "test.Flags"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        METHODS
    }
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
        match method {
            "Unary" => call.unary(|req: Request<Echo>| async move {
                Ok(Response::new(echo(flag(req.message_compressed()))))
            }),
            "Stream" => call.client_streaming(|req: Request<Streaming<Echo>>| async move {
                let mut s = req.into_inner();
                let mut out = String::new();
                while s.message().await?.is_some() {
                    out.push_str(flag(s.last_message_compressed()));
                }
                Ok(Response::new(echo(&out)))
            }),
            "Bidi" => call.bidi_streaming(|req: Request<Streaming<Echo>>| async move {
                // Waits for the client to go away and reports what it observed.
                let ctx = req.context().clone();
                let events = BIDI_EVENTS.get().cloned();
                let _stream = req.into_inner();
                tokio::spawn(async move {
                    let st = ctx.cancelled().await;
                    if let Some(events) = events {
                        let _ = events.lock().unwrap().send(st.code());
                    }
                });
                let out: BoxStream<Echo> = Box::pin(
                    futures_util::stream::iter(vec![Ok(echo("first"))])
                        .chain(futures_util::stream::pending()),
                );
                Ok(Response::new(out))
            }),
            _ => call.unimplemented(),
        }
    }
}

type Events = Arc<Mutex<mpsc::UnboundedSender<Code>>>;
static BIDI_EVENTS: std::sync::OnceLock<Events> = std::sync::OnceLock::new();

use futures_util::StreamExt;

async fn flag_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = grpc_runtime::server::Server::builder().add_service(FlagService);
    tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    });
    addr
}

#[tokio::test]
async fn server_sees_the_compressed_flag_of_each_request() {
    let addr = flag_server().await;
    let ch = channel(addr).await;
    for (enc, want) in [(Some(CompressionEncoding::Gzip), "1"), (None, "0")] {
        let mut req = Request::new(echo("x"));
        req.set_compression(enc);
        let r = ch
            .unary::<Echo, Echo>("/test.Flags/Unary", req)
            .await
            .unwrap();
        assert_eq!(r.get_ref().text, want, "{enc:?}");
        // The server answers in the request's encoding by default.
        assert_eq!(r.message_compressed(), Some(enc.is_some()));
        assert_eq!(r.remote_addr(), Some(addr));
    }
    let msgs = vec![
        OutboundMessage::new(echo("a")),
        OutboundMessage::new(echo("b")).compress(false),
        OutboundMessage::new(echo("c")).compress(false),
        OutboundMessage::new(echo("d")),
    ];
    let mut req = Request::new(OutboundStream::new(futures_util::stream::iter(msgs)));
    req.set_compression(Some(CompressionEncoding::Zstd));
    let r = generated_like_client_streaming(&ch, req).await.unwrap();
    assert_eq!(r.get_ref().text, "1001");
    // plain messages through the same generic signature: all compressed
    let mut req = Request::new(futures_util::stream::iter(vec![echo("a"), echo("b")]));
    req.set_compression(Some(CompressionEncoding::Gzip));
    assert_eq!(
        generated_like_client_streaming(&ch, req)
            .await
            .unwrap()
            .get_ref()
            .text,
        "11"
    );
    // and an empty stream still infers its item type from the signature
    assert_eq!(
        generated_like_client_streaming(&ch, futures_util::stream::empty())
            .await
            .unwrap()
            .get_ref()
            .text,
        ""
    );

    // The raw client: flag 1 under grpc-encoding gzip, then flag 0.
    let mut h2 = raw_h2(addr).await;
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/test.Flags/Stream"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "gzip")
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(head, false).unwrap();
    body.send_data(
        frame(1, &gzip(&prost::Message::encode_to_vec(&echo("a")))),
        false,
    )
    .unwrap();
    body.send_data(frame_msg(&echo("b")), true).unwrap();
    let resp = resp.await.unwrap();
    let mut rb = resp.into_body();
    let data = read_body(&mut rb).await.unwrap();
    assert_eq!(decode(&unframe(&data)[0].1).text, "10");
}

/// What a generated client-streaming method looks like (docs/api-contract.md).
async fn generated_like_client_streaming(
    ch: &Channel,
    request: impl grpc_runtime::IntoStreamingRequest<Message = Echo>,
) -> Result<Response<Echo>, Status> {
    ch.client_streaming(
        "/test.Flags/Stream",
        grpc_runtime::IntoStreamingRequest::into_streaming_request(request),
    )
    .await
}

async fn raw_h2(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let io = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (c, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    c.ready().await.unwrap()
}

/// Records the final status every call reports to interceptors.
#[derive(Clone, Default)]
struct Finished(Arc<Mutex<Vec<Code>>>);

impl Interceptor for Finished {
    fn start<'a>(&'a self, _call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn finish(&self, _path: &'static str, status: &Status) {
        self.0.lock().unwrap().push(status.code());
    }
}

/// A raw server that answers headers + one message (when `send_headers`) and reports the
/// RST_STREAM reason it receives.
async fn stalling_server(send_headers: bool) -> (RawServer, mpsc::UnboundedReceiver<h2::Reason>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(tx));
    let srv = raw_server(handler(
        move |req: http::Request<h2::RecvStream>, mut send| {
            let tx = tx.clone();
            async move {
                let _body = req.into_body();
                let mut stream = if send_headers {
                    let mut s = send.send_response(response_headers(), false).unwrap();
                    s.send_data(frame_msg(&echo("first")), false).unwrap();
                    Some(s)
                } else {
                    None
                };
                let reason = match stream.as_mut() {
                    Some(s) => poll_fn(|cx| s.poll_reset(cx)).await,
                    None => poll_fn(|cx| send.poll_reset(cx)).await,
                };
                if let Ok(r) = reason {
                    let _ = tx.lock().unwrap().send(r);
                }
            }
        },
    ))
    .await;
    (srv, rx)
}

#[tokio::test]
async fn streaming_cancel_resets_and_reports_cancelled() {
    for bidi in [false, true] {
        let (srv, mut resets) = stalling_server(true).await;
        let finished = Finished::default();
        let ch = Channel::builder(format!("http://{}", srv.addr))
            .interceptor(finished.clone())
            .connect()
            .await
            .unwrap();
        let (_tx, rx) = mpsc::unbounded_channel::<Echo>();
        let reqs =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let resp = if bidi {
            ch.bidi_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
                .await
                .unwrap()
        } else {
            ch.server_streaming::<Echo, Echo>(PATH, Request::new(echo("x")))
                .await
                .unwrap()
        };
        assert_eq!(resp.remote_addr(), Some(srv.addr));
        let mut s = resp.into_inner();
        assert_eq!(s.message().await.unwrap().unwrap().text, "first");
        assert!(s.status().is_none());
        s.cancel();
        assert_eq!(s.status().unwrap().code(), Code::Cancelled);
        assert_eq!(s.message().await.unwrap_err().code(), Code::Cancelled);
        assert_eq!(s.message().await.unwrap(), None);
        assert_eq!(s.status().unwrap().code(), Code::Cancelled);
        // the stream is reset with CANCEL while `s` is still alive
        let reason = tokio::time::timeout(Duration::from_secs(2), resets.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reason, h2::Reason::CANCEL, "bidi={bidi}");
        assert_eq!(*finished.0.lock().unwrap(), vec![Code::Cancelled]);
        // cancelling again changes nothing
        s.cancel();
        assert_eq!(s.message().await.unwrap(), None);
        assert_eq!(finished.0.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn cancel_handle_cancels_every_call_kind() {
    // before the response: unary and client-streaming futures end with CANCELLED
    for client_streaming in [false, true] {
        let (srv, mut resets) = stalling_server(false).await;
        let ch = channel(srv.addr).await;
        let (tx, rx) = mpsc::unbounded_channel::<Echo>();
        tx.send(echo("one")).unwrap();
        let reqs =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let (call, cancel) = if client_streaming {
            let mut req = Request::new(reqs);
            let cancel = req.cancel_handle();
            let ch = ch.clone();
            (
                tokio::spawn(async move {
                    ch.client_streaming::<_, Echo, Echo>(PATH, req)
                        .await
                        .map(|r| r.into_inner())
                }),
                cancel,
            )
        } else {
            let mut req = Request::new(echo("x"));
            let cancel = req.cancel_handle();
            assert!(!cancel.is_cancelled());
            let ch = ch.clone();
            (
                tokio::spawn(async move {
                    ch.unary::<Echo, Echo>(PATH, req)
                        .await
                        .map(|r| r.into_inner())
                }),
                cancel,
            )
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        cancel.cancel();
        let err = tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), Code::Cancelled, "{err:?}");
        assert!(t0.elapsed() < Duration::from_secs(1));
        let reason = tokio::time::timeout(Duration::from_secs(2), resets.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reason, h2::Reason::CANCEL);
        drop(tx);
    }

    // after the response headers: the Streaming ends with CANCELLED
    let (srv, mut resets) = stalling_server(true).await;
    let ch = channel(srv.addr).await;
    let mut req = Request::new(echo("x"));
    let cancel = req.cancel_handle();
    assert!(req.cancel_handle().is_cancelled() == cancel.is_cancelled());
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "first");
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c2.cancel();
    });
    assert_eq!(s.message().await.unwrap_err().code(), Code::Cancelled);
    assert_eq!(s.status().unwrap().code(), Code::Cancelled);
    let reason = tokio::time::timeout(Duration::from_secs(2), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, h2::Reason::CANCEL);
}

#[tokio::test]
async fn server_handler_observes_a_client_cancel() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ = BIDI_EVENTS.set(Arc::new(Mutex::new(tx)));
    let addr = flag_server().await;
    let ch = channel(addr).await;
    let (_tx, reqs) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(
            reqs,
            |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
        );
    let resp = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Flags/Bidi", Request::new(reqs))
        .await
        .unwrap();
    assert_eq!(resp.remote_addr(), Some(addr));
    let mut s = resp.into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().text, "first");
    s.cancel();
    let code = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, Code::Cancelled);
    assert_eq!(s.status().unwrap().code(), Code::Cancelled);
}
