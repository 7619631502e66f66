//! When response headers go out (issue 15): our server sends them with the first message
//! of a streaming response, or as one Trailers-Only frame when the stream ends or fails
//! before any message (as grpc-go, grpc C++, Node and tonic servers do), unless the
//! handler sends them early; our client's bidi call returns before the response headers,
//! so a caller that sends only after the call returned cannot deadlock against a server
//! that waits for a request first. Raw h2 peers check the wire; real sockets throughout.

mod common;

use std::time::Duration;

use common::raw_h2::{echo, Echo};
use futures_util::StreamExt;
use grpc_runtime::server::{Server, ServerCall, Service};
use grpc_runtime::{
    BoxFuture, BoxStream, Channel, Code, MetadataMap, MethodDescriptor, Request, Response, Status,
    Streaming,
};
use tokio::sync::mpsc;

const METHODS: &[MethodDescriptor] = &[
    MethodDescriptor {
        name: "Stream",
        full_path: "/test.Lazy/Stream",
        client_streaming: false,
        server_streaming: true,
    },
    MethodDescriptor {
        name: "Bidi",
        full_path: "/test.Lazy/Bidi",
        client_streaming: true,
        server_streaming: true,
    },
];

/// `Stream`: server-streaming; the request text says what the response stream does.
/// `Bidi`: reads one request before it answers anything, then echoes each request.
struct Lazy;

fn fails_at_once() -> BoxStream<Echo> {
    Box::pin(futures_util::stream::iter(vec![Err(
        Status::invalid_argument("no messages for you"),
    )]))
}

impl Service for Lazy {
    fn name(&self) -> &'static str {
        "test.Lazy"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        METHODS
    }
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
        match method {
            "Stream" => call.server_streaming(|req: Request<Echo>| async move {
                let out: BoxStream<Echo> = match req.get_ref().text.as_str() {
                    "fail" => fails_at_once(),
                    "empty" => Box::pin(futures_util::stream::empty()),
                    "empty-with-metadata" => {
                        let mut md = MetadataMap::new();
                        md.insert("x-lazy", "yes").unwrap();
                        return Ok(Response::from_parts(
                            md,
                            Box::pin(futures_util::stream::empty()) as BoxStream<Echo>,
                            None,
                        ));
                    }
                    // Fed from another task through response_channel.
                    "channel" => {
                        let (tx, stream) = grpc_runtime::response_channel(1);
                        tokio::spawn(async move {
                            for i in 0..3 {
                                if tx.send(echo(&format!("m{i}"))).await.is_err() {
                                    return;
                                }
                            }
                            let _ = tx.error(Status::aborted("done sending")).await;
                        });
                        stream
                    }
                    "early" => {
                        let mut md = MetadataMap::new();
                        md.insert("x-early", "yes").unwrap();
                        req.context().send_headers(md)?;
                        Box::pin(futures_util::stream::pending())
                    }
                    // One message after a pause: the headers wait for it.
                    _ => Box::pin(futures_util::stream::once(async {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        Ok(echo("late"))
                    })),
                };
                Ok(Response::new(out))
            }),
            "Bidi" => call.bidi_streaming(|req: Request<Streaming<Echo>>| async move {
                let mut requests = req.into_inner();
                // Nothing is sent before the first request arrives.
                let first = requests
                    .message()
                    .await?
                    .ok_or_else(|| Status::invalid_argument("no request"))?;
                let rest = requests.map(|r| r.map(|m| echo(&format!("re:{}", m.text))));
                let out: BoxStream<Echo> = Box::pin(
                    futures_util::stream::iter(vec![Ok(echo(&format!("re:{}", first.text)))])
                        .chain(rest),
                );
                let mut md = MetadataMap::new();
                md.insert("x-bidi", "headers").unwrap();
                Ok(Response::from_parts(md, out, None))
            }),
            _ => call.unimplemented(),
        }
    }
}

async fn server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().add_service(Lazy);
    tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    });
    addr
}

