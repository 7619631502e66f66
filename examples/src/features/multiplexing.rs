//! Multiplexing: two services (Greeter and Echo) on one server, and two generated clients
//! sharing one channel (one HTTP/2 connection), also calling concurrently.

use grpc_runtime::server::Server;
use grpc_runtime::{Request, Response, Status};

use super::echo;
use crate::helloworld::MyGreeter;
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::pb::helloworld::greeter_client::GreeterClient;
use crate::pb::helloworld::greeter_server::GreeterServer;
use crate::pb::helloworld::HelloRequest;
use crate::{connect, ensure, BoxError, RunningServer, Transcript};

/// The Echo service of this example.
#[derive(Debug, Clone, Copy)]
pub struct SimpleEcho;

impl Echo for SimpleEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
        }))
    }
}

/// Runs the example: one server with both services, one channel with both clients.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .add_service(EchoServer::new(SimpleEcho)),
    )
    .await?;
    out.line(format!(
        "server on {} with helloworld.Greeter and grpc.examples.echo.Echo",
        server.addr()
    ));

    let channel = connect(&server.url()).await?;
    let greeter = GreeterClient::new(channel.clone());
    let echoer = EchoClient::new(channel);

    let greeting = greeter
        .say_hello(HelloRequest {
            name: "multiplexer".into(),
        })
        .await?
        .into_inner()
        .message;
    out.line(format!("Greeter client: {greeting:?}"));
    ensure!(
        greeting == "Hello multiplexer",
        "wrong greeting {greeting:?}"
    );
    let echoed = echoer
        .unary_echo(echo("this is examples/multiplexing"))
        .await?
        .into_inner()
        .message;
    out.line(format!("Echo client: {echoed:?}"));
    ensure!(
        echoed == "this is examples/multiplexing",
        "wrong echo {echoed:?}"
    );

    // Both clients at once, interleaved on the same connection.
    let mut greetings = Vec::new();
    let mut echoes = Vec::new();
    for i in 0..5 {
        greetings.push(greeter.say_hello(HelloRequest {
            name: format!("client {i}"),
        }));
        echoes.push(echoer.unary_echo(echo(&format!("echo {i}"))));
    }
    let (greetings, echoes) = tokio::join!(
        futures_util::future::join_all(greetings),
        futures_util::future::join_all(echoes)
    );
    for (i, (g, e)) in greetings.into_iter().zip(echoes).enumerate() {
        let (g, e) = (g?.into_inner().message, e?.into_inner().message);
        ensure!(
            g == format!("Hello client {i}") && e == format!("echo {i}"),
            "concurrent call {i}: {g:?} {e:?}"
        );
    }
    out.line("10 concurrent calls (5 per client) on one channel: all OK");
    server.shutdown().await?;
    Ok(())
}
