//! Compression: gzip per call (`Request::set_compression`), per channel
//! (`Endpoint::send_compressed`), one call opting out of the channel's gzip
//! (`Request::disable_compression`), and gzip responses chosen by the server
//! (`ServerContext::set_compression`). The server reports the encoding each request
//! arrived in; the client reads the encoding of each response with `Response::encoding`
//! and checks it against what the server says it chose. Until the server advertises `grpc-accept-encoding` on a connection the
//! client assumes it accepts every encoding this runtime implements (as grpc-go clients
//! do); afterwards it never compresses in an encoding the server did not list.

use grpc_runtime::server::Server;
use grpc_runtime::{Channel, CompressionEncoding, Request, Response, Status};

use super::echo;
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// The server: answers "<message>: request <encoding>, reply <encoding>", compressing the
/// reply with gzip when the client accepts it.
#[derive(Debug, Clone)]
pub struct CompressionEcho;

fn name(e: Option<CompressionEncoding>) -> &'static str {
    e.map(CompressionEncoding::as_str).unwrap_or("identity")
}

impl Echo for CompressionEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let ctx = request.context().clone();
        let reply_gzip = ctx.set_compression(Some(CompressionEncoding::Gzip));
        let message = format!(
            "{}: request {}, reply {}",
            request.get_ref().message,
            name(request.compression()),
            if reply_gzip { "gzip" } else { "identity" }
        );
        Ok(Response::new(EchoResponse { message }))
    }
}

/// How a call compresses its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestCompression {
    /// Whatever the channel does.
    ChannelDefault,
    /// gzip for this call.
    Gzip,
    /// Uncompressed for this call, whatever the channel does.
    Identity,
}

async fn call(
    client: &EchoClient,
    text: &str,
    send: RequestCompression,
    out: &Transcript,
) -> Result<String, BoxError> {
    let mut request = Request::new(echo(text));
    match send {
        RequestCompression::ChannelDefault => {}
        RequestCompression::Gzip => request.set_compression(Some(CompressionEncoding::Gzip)),
        RequestCompression::Identity => request.disable_compression(),
    }
    let response = client.unary_echo(request).await?;
    let arrived = response.encoding();
    let reply = response.into_inner().message;
    out.line(format!(
        "client: {reply} (response arrived in {})",
        name(arrived)
    ));
    let said_gzip = reply.ends_with("reply gzip");
    ensure!(
        said_gzip == (arrived == Some(CompressionEncoding::Gzip)),
        "server said {reply:?}, response arrived in {arrived:?}"
    );
    Ok(reply)
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server =
        RunningServer::start(Server::builder().add_service(EchoServer::new(CompressionEcho)))
            .await?;

    // Per call: only the calls that ask for gzip are compressed.
    let client = EchoClient::new(Channel::builder(server.url()).connect().await?);
    let first = call(
        &client,
        "per-call gzip, first call on the channel",
        RequestCompression::Gzip,
        out,
    )
    .await?;
    ensure!(
        first.ends_with("request gzip, reply gzip"),
        "first call: {first:?}"
    );
    let reply = call(&client, "per-call gzip", RequestCompression::Gzip, out).await?;
    ensure!(
        reply.ends_with("request gzip, reply gzip"),
        "per-call gzip: {reply:?}"
    );
    let reply = call(
        &client,
        "no compression",
        RequestCompression::ChannelDefault,
        out,
    )
    .await?;
    ensure!(
        reply.ends_with("request identity, reply gzip"),
        "uncompressed call: {reply:?}"
    );

    // Per channel: every call on this channel is compressed, the first one included.
    let channel = Channel::builder(server.url())
        .send_compressed(CompressionEncoding::Gzip)
        .connect()
        .await?;
    let client = EchoClient::new(channel);
    for i in 1..=3 {
        let reply = call(
            &client,
            &format!("per-channel gzip #{i}"),
            RequestCompression::ChannelDefault,
            out,
        )
        .await?;
        ensure!(
            reply.ends_with("request gzip, reply gzip"),
            "per-channel gzip: {reply:?}"
        );
    }
    // One call opts out of the channel's gzip: sent uncompressed (no grpc-encoding).
    let reply = call(
        &client,
        "opted out on the gzip channel",
        RequestCompression::Identity,
        out,
    )
    .await?;
    ensure!(
        reply.ends_with("request identity, reply gzip"),
        "opted-out call: {reply:?}"
    );
    server.shutdown().await?;
    Ok(())
}
