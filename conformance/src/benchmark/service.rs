//! [`BenchService`]: grpc-rust's `grpc.testing.BenchmarkService`, the server side of every
//! benchmark (the worker's RunServer and `benchmark_worker server`). Each call answers with a
//! payload of the requested `response_size`, like grpc's C++ and Go benchmark servers.

use std::future::Future;
use std::io;

use futures_util::StreamExt;
use grpc_runtime::server::Server;
use grpc_runtime::{BoxStream, Request, Response, Status, Streaming};
use tokio::net::TcpListener;

use crate::pb::benchmark_service_server::{BenchmarkService, BenchmarkServiceServer};
use crate::pb::{MemorySize, Payload, SimpleRequest, SimpleResponse};

/// Largest request or response message the benchmark server handles (64 MiB).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A `SimpleResponse` with `size` zero bytes of payload (none for 0).
pub fn response(size: i32) -> Result<SimpleResponse, Status> {
    if size < 0 || size as usize > MAX_MESSAGE {
        return Err(Status::invalid_argument(format!(
            "response_size {size} outside 0..={MAX_MESSAGE}"
        )));
    }
    Ok(SimpleResponse {
        payload: (size > 0).then(|| Payload {
            r#type: 0,
            body: vec![0u8; size as usize],
        }),
        ..Default::default()
    })
}

/// The benchmark service; stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchService;

fn repeat(resp: SimpleResponse) -> BoxStream<SimpleResponse> {
    Box::pin(futures_util::stream::repeat_with(move || Ok(resp.clone())))
}

impl BenchmarkService for BenchService {
    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        Ok(Response::new(response(request.get_ref().response_size)?))
    }

    async fn streaming_call(
        &self,
        request: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<BoxStream<SimpleResponse>>, Status> {
        let s = request
            .into_inner()
            .map(|r| r.and_then(|r| response(r.response_size)));
        Ok(Response::new(Box::pin(s)))
    }

    async fn streaming_from_client(
        &self,
        request: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let mut s = request.into_inner();
        let mut last = SimpleRequest::default();
        while let Some(r) = s.message().await? {
            last = r;
        }
        Ok(Response::new(response(last.response_size)?))
    }

    async fn streaming_from_server(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<BoxStream<SimpleResponse>>, Status> {
        Ok(Response::new(repeat(response(
            request.get_ref().response_size,
        )?)))
    }

    async fn streaming_both_ways(
        &self,
        request: Request<Streaming<SimpleRequest>>,
    ) -> Result<Response<BoxStream<SimpleResponse>>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.unwrap_or_default();
        let resp = response(first.response_size)?;
        // Keep reading (and dropping) what the client sends until it stops.
        tokio::spawn(async move { while let Ok(Some(_)) = incoming.message().await {} });
        Ok(Response::new(repeat(resp)))
    }

    async fn get_before_snapshot(
        &self,
        _request: Request<SimpleRequest>,
    ) -> Result<Response<MemorySize>, Status> {
        Ok(Response::new(MemorySize {
            rss: super::stats::rss_bytes().unwrap_or(0) as i64,
        }))
    }
}

/// Serves [`BenchService`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with(listener, shutdown, |b| b).await
}

/// [`serve`] with the server builder adjusted by `configure` first.
pub async fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    configure: impl FnOnce(grpc_runtime::server::ServerBuilder) -> grpc_runtime::server::ServerBuilder,
) -> io::Result<()> {
    configure(Server::builder())
        .max_receive_message_size(MAX_MESSAGE)
        .grace_period(std::time::Duration::from_secs(1))
        .add_service(BenchmarkServiceServer::new(BenchService))
        .serve_with_incoming_shutdown(listener, shutdown)
        .await
}
