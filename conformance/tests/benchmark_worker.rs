//! The qps worker protocol over real sockets: a `WorkerService` runs a benchmark server and a
//! benchmark client against it (as `qps_json_driver` would ask), marks return stats in the
//! driver's shapes, and closing the streams stops both. No timing is asserted, only that calls
//! happened and were counted.

use std::sync::Arc;
use std::time::Duration;

use conformance::benchmark::histogram::Histogram;
use conformance::benchmark::worker::Worker;
use conformance::pb::worker_service_client::WorkerServiceClient;
use conformance::pb::worker_service_server::WorkerServiceServer;
use conformance::pb::{
    client_args, load_params, payload_config, server_args, ClientArgs, ClientConfig,
    ClosedLoopParams, CoreRequest, HistogramParams, LoadParams, Mark, PayloadConfig, RpcType,
    ServerArgs, ServerConfig, SimpleProtoParams,
};
use grpc_runtime::{Channel, Server};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn stream_of<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

async fn start_worker() -> (WorkerServiceClient, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let w = Worker {
        server_port: 0,
        quit: Arc::new(tokio::sync::Notify::new()),
    };
    tokio::spawn(
        Server::builder()
            .add_service(WorkerServiceServer::new(w))
            .serve_with_incoming_shutdown(listener, async move {
                let _ = rx.await;
            }),
    );
    let ch = Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap();
    (WorkerServiceClient::new(ch), tx)
}

fn client_setup(port: i32, rpc_type: RpcType) -> ClientArgs {
    ClientArgs {
        argtype: Some(client_args::Argtype::Setup(ClientConfig {
            server_targets: vec![format!("127.0.0.1:{port}")],
            outstanding_rpcs_per_channel: 2,
            client_channels: 2,
            rpc_type: rpc_type as i32,
            load_params: Some(LoadParams {
                load: Some(load_params::Load::ClosedLoop(ClosedLoopParams {})),
            }),
            payload_config: Some(PayloadConfig {
                payload: Some(payload_config::Payload::SimpleParams(SimpleProtoParams {
                    req_size: 10,
                    resp_size: 20,
                })),
            }),
            histogram_params: Some(HistogramParams {
                resolution: 0.01,
                max_possible: 60e9,
            }),
            ..Default::default()
        })),
    }
}

async fn run_benchmark(rpc_type: RpcType) {
    let (server_worker, _s) = start_worker().await;
    let (client_worker, _c) = start_worker().await;

    let (stx, srx) = mpsc::channel(4);
    stx.send(ServerArgs {
        argtype: Some(server_args::Argtype::Setup(ServerConfig::default())),
    })
    .await
    .unwrap();
    let mut server_status = server_worker
        .run_server(stream_of(srx))
        .await
        .unwrap()
        .into_inner();
    let first = server_status.message().await.unwrap().unwrap();
    assert!(first.port > 0, "server port {}", first.port);
    assert!(first.cores > 0);

    let (ctx, crx) = mpsc::channel(4);
    ctx.send(client_setup(first.port, rpc_type)).await.unwrap();
    let mut client_status = client_worker
        .run_client(stream_of(crx))
        .await
        .unwrap()
        .into_inner();
    client_status.message().await.unwrap().unwrap();

    // Let calls happen, then mark with reset until some are counted (bounded).
    let mut counted = 0.0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ctx.send(ClientArgs {
            argtype: Some(client_args::Argtype::Mark(Mark { reset: true })),
        })
        .await
        .unwrap();
        let st = client_status
            .message()
            .await
            .unwrap()
            .unwrap()
            .stats
            .unwrap();
        let lat = st.latencies.unwrap();
        assert_eq!(
            lat.bucket.len(),
            Histogram::new(0.01, 60e9).to_proto().bucket.len()
        );
        assert_eq!(lat.bucket.iter().map(|&b| b as f64).sum::<f64>(), lat.count);
        let ok: i64 = st
            .request_results
            .iter()
            .filter(|r| r.status_code == 0)
            .map(|r| r.count)
            .sum();
        let failed: i64 = st
            .request_results
            .iter()
            .filter(|r| r.status_code != 0)
            .map(|r| r.count)
            .sum();
        assert_eq!(failed, 0, "failed calls: {:?}", st.request_results);
        assert!(st.time_elapsed > 0.0);
        if lat.count > 0.0 {
            assert!(ok as f64 >= lat.count);
            counted = lat.count;
            break;
        }
    }
    assert!(counted > 0.0, "no {rpc_type:?} calls were counted");

    stx.send(ServerArgs {
        argtype: Some(server_args::Argtype::Mark(Mark { reset: false })),
    })
    .await
    .unwrap();
    let s = server_status
        .message()
        .await
        .unwrap()
        .unwrap()
        .stats
        .unwrap();
    assert!(s.time_elapsed > 0.0);

    // Closing the request streams ends the client, then the server.
    drop(ctx);
    assert!(client_status.message().await.unwrap().is_none());
    drop(stx);
    assert!(server_status.message().await.unwrap().is_none());

    let cores = client_worker
        .core_count(CoreRequest {})
        .await
        .unwrap()
        .into_inner()
        .cores;
    assert!(cores > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_benchmark_through_the_worker_protocol() {
    tokio::time::timeout(Duration::from_secs(60), run_benchmark(RpcType::Unary))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_ping_pong_through_the_worker_protocol() {
    tokio::time::timeout(Duration::from_secs(60), run_benchmark(RpcType::Streaming))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_through_the_worker_protocol() {
    tokio::time::timeout(
        Duration::from_secs(60),
        run_benchmark(RpcType::StreamingFromServer),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_generic_payload_is_unimplemented() {
    let (worker, _w) = start_worker().await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(ServerArgs {
        argtype: Some(server_args::Argtype::Setup(ServerConfig {
            payload_config: Some(PayloadConfig {
                payload: Some(payload_config::Payload::BytebufParams(Default::default())),
            }),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let err = match worker.run_server(stream_of(rx)).await {
        Ok(r) => r.into_inner().message().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.code(), grpc_runtime::Code::Unimplemented);
}
