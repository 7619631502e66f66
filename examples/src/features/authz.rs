//! Authorization with a gRFC A43 policy (`grpc_runtime::server::authz`), in the shape of
//! grpc-go's `features/authz` example: a first server interceptor turns the caller's
//! bearer token into a role (`x-role` metadata it sets itself, dropping any `x-role` the
//! client sent), and the policy interceptor after it decides by method and role:
//!
//! - admins may call any method, users only UnaryEcho, nobody without a role anything;
//! - a deny rule shuts BidirectionalStreamingEcho for everyone, admins included.
//!
//! Denied calls end with PERMISSION_DENIED "unauthorized RPC request rejected" and never
//! reach the service. With mutual TLS the policy can name client identities instead
//! (`"source": {"principals": ["spiffe://..."]}`); see `docs/security.md`.

use futures_util::stream;
use grpc_runtime::server::authz::AuthzInterceptor;
use grpc_runtime::server::{self, CallHead, Next, Server};
use grpc_runtime::{BoxFuture, BoxStream, Channel, Code, Request, Response, Status, Streaming};

use super::{echo, echo_each, repeat_reply};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// The policy: roles by method, and one method closed to all.
pub const POLICY: &str = r#"{
  "name": "echo-roles",
  "deny_rules": [
    {"name": "no-bidi", "request": {"paths": ["*/BidirectionalStreamingEcho"]}}
  ],
  "allow_rules": [
    {"name": "admins-anything", "request": {"headers": [{"key": "x-role", "values": ["admin"]}]}},
    {"name": "users-unary",
     "request": {"paths": ["/grpc.examples.echo.Echo/UnaryEcho"],
                 "headers": [{"key": "x-role", "values": ["user"]}]}}
  ]
}"#;

/// Tokens the server knows, and the role each stands for.
pub const TOKENS: &[(&str, &str)] = &[("alice-token", "admin"), ("bob-token", "user")];

/// The echo service behind the policy.
#[derive(Debug, Clone, Copy)]
pub struct RoleEcho;

impl Echo for RoleEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
        }))
    }

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        Ok(Response::new(repeat_reply(
            &request.into_inner().message,
            2,
        )))
    }

    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        Ok(Response::new(echo_each(request.into_inner(), |m| m)))
    }
}

/// Server interceptor: the role of the caller's token as `x-role` (none without a known
/// token). A client-sent `x-role` is dropped first, so clients cannot claim a role.
pub fn roles_from_tokens() -> impl server::Interceptor {
    server::interceptor_fn(|mut head: CallHead, next: Next| -> BoxFuture<Status> {
        head.metadata.remove("x-role");
        let token = head
            .metadata
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let role = TOKENS
            .iter()
            .find(|(t, _)| Some(*t) == token.as_deref())
            .map(|(_, r)| *r);
        if let Some(role) = role {
            if let Err(e) = head.metadata.insert("x-role", role) {
                return Box::pin(std::future::ready(Status::internal(format!(
                    "cannot set x-role: {e}"
                ))));
            }
        }
        next.run(head)
    })
}

/// Makes a unary, a server-streaming and a bidi call; reports each outcome.
async fn calls(
    client: &EchoClient,
    who: &str,
    extra: &[(&str, &str)],
    out: &Transcript,
) -> Vec<Code> {
    let req = |m: &str| {
        let mut r = Request::new(echo(m));
        for (k, v) in extra {
            // Keys and values here are fixed ASCII.
            let _ = r.metadata_mut().insert(k, v.to_string());
        }
        r
    };
    let mut codes = Vec::new();
    let mut report = |what: &str, r: Result<String, Status>| {
        match &r {
            Ok(s) => out.line(format!("{who}: {what}: OK ({s})")),
            Err(e) => out.line(format!(
                "{who}: {what}: {} ({})",
                e.code().as_str(),
                e.message()
            )),
        }
        codes.push(r.map(|_| Code::Ok).unwrap_or_else(|e| e.code()));
    };
    report(
        "UnaryEcho",
        client
            .unary_echo(req(who))
            .await
            .map(|r| r.into_inner().message),
    );
    let streamed = async {
        let mut s = client.server_streaming_echo(req(who)).await?.into_inner();
        let mut n = 0;
        while s.message().await?.is_some() {
            n += 1;
        }
        Ok::<_, Status>(format!("{n} replies"))
    }
    .await;
    report("ServerStreamingEcho", streamed);
    let bidi = async {
        let mut r = Request::new(stream::iter(vec![echo(who)]));
        for (k, v) in extra {
            let _ = r.metadata_mut().insert(k, v.to_string());
        }
        let mut s = client.bidirectional_streaming_echo(r).await?.into_inner();
        let mut n = 0;
        while s.message().await?.is_some() {
            n += 1;
        }
        Ok::<_, Status>(format!("{n} replies"))
    }
    .await;
    report("BidirectionalStreamingEcho", bidi);
    codes
}

/// Runs the example: server and clients in this process over a real socket.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let server = RunningServer::start(
        Server::builder()
            .add_interceptor(roles_from_tokens())
            .add_interceptor(AuthzInterceptor::from_json(POLICY)?)
            .add_service(EchoServer::new(RoleEcho)),
    )
    .await?;
    out.line(format!(
        "server listening on {} with policy \"echo-roles\"",
        server.addr()
    ));
    let client = EchoClient::new(Channel::builder(server.url()).connect().await?);
    let (ok, denied) = (Code::Ok, Code::PermissionDenied);

    let alice = calls(
        &client,
        "alice (admin)",
        &[("authorization", "Bearer alice-token")],
        out,
    )
    .await;
    ensure!(
        alice == [ok, ok, denied],
        "alice: expected OK, OK, PERMISSION_DENIED; got {alice:?}"
    );
    let bob = calls(
        &client,
        "bob (user)",
        &[("authorization", "Bearer bob-token")],
        out,
    )
    .await;
    ensure!(
        bob == [ok, denied, denied],
        "bob: expected OK, PERMISSION_DENIED twice; got {bob:?}"
    );
    let anonymous = calls(&client, "anonymous", &[], out).await;
    ensure!(
        anonymous == [denied, denied, denied],
        "anonymous: expected PERMISSION_DENIED; got {anonymous:?}"
    );
    let forged = calls(
        &client,
        "bob claiming admin",
        &[("authorization", "Bearer bob-token"), ("x-role", "admin")],
        out,
    )
    .await;
    ensure!(
        forged == [ok, denied, denied],
        "bob claiming admin: expected OK, PERMISSION_DENIED twice; got {forged:?}"
    );

    server.shutdown().await?;
    Ok(())
}
