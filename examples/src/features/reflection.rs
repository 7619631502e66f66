//! Server reflection, in the shape of grpc-go's `features/reflection`: a server with the
//! Greeter and Echo services turns reflection on with one line,
//! `ServerBuilder::add_reflection()` (`grpc.reflection.v1` and `v1alpha`), so tools such
//! as grpcurl, `buf curl` and Postman can list and call its services without the
//! `.proto` files:
//!
//! ```text
//! grpcurl -plaintext 127.0.0.1:PORT list
//! grpcurl -plaintext 127.0.0.1:PORT describe grpc.examples.echo.Echo
//! ```
//!
//! Here the client side is the reflection client generated into grpc-runtime
//! (`services::reflection::v1`): one bidi `ServerReflectionInfo` stream asks for the list
//! of services, then for the file defining `grpc.examples.echo.Echo` (decoded as a
//! `prost_types::FileDescriptorProto` and printed as proto), then for a symbol the server
//! does not have (NOT_FOUND, answered in the stream; the call goes on).

use futures_util::stream;
use grpc_runtime::server::Server;
use grpc_runtime::services::reflection::v1::server_reflection_client::ServerReflectionClient;
use grpc_runtime::services::reflection::v1::server_reflection_request::MessageRequest;
use grpc_runtime::services::reflection::v1::server_reflection_response::MessageResponse;
use grpc_runtime::services::reflection::v1::ServerReflectionRequest;
use grpc_runtime::Code;
use prost::Message;
use prost_types::FileDescriptorProto;

use super::NamedEcho;
use crate::helloworld::MyGreeter;
use crate::pb::echo::echo_server::EchoServer;
use crate::pb::helloworld::greeter_server::GreeterServer;
use crate::{connect, ensure, BoxError, RunningServer, Transcript};

fn ask(request: MessageRequest) -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }
}

/// `rpc Name(stream In) returns (stream Out)` lines of every service in `file`.
fn describe(file: &FileDescriptorProto) -> Vec<String> {
    let mut lines = Vec::new();
    for service in &file.service {
        lines.push(format!(
            "service {}.{} (in {})",
            file.package(),
            service.name(),
            file.name()
        ));
        for m in &service.method {
            let stream = |on: bool| if on { "stream " } else { "" };
            lines.push(format!(
                "  rpc {}({}{}) returns ({}{})",
                m.name(),
                stream(m.client_streaming()),
                m.input_type(),
                stream(m.server_streaming()),
                m.output_type()
            ));
        }
    }
    lines
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .add_service(EchoServer::new(NamedEcho {
                name: "echo".into(),
            }))
            .add_reflection(),
    )
    .await?;
    out.line(format!(
        "server listening on {} (Greeter, Echo, reflection)",
        server.addr()
    ));

    let client = ServerReflectionClient::new(connect(&server.url()).await?);
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "grpc.examples.echo.Echo".into(),
        )),
        ask(MessageRequest::FileContainingSymbol(
            "no.such.Service".into(),
        )),
    ];
    let mut answers = client
        .server_reflection_info(stream::iter(requests))
        .await?
        .into_inner();

    // 1. The services.
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await?.and_then(|r| r.message_response)
    else {
        return Err("no answer to ListServices".into());
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    out.line(format!("client: services {names:?}"));
    for expected in [
        "grpc.examples.echo.Echo",
        "helloworld.Greeter",
        "grpc.reflection.v1.ServerReflection",
    ] {
        ensure!(
            names.iter().any(|n| n == expected),
            "{expected} not listed: {names:?}"
        );
    }

    // 2. The file defining the Echo service (and, if it had any, the files it imports).
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await?.and_then(|r| r.message_response)
    else {
        return Err("no answer to FileContainingSymbol".into());
    };
    let mut described = Vec::new();
    for bytes in &files.file_descriptor_proto {
        described.extend(describe(&FileDescriptorProto::decode(&bytes[..])?));
    }
    for line in &described {
        out.line(format!("client: {line}"));
    }
    ensure!(
        described.iter().any(|l| l
            == "  rpc BidirectionalStreamingEcho(stream .grpc.examples.echo.EchoRequest) returns (stream .grpc.examples.echo.EchoResponse)"),
        "Echo described wrongly: {described:?}"
    );

    // 3. An unknown symbol: an error answer in the stream, not the end of the call.
    let Some(MessageResponse::ErrorResponse(error)) =
        answers.message().await?.and_then(|r| r.message_response)
    else {
        return Err("no error for an unknown symbol".into());
    };
    let code = Code::from_i32(error.error_code);
    out.line(format!(
        "client: no.such.Service -> {} ({})",
        code.as_str(),
        error.error_message
    ));
    ensure!(code == Code::NotFound, "unknown symbol: {error:?}");
    ensure!(
        answers.message().await?.is_none(),
        "more answers than questions"
    );

    server.shutdown().await?;
    Ok(())
}