async fn raw(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Starts a server-streaming call with `text`; returns the pending response head.
async fn start_stream(
    h2c: &h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    text: &str,
) -> h2::client::ResponseFuture {
    let mut h2c = h2c.clone().ready().await.unwrap();
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/test.Lazy/Stream"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut send) = h2c.send_request(head, false).unwrap();
    send.send_data(common::raw_h2::frame_msg(&echo(text)), true)
        .unwrap();
    resp
}

#[tokio::test]
async fn a_stream_failing_before_its_first_message_is_one_trailers_only_frame() {
    let addr = server().await;
    let h2c = raw(addr).await;
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        start_stream(&h2c, addr, "fail").await,
    )
    .await
    .unwrap()
    .unwrap();
    // Before: HEADERS went out when the handler returned its stream, then trailers.
    assert!(
        resp.body().is_end_stream(),
        "expected Trailers-Only, got headers then a body: {:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["grpc-status"], "3");
    assert_eq!(resp.headers()["grpc-message"], "no messages for you");
    assert_eq!(resp.headers()["content-type"], "application/grpc");

    let resp = start_stream(&h2c, addr, "empty").await.await.unwrap();
    assert!(resp.body().is_end_stream());
    assert_eq!(resp.headers()["grpc-status"], "0");

    // Metadata the handler set but no message: headers of their own, then trailers
    // (grpc-go does the same).
    let resp = start_stream(&h2c, addr, "empty-with-metadata")
        .await
        .await
        .unwrap();
    assert!(!resp.body().is_end_stream());
    assert_eq!(resp.headers()["x-lazy"], "yes");
    let mut body = resp.into_body();
    assert!(body.data().await.is_none());
    assert_eq!(body.trailers().await.unwrap().unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn headers_go_out_with_the_first_message_unless_sent_early() {
    let addr = server().await;
    let h2c = raw(addr).await;
    let mut resp = start_stream(&h2c, addr, "late").await;
    // The handler returned its stream at once; its first message comes 400 ms later.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut resp).await;
    assert!(
        early.is_err(),
        "response headers arrived before the first message"
    );
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    let mut body = resp.into_body();
    // The first DATA frame is right behind the headers.
    let data = tokio::time::timeout(Duration::from_millis(100), body.data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        common::raw_h2::unframe(&data)[0].1,
        <Echo as prost::Message>::encode_to_vec(&echo("late"))
    );

    // `ServerContext::send_headers` still sends them at once.
    let resp = tokio::time::timeout(
        Duration::from_secs(2),
        start_stream(&h2c, addr, "early").await,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.headers()["x-early"], "yes");
}

#[tokio::test]
async fn bidi_call_returns_before_headers_so_sending_afterwards_cannot_deadlock() {
    let addr = server().await;
    let ch = Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    // The server sends nothing before the first request; the caller sends only after the
    // call returned. Before, the call waited for the response headers: a deadlock.
    let resp = tokio::time::timeout(
        Duration::from_secs(2),
        ch.bidi_streaming::<_, Echo, Echo>("/test.Lazy/Bidi", Request::new(reqs)),
    )
    .await
    .expect("bidi call waited for response headers the server sends only after a request")
    .unwrap();
    assert!(resp.metadata().is_empty());
    assert_eq!(resp.remote_addr(), Some(addr));
    let mut replies = resp.into_inner();
    tx.send(echo("one")).unwrap();
    let headers = tokio::time::timeout(Duration::from_secs(5), replies.headers())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(headers.get("x-bidi"), Some("headers"));
    assert_eq!(replies.message().await.unwrap().unwrap().text, "re:one");
    tx.send(echo("two")).unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "re:two");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    assert_eq!(replies.status().unwrap().code(), Code::Ok);

    // A call the server fails before any response: `headers()` and the stream say so.
    let reqs = futures_util::stream::empty::<Echo>();
    let mut replies = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Lazy/Bidi", Request::new(reqs))
        .await
        .unwrap()
        .into_inner();
    let err = replies.headers().await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "no request")
    );
    assert_eq!(
        replies.message().await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert!(replies.message().await.unwrap().is_none());

    // A server-streaming call's headers are there at once (it returned after them).
    let mut s = ch
        .server_streaming::<Echo, Echo>(
            "/test.Lazy/Stream",
            Request::new(echo("empty-with-metadata")),
        )
        .await
        .unwrap();
    assert_eq!(s.metadata().get("x-lazy"), Some("yes"));
    assert_eq!(
        s.get_mut().headers().await.unwrap().get("x-lazy"),
        Some("yes")
    );
}

#[tokio::test]
async fn bidi_headers_wait_is_bounded_by_the_deadline_and_cancellation() {
    let addr = server().await;
    let ch = Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap();
    let (_tx, rx) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut req = Request::new(reqs);
    req.set_timeout(Duration::from_millis(200));
    let mut replies = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Lazy/Bidi", req)
        .await
        .unwrap()
        .into_inner();
    let err = tokio::time::timeout(Duration::from_secs(5), replies.headers())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(
        replies.message().await.unwrap_err().code(),
        Code::DeadlineExceeded
    );

    let (_tx, rx) = mpsc::unbounded_channel::<Echo>();
    let reqs =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut replies = ch
        .bidi_streaming::<_, Echo, Echo>("/test.Lazy/Bidi", Request::new(reqs))
        .await
        .unwrap()
        .into_inner();
    replies.cancel();
    assert_eq!(replies.message().await.unwrap_err().code(), Code::Cancelled);
    assert_eq!(replies.status().unwrap().code(), Code::Cancelled);
}

#[tokio::test]
async fn a_response_channel_feeds_a_stream_from_another_task() {
    let addr = server().await;
    let ch = Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap();
    let mut s = ch
        .server_streaming::<Echo, Echo>("/test.Lazy/Stream", Request::new(echo("channel")))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(s.message().await.unwrap().unwrap().text, format!("m{i}"));
    }
    let err = s.message().await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Aborted, "done sending"));
}
