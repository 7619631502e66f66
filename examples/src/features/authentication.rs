//! Authentication, in the shape of grpc-go's `features/authentication` example, with
//! mutual TLS on top: the server requires a client certificate signed by its CA and a
//! bearer token on every call (a server interceptor checks it: UNAUTHENTICATED
//! otherwise), and the handler greets the caller by the identity of its certificate.
//! The client presents its certificate (`ClientTlsConfig::identity_pem`) and sends the
//! token as call credentials from a refreshing `TokenSource`; a per-call credential
//! overrides nothing but adds its metadata after the channel's. Call credentials never
//! travel in clear text: over a plaintext channel the call fails before it is sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grpc_runtime::client::credentials::{MetadataCredentials, Token, TokenSource};
use grpc_runtime::server::authz::PeerIdentity;
use grpc_runtime::server::{self, CallHead, Next, Server, ServerTlsConfig};
use grpc_runtime::{
    BoxFuture, BoxStream, Channel, ClientTlsConfig, Code, Request, Response, Status, Streaming,
};

use super::{echo, echo_each, repeat_reply};
use crate::pb::echo::echo_client::EchoClient;
use crate::pb::echo::echo_server::{Echo, EchoServer};
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{ensure, BoxError, RunningServer, Transcript};

/// The test CA, the server's certificate and key, the client's (TEST ONLY).
pub const CA_PEM: &str = include_str!("../../data/x509/ca.pem");
const SERVER_PEM: &str = include_str!("../../data/x509/server1.pem");
const SERVER_KEY: &str = include_str!("../../data/x509/server1.key");
const CLIENT_PEM: &str = include_str!("../../data/x509/client.pem");
const CLIENT_KEY: &str = include_str!("../../data/x509/client.key");

/// The token the server accepts.
pub const TOKEN: &str = "some-secret-token";

/// Greets the caller by its certificate's identity.
#[derive(Debug, Clone, Copy)]
pub struct WhoAmI;

impl Echo for WhoAmI {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let who = match PeerIdentity::from_context(request.context()) {
            Ok(PeerIdentity::Certificate(c)) => c.subject,
            Ok(other) => format!("{other:?}"),
            Err(e) => {
                return Err(Status::unauthenticated(format!(
                    "unreadable client certificate: {e}"
                )))
            }
        };
        Ok(Response::new(EchoResponse {
            message: format!("{} from {who}", request.into_inner().message),
        }))
    }

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        Ok(Response::new(repeat_reply(
            &request.into_inner().message,
            1,
        )))
    }

    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<BoxStream<EchoResponse>>, Status> {
        Ok(Response::new(echo_each(request.into_inner(), |m| m)))
    }
}

/// Server interceptor: every call must carry `authorization: Bearer TOKEN`.
pub fn require_token() -> impl server::Interceptor {
    server::interceptor_fn(|head: CallHead, next: Next| -> BoxFuture<Status> {
        let ok = head
            .metadata
            .get_all("authorization")
            .any(|v| v == format!("Bearer {TOKEN}"));
        if !ok {
            return Box::pin(std::future::ready(Status::unauthenticated("invalid token")));
        }
        next.run(head)
    })
}

/// Runs the example: server and clients in this process over real TLS.
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    let tls = ServerTlsConfig::new(SERVER_PEM, SERVER_KEY).client_ca_pem(CA_PEM);
    let server = RunningServer::start(
        Server::builder()
            .tls_config(tls)
            .add_interceptor(require_token())
            .add_service(EchoServer::new(WhoAmI)),
    )
    .await?;
    out.line(format!(
        "server listening on {} (TLS, client certificates required, token checked)",
        server.addr()
    ));
    let target = format!("https://{}", server.addr());
    let client_tls = ClientTlsConfig::new()
        .ca_certificate_pem(CA_PEM)
        .domain_name("foo.test.google.fr");

    // The token comes from a source that caches it until shortly before it expires.
    let fetches = Arc::new(AtomicUsize::new(0));
    let f = fetches.clone();
    let tokens = TokenSource::new(move || {
        f.fetch_add(1, Ordering::SeqCst);
        async {
            Ok(Token {
                value: TOKEN.to_string(),
                expires_in: Some(Duration::from_secs(3600)),
            })
        }
    });
    let channel = Channel::builder(&target)
        .tls_config(client_tls.clone().identity_pem(CLIENT_PEM, CLIENT_KEY))
        .call_credentials(tokens)
        .connect()
        .await?;
    let client = EchoClient::new(channel);
    for i in 1..=2 {
        let reply = client
            .unary_echo(echo(&format!("hello {i}")))
            .await?
            .into_inner()
            .message;
        out.line(format!("client: {reply}"));
        ensure!(
            reply == format!("hello {i} from CN=grpc-rust test client,O=grpc-rust,C=XX"),
            "unexpected reply {reply:?}"
        );
    }
    out.line(format!(
        "client: token fetched {} time(s) for 2 calls",
        fetches.load(Ordering::SeqCst)
    ));
    ensure!(
        fetches.load(Ordering::SeqCst) == 1,
        "the token was fetched more than once"
    );

    // A wrong token on the same mTLS channel: the interceptor refuses the call.
    let bad = EchoClient::new(
        Channel::builder(&target)
            .tls_config(client_tls.identity_pem(CLIENT_PEM, CLIENT_KEY))
            .call_credentials(MetadataCredentials::bearer_token("wrong-token")?)
            .connect()
            .await?,
    );
    let err = bad
        .unary_echo(echo("hi"))
        .await
        .err()
        .ok_or("a wrong token was accepted")?;
    out.line(format!(
        "client with a wrong token: {} ({})",
        err.code().as_str(),
        err.message()
    ));
    ensure!(err.code() == Code::Unauthenticated, "wrong token: {err:?}");

    // The same token towards a plaintext server is never sent: the call fails before
    // its request leaves (the server would have accepted the token).
    let plaintext_server = RunningServer::start(
        Server::builder()
            .add_interceptor(require_token())
            .add_service(EchoServer::new(WhoAmI)),
    )
    .await?;
    let plain = EchoClient::new(
        Channel::builder(plaintext_server.url())
            .call_credentials(MetadataCredentials::bearer_token(TOKEN)?)
            .connect()
            .await?,
    );
    let err = plain
        .unary_echo(echo("hi"))
        .await
        .err()
        .ok_or("a token went over plaintext")?;
    out.line(format!(
        "client over plaintext: {} ({})",
        err.code().as_str(),
        err.message()
    ));
    ensure!(err.code() == Code::Unauthenticated, "plaintext: {err:?}");

    plaintext_server.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
