//! grpc.health.v1.Health over real sockets: the generated client on our
//! Channel, plus a raw h2 peer for the wire shape of Watch.

mod common;

use std::time::Duration;

use common::*;
use grpc_runtime::server::Server;
use grpc_runtime::services::health::health_client::HealthClient;
use grpc_runtime::services::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthReporter, ServingStatus,
    MAX_LIST_SERVICES,
};
use grpc_runtime::{Channel, Code, Streaming};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct HealthServer {
    addr: std::net::SocketAddr,
    reporter: HealthReporter,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_health(grace: Duration) -> HealthServer {
    let reporter = HealthReporter::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let hook = reporter.clone();
    let builder = Server::builder()
        .add_service(reporter.service())
        .grace_period(grace)
        .on_shutdown(move || hook.shutdown());
    let handle = tokio::spawn(builder.serve_with_incoming_shutdown(listener, async {
        let _ = rx.await;
    }));
    HealthServer {
        addr,
        reporter,
        stop: Some(tx),
        handle,
    }
}

async fn client(addr: std::net::SocketAddr) -> HealthClient {
    HealthClient::new(
        Channel::builder(format!("http://{addr}"))
            .connect()
            .await
            .unwrap(),
    )
}

fn req(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

async fn next_status(s: &mut Streaming<HealthCheckResponse>) -> ServingStatus {
    let m = tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("update in time");
    let m = m.expect("no error").expect("stream open");
    ServingStatus::try_from(m.status).unwrap()
}

async fn assert_quiet(s: &mut Streaming<HealthCheckResponse>) {
    let r = tokio::time::timeout(Duration::from_millis(200), s.message()).await;
    assert!(
        r.is_err(),
        "expected no message and an open stream, got {r:?}"
    );
}

#[tokio::test]
async fn check_known_unknown_and_changes() {
    let srv = start_health(Duration::from_secs(1)).await;
    let c = client(srv.addr).await;
    let r = c.check(req("")).await.unwrap();
    assert_eq!(r.get_ref().status, ServingStatus::Serving as i32);

    let err = c.check(req("my.Service")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("my.Service"), "{}", err.message());

    srv.reporter.set_not_serving("my.Service");
    assert_eq!(
        c.check(req("my.Service")).await.unwrap().get_ref().status,
        ServingStatus::NotServing as i32
    );
    srv.reporter.set_serving("my.Service");
    assert_eq!(
        c.check(req("my.Service")).await.unwrap().get_ref().status,
        ServingStatus::Serving as i32
    );
    srv.reporter.clear_service_status("my.Service");
    assert_eq!(
        c.check(req("my.Service")).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn watch_streams_current_then_every_change() {
    let srv = start_health(Duration::from_secs(1)).await;
    srv.reporter.set_serving("a.B");
    let c = client(srv.addr).await;
    let mut s = c.watch(req("a.B")).await.unwrap().into_inner();
    assert_eq!(next_status(&mut s).await, ServingStatus::Serving);
    assert_quiet(&mut s).await;
    srv.reporter.set_not_serving("a.B");
    assert_eq!(next_status(&mut s).await, ServingStatus::NotServing);
    // Setting the same status again is not a change.
    srv.reporter.set_not_serving("a.B");
    assert_quiet(&mut s).await;
    srv.reporter.set_serving("a.B");
    assert_eq!(next_status(&mut s).await, ServingStatus::Serving);
    // Another service's changes are not seen here.
    srv.reporter.set_not_serving("other");
    assert_quiet(&mut s).await;
    // Cleared: the watcher learns SERVICE_UNKNOWN and the stream stays open.
    srv.reporter.clear_service_status("a.B");
    assert_eq!(next_status(&mut s).await, ServingStatus::ServiceUnknown);
    assert_quiet(&mut s).await;
}

#[tokio::test]
async fn watch_unknown_service_streams_service_unknown_and_stays_open() {
    let srv = start_health(Duration::from_secs(1)).await;
    let c = client(srv.addr).await;
    let mut s = c.watch(req("not.Yet")).await.unwrap().into_inner();
    assert_eq!(next_status(&mut s).await, ServingStatus::ServiceUnknown);
    assert_quiet(&mut s).await;
    srv.reporter.set_serving("not.Yet");
    assert_eq!(next_status(&mut s).await, ServingStatus::Serving);
    // Two watchers of the same unknown name both get updates.
    let mut w1 = c.watch(req("later")).await.unwrap().into_inner();
    let mut w2 = c.watch(req("later")).await.unwrap().into_inner();
    assert_eq!(next_status(&mut w1).await, ServingStatus::ServiceUnknown);
    assert_eq!(next_status(&mut w2).await, ServingStatus::ServiceUnknown);
    drop(w1);
    srv.reporter.set_not_serving("later");
    assert_eq!(next_status(&mut w2).await, ServingStatus::NotServing);
}

#[tokio::test]
async fn watch_unknown_wire_shape() {
    let srv = start_health(Duration::from_secs(1)).await;
    let c = connect(srv.addr).await;
    let mut ready = c.clone().ready().await.unwrap();
    let head = grpc_head(srv.addr, "/grpc.health.v1.Health/Watch", &[]);
    let (resp, mut send) = ready.send_request(head, false).unwrap();
    send.send_data(frame(&req("nope")), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("grpc-status").is_none(),
        "not Trailers-Only: {:?}",
        resp.headers()
    );
    let mut body = resp.into_body();
    assert!(!body.is_end_stream());
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // flag 0, length 2, field 1 varint 3 (SERVICE_UNKNOWN)
    assert_eq!(&chunk[..], &[0, 0, 0, 0, 2, 0x08, 0x03]);
    let _ = body.flow_control().release_capacity(chunk.len());
    // Still open: no more data, no trailers.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), body.data())
            .await
            .is_err()
    );
    srv.reporter.set_serving("nope");
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&chunk[..], &[0, 0, 0, 0, 2, 0x08, 0x01]);
    drop(c);
}

#[tokio::test]
async fn list_all_statuses_and_limit() {
    let srv = start_health(Duration::from_secs(1)).await;
    srv.reporter.set_serving("a");
    srv.reporter.set_not_serving("b");
    let c = client(srv.addr).await;
    // A watched-only name is not listed.
    let mut w = c.watch(req("watched.only")).await.unwrap().into_inner();
    assert_eq!(next_status(&mut w).await, ServingStatus::ServiceUnknown);
    let r = c.list(HealthListRequest {}).await.unwrap().into_inner();
    let mut got: Vec<(String, i32)> = r.statuses.into_iter().map(|(k, v)| (k, v.status)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("".to_string(), ServingStatus::Serving as i32),
            ("a".to_string(), ServingStatus::Serving as i32),
            ("b".to_string(), ServingStatus::NotServing as i32),
        ]
    );
    for i in 0..MAX_LIST_SERVICES {
        srv.reporter.set_serving(&format!("svc{i}"));
    }
    let err = c.list(HealthListRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn server_shutdown_sets_not_serving_before_goaway() {
    let mut srv = start_health(Duration::from_millis(500)).await;
    srv.reporter.set_serving("svc");
    let c = client(srv.addr).await;
    let mut overall = c.watch(req("")).await.unwrap().into_inner();
    let mut svc = c.watch(req("svc")).await.unwrap().into_inner();
    assert_eq!(next_status(&mut overall).await, ServingStatus::Serving);
    assert_eq!(next_status(&mut svc).await, ServingStatus::Serving);
    let _ = srv.stop.take().unwrap().send(());
    // The open streams see NOT_SERVING during the grace period.
    assert_eq!(next_status(&mut overall).await, ServingStatus::NotServing);
    assert_eq!(next_status(&mut svc).await, ServingStatus::NotServing);
    // Updates after shutdown are ignored.
    srv.reporter.set_serving("svc");
    assert_eq!(
        srv.reporter.serving_status("svc"),
        Some(ServingStatus::NotServing)
    );
    // After the grace period the watch calls are cancelled and the server ends.
    let end = tokio::time::timeout(Duration::from_secs(5), svc.message())
        .await
        .unwrap();
    assert!(
        end.is_err(),
        "watch ends with an error status at forced shutdown: {end:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), &mut srv.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn health_next_to_other_services() {
    let reporter = HealthReporter::new();
    let svc = reporter.service();
    let srv = start(move |b| b.add_service(svc)).await;
    reporter.set_serving(echo_server::SERVICE_NAME);
    let c = client(srv.addr).await;
    let r = c.check(req(echo_server::SERVICE_NAME)).await.unwrap();
    assert_eq!(r.get_ref().status, ServingStatus::Serving as i32);
    // the echo service still answers
    let mut h2 = connect(srv.addr).await;
    let r = call(
        &mut h2,
        grpc_head(srv.addr, "/test.Echo/Unary", &[]),
        &[frame(&EchoRequest {
            message: "hi".into(),
            count: 0,
            sleep_ms: 0,
        })],
    )
    .await;
    assert_eq!(r.grpc_status().as_deref(), Some("0"));
}
