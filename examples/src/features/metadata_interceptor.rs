//! Metadata in interceptors, in the shape of grpc-go's `features/metadata_interceptor`:
//! - a client interceptor adds `client-id` to every call's request metadata, so the calls
//!   themselves carry none;
//! - a server interceptor checks that key (INVALID_ARGUMENT "missing metadata" without
//!   it, and the handler never runs), appends `key1: value1` to the request metadata the
//!   handler then reads, sends a response header and adds a trailer. The handler adds a
//!   trailer of its own; the client gets both.
//!
//! Headers an interceptor sends ([`ServerContext::send_headers`]) go out at once, before
//! the handler's first message; the handler can still add trailers (they are merged) but
//! no headers of its own.
//!
//! [`ServerContext::send_headers`]: grpc_runtime::ServerContext::send_headers

use futures_util::stream;
use grpc_runtime::client::interceptor_fn;
use grpc_runtime::server::{self, CallHead, Next, Server};
use grpc_runtime::{
    BoxFuture, BoxStream, Channel, Code, MetadataMap, Request, Response, Status, Streaming,
};

use super::{echo, echo_each};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::support::metadata;
use crate::{ensure, BoxError, RunningServer, Transcript};

/// What the client interceptor puts in `client-id`.
pub const CLIENT_ID: &str = "metadata-interceptor-client";

/// The echo service: reports the `key1` values the server interceptor added.
#[derive(Debug, Clone)]
pub struct Key1Echo {
    out: Transcript,
}

impl Key1Echo {
    fn report(&self, call: &str, md: &MetadataMap) -> Result<(), Status> {
        let key1: Vec<&str> = md.get_all("key1").collect();
        self.out
            .line(format!("server {call}: key1 from metadata: {key1:?}"));
        if key1.is_empty() {
            return Err(Status::internal(
                "key1 missing: the interceptor did not run",
            ));
        }
        Ok(())
    }

    fn handler_trailer() -> Result<MetadataMap, Status> {
        let mut md = MetadataMap::new();
        md.insert("handler", "done")?;
        Ok(md)
    }
}

impl Echo for Key1Echo {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.report("UnaryEcho", request.metadata())?;
        let mut response = Response::new(EchoResponse {
            message: request.into_inner().message,
        });
        response.set_trailers(Self::handler_trailer()?);
        Ok(response)
    }

    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        self.report("BidirectionalStreamingEcho", request.metadata())?;
        request.context().add_trailers(Self::handler_trailer()?);
        Ok(Response::new(echo_each(request.into_inner(), |m| m)))
    }
}

/// The server interceptor: refuses calls without `client-id`, adds `key1` for the handler,
/// a response header and a trailer.
pub fn metadata_interceptor(out: Transcript) -> impl server::Interceptor {
    server::interceptor_fn(move |mut head: CallHead, next: Next| -> BoxFuture<Status> {
        let out = out.clone();
        Box::pin(async move {
            let Some(client_id) = head.metadata.get("client-id").map(str::to_string) else {
                out.line(format!(
                    "server interceptor: {} without client-id: refused",
                    head.method()
                ));
                return Status::invalid_argument("missing metadata");
            };
            out.line(format!(
                "server interceptor: {} from client-id {client_id}",
                head.method()
            ));
            // For the handler: one more value in the request metadata.
            if let Err(e) = head.metadata.append("key1", "value1") {
                return Status::internal(e.to_string());
            }
            // For the client: a header now and a trailer with the status.
            let (Ok(header), Ok(trailer)) = (
                metadata(&[("interceptor", "seen")]),
                metadata(&[("interceptor-trailer", "added")]),
            ) else {
                return Status::internal("building metadata");
            };
            if let Err(status) = head.context().send_headers(header) {
                return status;
            }
            head.context().add_trailers(trailer);
            next.run(head).await
        })
    })
}

fn check_metadata(
    call: &str,
    headers: &MetadataMap,
    trailers: Option<&MetadataMap>,
    out: &Transcript,
) -> Result<(), BoxError> {
    let trailers = trailers.ok_or_else(|| format!("{call}: no trailers"))?;
    let (header, t1, t2) = (
        headers.get("interceptor"),
        trailers.get("interceptor-trailer"),
        trailers.get("handler"),
    );
    out.line(format!(
        "client {call}: header interceptor = {header:?}, trailers interceptor-trailer = {t1:?}, handler = {t2:?}"
    ));
    ensure!(
        header == Some("seen"),
        "{call}: header missing: {headers:?}"
    );
    ensure!(
        t1 == Some("added") && t2 == Some("done"),
        "{call}: trailers wrong: {trailers:?}"
    );
    Ok(())
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder()
            .add_interceptor(metadata_interceptor(out.clone()))
            .add_service(EchoServer::new(Key1Echo { out: out.clone() })),
    )
    .await?;
    out.line(format!("server listening on {}", server.addr()));

    // The client interceptor adds `client-id` to every call of this channel.
    let channel = Channel::builder(server.url())
        .interceptor(interceptor_fn(|call| {
            call.metadata_mut().insert("client-id", CLIENT_ID)?;
            Ok(())
        }))
        .connect()
        .await?;
    let client = EchoClient::new(channel);

    let response = client.unary_echo(echo("hello world")).await?;
    out.line(format!(
        "client UnaryEcho: {:?}",
        response.get_ref().message
    ));
    ensure!(
        response.get_ref().message == "hello world",
        "unary: wrong reply {:?}",
        response.get_ref()
    );
    check_metadata("UnaryEcho", response.metadata(), response.trailers(), out)?;

    let response = client
        .bidirectional_streaming_echo(stream::iter(vec![echo("hello world")]))
        .await?;
    let mut replies = response.into_inner();
    let headers = replies.headers().await?.clone();
    let mut got = Vec::new();
    while let Some(reply) = replies.message().await? {
        got.push(reply.message);
    }
    out.line(format!("client BidirectionalStreamingEcho: {got:?}"));
    ensure!(got == ["hello world"], "bidi: wrong replies {got:?}");
    check_metadata(
        "BidirectionalStreamingEcho",
        &headers,
        replies.trailers(),
        out,
    )?;

    // A channel without the client interceptor: the server interceptor refuses the call.
    let bare = EchoClient::new(crate::connect(&server.url()).await?);
    let err = bare
        .unary_echo(echo("no id"))
        .await
        .err()
        .ok_or("a call without client-id was accepted")?;
    out.line(format!(
        "client without the interceptor: {} ({})",
        err.code().as_str(),
        err.message()
    ));
    ensure!(
        err.code() == Code::InvalidArgument,
        "without client-id: {err:?}"
    );

    server.shutdown().await?;
    Ok(())
}
