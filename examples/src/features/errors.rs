//! Errors: status codes a handler returns (INVALID_ARGUMENT), the runtime's own answers
//! (UNIMPLEMENTED for a method the service leaves to the default, or a service the server
//! lacks; UNAVAILABLE for a server that is not there), and a rich error: the
//! RESOURCE_EXHAUSTED answer to a second greeting carries a `google.rpc.QuotaFailure`,
//! which the client decodes with `Status::error_details()`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use grpc_runtime::rpc_types::{quota_failure, QuotaFailure};
use grpc_runtime::server::Server;
use grpc_runtime::{Code, ErrorDetail, Request, Response, Status};

use super::echo;
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::helloworld::greeter_client::GreeterClient;
use crate::pb::helloworld::greeter_server::{Greeter, GreeterServer};
use crate::pb::helloworld::{HelloReply, HelloRequest};
use crate::{connect, ensure, BoxError, RunningServer, Transcript};

/// A greeter that greets every name once: an empty name is INVALID_ARGUMENT, a second
/// greeting RESOURCE_EXHAUSTED with a QuotaFailure. `SayHelloAgain` is left to the
/// generated default (UNIMPLEMENTED).
#[derive(Debug, Default, Clone)]
pub struct OnceGreeter {
    greeted: Arc<Mutex<HashSet<String>>>,
}

impl Greeter for OnceGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("name must not be empty"));
        }
        let first = self
            .greeted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        if !first {
            let quota = QuotaFailure {
                violations: vec![quota_failure::Violation {
                    subject: format!("name:{name}"),
                    description: "Limit one greeting per person".into(),
                    ..Default::default()
                }],
            };
            return Err(Status::with_details(
                Code::ResourceExhausted,
                "request limit exceeded",
                vec![ErrorDetail::QuotaFailure(quota)],
            ));
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

fn report(out: &Transcript, what: &str, status: &Status) {
    out.line(format!(
        "{what}: {} ({:?})",
        status.code().as_str(),
        status.message()
    ));
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder().add_service(GreeterServer::new(OnceGreeter::default())),
    )
    .await?;
    let channel = connect(&server.url()).await?;
    let client = GreeterClient::new(channel.clone());
    let hello = |name: &str| HelloRequest {
        name: name.to_string(),
    };

    let first = client.say_hello(hello("world")).await?.into_inner().message;
    out.line(format!("first SayHello(world): {first:?}"));
    ensure!(first == "Hello world", "unexpected greeting {first:?}");

    let status = client
        .say_hello(hello(""))
        .await
        .err()
        .ok_or("empty name: expected an error")?;
    report(out, "SayHello(\"\")", &status);
    ensure!(
        status.code() == Code::InvalidArgument,
        "empty name: expected INVALID_ARGUMENT, got {status}"
    );

    // The rich error: a QuotaFailure in grpc-status-details-bin.
    let status = client
        .say_hello(hello("world"))
        .await
        .err()
        .ok_or("second greeting: expected an error")?;
    report(out, "second SayHello(world)", &status);
    ensure!(
        status.code() == Code::ResourceExhausted,
        "second greeting: expected RESOURCE_EXHAUSTED, got {status}"
    );
    let details = status.error_details()?;
    let mut violations = Vec::new();
    for detail in &details {
        if let ErrorDetail::QuotaFailure(q) = detail {
            for v in &q.violations {
                out.line(format!(
                    "  QuotaFailure violation: subject {:?}, description {:?}",
                    v.subject, v.description
                ));
                violations.push((v.subject.clone(), v.description.clone()));
            }
        }
    }
    ensure!(
        violations
            == [(
                "name:world".to_string(),
                "Limit one greeting per person".to_string()
            )],
        "QuotaFailure not decoded from {details:?}"
    );

    let status = client
        .say_hello_again(hello("world"))
        .await
        .err()
        .ok_or("SayHelloAgain: expected an error")?;
    report(
        out,
        "SayHelloAgain (not implemented by this server)",
        &status,
    );
    ensure!(
        status.code() == Code::Unimplemented,
        "SayHelloAgain: expected UNIMPLEMENTED, got {status}"
    );

    let status = EchoClient::new(channel)
        .unary_echo(echo("hi"))
        .await
        .err()
        .ok_or("Echo: expected an error")?;
    report(out, "UnaryEcho (service not on this server)", &status);
    ensure!(
        status.code() == Code::Unimplemented,
        "Echo: expected UNIMPLEMENTED, got {status}"
    );

    let url = server.url();
    server.shutdown().await?;
    let status = match connect(&url).await {
        Ok(ch) => GreeterClient::new(ch)
            .say_hello(hello("anyone"))
            .await
            .err()
            .ok_or("expected an error")?,
        Err(e) => {
            out.line(format!("connect to stopped server: {e}"));
            // Show the call status too, on a lazily connected channel.
            let ch = grpc_runtime::Channel::builder(url.as_str()).connect_lazy()?;
            GreeterClient::new(ch)
                .say_hello(hello("anyone"))
                .await
                .err()
                .ok_or("expected an error")?
        }
    };
    report(out, "SayHello to a stopped server", &status);
    ensure!(
        status.code() == Code::Unavailable,
        "stopped server: expected UNAVAILABLE, got {status}"
    );
    Ok(())
}
