//! The client `Channel` as a tower `Service` (feature `tower`) against our own server on
//! 127.0.0.1 over real HTTP/2: raw `http::Request`s through the channel (unary,
//! server-streaming, trailers, errors).

mod common;

use std::future::poll_fn;
use std::net::SocketAddr;

use bytes::Bytes;
use common::{decode, frame, start, EchoReply, EchoRequest};
use grpc_runtime::{Channel, Code};
use http_body_util::{BodyExt, Full};
use tower::Service;

fn echo(message: &str, count: i32, sleep_ms: i64) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count,
        sleep_ms,
    }
}

fn raw_request(path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-echo", "raw")
        .body(Full::new(body))
        .unwrap()
}

/// Splits a gRPC response body into its messages.
fn messages(mut data: Bytes) -> Vec<EchoReply> {
    let mut out = Vec::new();
    while data.len() >= 5 {
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let _ = data.split_to(5);
        out.push(decode(&data.split_to(len)));
    }
    assert!(data.is_empty(), "trailing partial message");
    out
}

async fn channel_to(addr: SocketAddr) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn raw_unary_request_through_the_channel_service() {
    let srv = start(|b| b).await;
    let mut channel = channel_to(srv.addr).await;
    poll_fn(|cx| Service::<http::Request<Full<Bytes>>>::poll_ready(&mut channel, cx))
        .await
        .unwrap();
    let resp = channel
        .call(raw_request("/test.Echo/Unary", frame(&echo("hello", 0, 0))))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.headers()["x-echo-header"], "raw");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers seen");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailer"], "t1");
    let replies = messages(collected.to_bytes());
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].message, "hello");
}

#[tokio::test]
async fn raw_server_streaming_request_through_the_channel_service() {
    let srv = start(|b| b).await;
    let mut channel = channel_to(srv.addr).await;
    let resp = channel
        .call(raw_request(
            "/test.Echo/ServerStream",
            frame(&echo("m", 3, 0)),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers seen");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(messages(collected.to_bytes()).len(), 3);
}

#[tokio::test]
async fn raw_request_errors_are_statuses() {
    let srv = start(|b| b).await;
    let mut channel = channel_to(srv.addr).await;
    // Trailers-Only: the status is in the head, the body ends at once.
    let resp = channel
        .call(raw_request("/test.Echo/Nope", frame(&echo("x", 0, 0))))
        .await
        .unwrap();
    assert_eq!(resp.headers()["grpc-status"], "12");
    assert!(resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .is_none());
    // No server: wait-for-ready until the request's grpc-timeout, DEADLINE_EXCEEDED.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let mut lazy = Channel::builder(format!("http://{addr}"))
        .connect_lazy()
        .unwrap();
    let mut req = raw_request("/test.Echo/Unary", frame(&echo("x", 0, 0)));
    req.headers_mut()
        .insert("grpc-timeout", "200m".parse().unwrap());
    let err = lazy.call(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // A shut-down channel is not ready.
    lazy.shutdown();
    let err = poll_fn(|cx| Service::<http::Request<Full<Bytes>>>::poll_ready(&mut lazy, cx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}
