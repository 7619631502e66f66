//! Metadata: request headers from the client; response headers and trailers from the
//! server; ASCII and binary (`-bin`) values; on a unary call (headers and trailers set on
//! the `Response`) and on server-streaming and bidi calls (headers sent early with
//! `ServerContext::send_headers`, trailers set on the context and read from the
//! `Streaming` once it has ended).

use futures_util::stream;
use grpc_runtime::server::Server;
use grpc_runtime::{BoxStream, MetadataMap, Request, Response, Status, Streaming};

use super::{echo, echo_each, repeat_reply};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{connect, ensure, BoxError, RunningServer, Transcript};

/// Bytes the client sends in `client-bin` (not valid UTF-8 on purpose).
pub const CLIENT_BIN: &[u8] = &[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff];

/// The metadata example's server: reports the request metadata it sees and answers with
/// headers and trailers.
#[derive(Debug, Clone)]
pub struct MetadataEcho {
    out: Transcript,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building metadata: {e}"))
}

impl MetadataEcho {
    fn report(&self, call: &str, md: &MetadataMap) {
        let client_id = md.get("client-id").unwrap_or("(none)");
        let bin = md
            .get_bin("client-bin")
            .map(|b| format!("{:02x?}", &b[..]))
            .unwrap_or_else(|| "(none)".into());
        self.out.line(format!(
            "server {call}: client-id = {client_id}, client-bin = {bin}"
        ));
    }

    fn headers(call: &str) -> Result<MetadataMap, Status> {
        let mut md = MetadataMap::new();
        md.insert("location", "MTV").map_err(internal)?;
        md.insert("call", call).map_err(internal)?;
        md.insert_bin("server-bin", vec![1u8, 2, 3])
            .map_err(internal)?;
        Ok(md)
    }

    fn trailers(call: &str, echoed: &str) -> Result<MetadataMap, Status> {
        let mut md = MetadataMap::new();
        md.insert("call-summary", format!("{call} done"))
            .map_err(internal)?;
        md.insert("echoed-client-id", echoed).map_err(internal)?;
        Ok(md)
    }
}

impl Echo for MetadataEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.report("unary", request.metadata());
        let client_id = request
            .metadata()
            .get("client-id")
            .unwrap_or("")
            .to_string();
        let mut response = Response::new(EchoResponse {
            message: request.into_inner().message,
        });
        *response.metadata_mut() = Self::headers("unary")?;
        response.set_trailers(Self::trailers("unary", &client_id)?);
        Ok(response)
    }

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        self.report("server-streaming", request.metadata());
        let client_id = request
            .metadata()
            .get("client-id")
            .unwrap_or("")
            .to_string();
        let ctx = request.context().clone();
        // Headers go out now, before the first message; trailers go with the status.
        ctx.send_headers(Self::headers("server-streaming")?)?;
        ctx.set_trailers(Self::trailers("server-streaming", &client_id)?);
        Ok(Response::new(repeat_reply(
            &request.into_inner().message,
            3,
        )))
    }

    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        self.report("bidi", request.metadata());
        let client_id = request
            .metadata()
            .get("client-id")
            .unwrap_or("")
            .to_string();
        request
            .context()
            .set_trailers(Self::trailers("bidi", &client_id)?);
        let mut response = Response::new(echo_each(request.into_inner(), |m| m));
        *response.metadata_mut() = Self::headers("bidi")?;
        Ok(response)
    }
}

fn request_metadata(client_id: &str) -> Result<MetadataMap, BoxError> {
    let mut md = MetadataMap::new();
    md.insert("client-id", client_id)?;
    md.insert_bin("client-bin", CLIENT_BIN)?;
    Ok(md)
}

fn check_headers(call: &str, md: &MetadataMap, out: &Transcript) -> Result<(), BoxError> {
    out.line(format!(
        "client {call}: header location = {:?}, server-bin = {:?}",
        md.get("location").unwrap_or("(none)"),
        md.get_bin("server-bin").map(|b| b.to_vec())
    ));
    ensure!(
        md.get("location") == Some("MTV"),
        "{call}: header location missing: {md:?}"
    );
    ensure!(
        md.get("call") == Some(call),
        "{call}: header call missing: {md:?}"
    );
    ensure!(
        md.get_bin("server-bin").map(|b| &b[..]) == Some(&[1u8, 2, 3][..]),
        "{call}: server-bin wrong: {md:?}"
    );
    Ok(())
}

fn check_trailers(
    call: &str,
    client_id: &str,
    md: Option<&MetadataMap>,
    out: &Transcript,
) -> Result<(), BoxError> {
    let md = md.ok_or_else(|| format!("{call}: no trailers"))?;
    out.line(format!(
        "client {call}: trailer call-summary = {:?}, echoed-client-id = {:?}",
        md.get("call-summary").unwrap_or("(none)"),
        md.get("echoed-client-id").unwrap_or("(none)")
    ));
    ensure!(
        md.get("call-summary") == Some(&format!("{call} done")[..]),
        "{call}: trailer call-summary wrong: {md:?}"
    );
    ensure!(
        md.get("echoed-client-id") == Some(client_id),
        "{call}: trailer echoed-client-id wrong: {md:?}"
    );
    Ok(())
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder().add_service(EchoServer::new(MetadataEcho { out: out.clone() })),
    )
    .await?;
    let client = EchoClient::new(connect(&server.url()).await?);

    // Unary: headers and trailers both come back on the Response.
    let mut request = Request::new(echo("hello unary"));
    *request.metadata_mut() = request_metadata("unary-client")?;
    let response = client.unary_echo(request).await?;
    check_headers("unary", response.metadata(), out)?;
    check_trailers("unary", "unary-client", response.trailers(), out)?;
    ensure!(
        response.get_ref().message == "hello unary",
        "unary: wrong reply {:?}",
        response.get_ref()
    );

    // Server streaming: headers on the Response, trailers on the Streaming once it ended.
    let mut request = Request::new(echo("hello stream"));
    *request.metadata_mut() = request_metadata("streaming-client")?;
    let response = client.server_streaming_echo(request).await?;
    check_headers("server-streaming", response.metadata(), out)?;
    let mut replies = response.into_inner();
    let mut n = 0;
    while let Some(reply) = replies.message().await? {
        n += 1;
        ensure!(
            reply.message == format!("hello stream #{n}"),
            "server-streaming: wrong reply {reply:?}"
        );
    }
    out.line(format!("client server-streaming: {n} messages"));
    ensure!(n == 3, "server-streaming: expected 3 messages, got {n}");
    check_trailers(
        "server-streaming",
        "streaming-client",
        replies.trailers(),
        out,
    )?;

    // Bidi: the same, with a request stream.
    let mut request = Request::new(stream::iter(vec![echo("ping 1"), echo("ping 2")]));
    *request.metadata_mut() = request_metadata("bidi-client")?;
    let response = client.bidirectional_streaming_echo(request).await?;
    // A bidi call returns once its request is under way, before the server's headers
    // (a server may wait for a request first): `headers()` waits for them.
    let mut replies = response.into_inner();
    check_headers("bidi", replies.headers().await?, out)?;
    let mut got = Vec::new();
    while let Some(reply) = replies.message().await? {
        got.push(reply.message);
    }
    out.line(format!("client bidi: replies {got:?}"));
    ensure!(got == ["ping 1", "ping 2"], "bidi: wrong replies {got:?}");
    check_trailers("bidi", "bidi-client", replies.trailers(), out)?;

    server.shutdown().await?;
    Ok(())
}
