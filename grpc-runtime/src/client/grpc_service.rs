//! [`GrpcService`]: what a generated client sends its calls on.
//! [`Channel`](super::Channel) implements it with its own typed call path; with the
//! `tower` feature, so does any `tower_service::Service` of `http::Request`s (see
//! [`crate::client::tower`]).

use std::future::Future;

use futures_core::Stream;

#[cfg(not(feature = "tower"))]
use super::channel::Channel;
use crate::status::Status;
use crate::streaming::Streaming;
use crate::{Request, Response};

/// The four gRPC call kinds on some transport: what a generated client (`XClient<T>`)
/// needs from its `T`.
///
/// Implemented by [`Channel`](crate::Channel) (its typed call path: name resolution, load balancing,
/// retries, interceptors, service config) and, with the `tower` feature, by every
/// `tower_service::Service<http::Request<RequestBody>>` whose responses are
/// `http::Response<B>` with `B: http_body::Body<Data = Bytes>`; the calls are then framed
/// as gRPC over HTTP/2 requests and responses (see `client::tower`, feature `tower`).
///
/// Generated clients take any `T: GrpcService`; the default `T = Channel` keeps
/// `XClient::new(channel)` as it was:
///
/// ```
/// use grpc_runtime::client::GrpcService;
/// use grpc_runtime::services::health::{health_client::HealthClient, HealthCheckRequest};
///
/// async fn check<T: GrpcService>(client: &HealthClient<T>) -> Result<i32, grpc_runtime::Status> {
///     let reply = client.check(HealthCheckRequest::default()).await?;
///     Ok(reply.into_inner().status)
/// }
/// ```
pub trait GrpcService: Clone + Send + 'static {
    /// A unary call: one request, one response.
    fn unary<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static;

    /// A server-streaming call: one request, a stream of responses.
    fn server_streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static;

    /// A client-streaming call: a stream of requests, one response.
    fn client_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<S>,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static;

    /// A bidirectional-streaming call: requests are sent while responses are received.
    fn bidi_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<S>,
    ) -> impl Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static;
}

/// Without the `tower` feature `Channel` is a `GrpcService` directly (with it, through
/// the implementation for tower services, which takes the same path for a `Channel`).
#[cfg(not(feature = "tower"))]
impl GrpcService for Channel {
    fn unary<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        Channel::unary(self, path, request)
    }

    fn server_streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: Request<Req>,
    ) -> impl Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        Channel::server_streaming(self, path, request)
    }

    fn client_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<S>,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        Channel::client_streaming(self, path, request)
    }

    fn bidi_streaming<S, Req, Resp>(
        &self,
        path: &'static str,
        request: Request<S>,
    ) -> impl Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        Channel::bidi_streaming(self, path, request)
    }
}
