//! The quick start Greeter: the server implementation (`SayHello` answers
//! "Hello <name>", `SayHelloAgain` answers "Hello again <name>", as on grpc.io) and the
//! client run used by the `helloworld-client` binary.

use grpc_runtime::{Request, Response, Status};

use crate::pb::helloworld::greeter_client::GreeterClient;
use crate::pb::helloworld::greeter_server::Greeter;
use crate::pb::helloworld::{HelloReply, HelloRequest};
use crate::{BoxError, Transcript};

/// Default address of the helloworld server binaries.
pub const DEFAULT_ADDR: &str = "127.0.0.1:50051";

/// The Greeter implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        tracing::info!(%name, "SayHello");
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }

    async fn say_hello_again(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        tracing::info!(%name, "SayHelloAgain");
        Ok(Response::new(HelloReply {
            message: format!("Hello again {name}"),
        }))
    }
}

/// The client side of the quick start: `SayHello` then `SayHelloAgain` for `name`,
/// reporting "Greeting: ..." lines. Returns the two greetings.
pub async fn run_client(
    target: &str,
    name: &str,
    out: &Transcript,
) -> Result<(String, String), BoxError> {
    let client = GreeterClient::new(crate::connect(target).await?);
    let first = client
        .say_hello(HelloRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner()
        .message;
    out.line(format!("Greeting: {first}"));
    let again = client
        .say_hello_again(HelloRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner()
        .message;
    out.line(format!("Greeting: {again}"));
    Ok((first, again))
}
