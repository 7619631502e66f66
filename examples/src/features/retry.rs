//! Retries (gRFC A6), in the shape of grpc-go's `features/retry`: a flaky server fails the
//! first three attempts of every request with UNAVAILABLE (a Trailers-Only answer, so
//! nothing was committed) and answers the fourth. The retry policy comes from the
//! channel's service config (`Endpoint::default_service_config`; a resolver can supply
//! one too):
//! - without a policy the call fails at once with the first UNAVAILABLE;
//! - with `maxAttempts: 4` and UNAVAILABLE retryable, the client retries after a short
//!   backoff and the call succeeds on its fourth attempt: the caller only sees the reply;
//! - with `maxAttempts: 3` the third failure is the call's status.
//!
//! The server counts attempts per request message itself: the `grpc-previous-rpc-attempts`
//! header the client sends on retries is not part of the request metadata handlers see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use grpc_runtime::server::Server;
use grpc_runtime::{Channel, Code, Request, Response, Status};

use super::echo;
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// How many attempts of each request the server fails before answering.
pub const FAILURES: u32 = 3;

/// The retry policy of the example: up to 4 attempts, 10 ms between them, UNAVAILABLE
/// retryable. `MAX_ATTEMPTS` is replaced by the attempt limit.
const SERVICE_CONFIG: &str = r#"{
  "methodConfig": [{
    "name": [{"service": "grpc.examples.echo.Echo"}],
    "retryPolicy": {
      "maxAttempts": MAX_ATTEMPTS,
      "initialBackoff": "0.01s",
      "maxBackoff": "0.01s",
      "backoffMultiplier": 1.0,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}"#;

/// Fails the first [`FAILURES`] attempts of every request message with UNAVAILABLE.
#[derive(Debug, Clone)]
pub struct FlakyEcho {
    attempts: Arc<Mutex<HashMap<String, u32>>>,
    out: Transcript,
}

impl Echo for FlakyEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let message = request.into_inner().message;
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
            let n = attempts.entry(message.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if attempt <= FAILURES {
            self.out.line(format!(
                "server: {message:?} attempt {attempt}: UNAVAILABLE"
            ));
            return Err(Status::unavailable(format!(
                "flaky server: attempt {attempt} of {message:?} fails"
            )));
        }
        self.out
            .line(format!("server: {message:?} attempt {attempt}: OK"));
        Ok(Response::new(EchoResponse {
            message: format!("{message} (served on attempt {attempt})"),
        }))
    }
}

async fn client(target: &str, max_attempts: Option<u32>) -> Result<EchoClient, BoxError> {
    let mut endpoint = Channel::builder(target);
    if let Some(n) = max_attempts {
        endpoint =
            endpoint.default_service_config(SERVICE_CONFIG.replace("MAX_ATTEMPTS", &n.to_string()));
    }
    Ok(EchoClient::new(endpoint.connect().await?))
}

/// Runs the example: server and client in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let service = FlakyEcho {
        attempts: Arc::default(),
        out: out.clone(),
    };
    let server =
        RunningServer::start(Server::builder().add_service(EchoServer::new(service))).await?;
    out.line(format!(
        "server listening on {} (fails the first {FAILURES} attempts of every request)",
        server.addr()
    ));

    // No retry policy: the first UNAVAILABLE is the call's status.
    let no_retry = client(&server.url(), None).await?;
    let err = no_retry
        .unary_echo(echo("no policy"))
        .await
        .err()
        .ok_or("the flaky server answered at once")?;
    out.line(format!(
        "client without a retry policy: {} ({})",
        err.code().as_str(),
        err.message()
    ));
    ensure!(err.code() == Code::Unavailable, "without retries: {err:?}");

    // maxAttempts 4: three failures are retried, the fourth attempt answers.
    let retrying = client(&server.url(), Some(4)).await?;
    let reply = retrying
        .unary_echo(echo("try hard"))
        .await?
        .into_inner()
        .message;
    out.line(format!("client with maxAttempts 4: {reply:?}"));
    ensure!(
        reply == "try hard (served on attempt 4)",
        "with retries: {reply:?}"
    );

    // maxAttempts 3: the third failure ends the call.
    let short = client(&server.url(), Some(3)).await?;
    let err = short
        .unary_echo(echo("give up"))
        .await
        .err()
        .ok_or("the call succeeded within 3 attempts")?;
    out.line(format!(
        "client with maxAttempts 3: {} ({})",
        err.code().as_str(),
        err.message()
    ));
    ensure!(
        err.code() == Code::Unavailable && err.message().contains("attempt 3"),
        "maxAttempts 3: {err:?}"
    );

    server.shutdown().await?;
    Ok(())
}
