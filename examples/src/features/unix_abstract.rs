//! A server on a Linux abstract unix socket, in the shape of grpc-go's
//! `features/unix_abstract`. Abstract sockets have a name but no file: nothing to clean up
//! and no file permissions (any process in the same network namespace can connect).
//!
//! The server binds the name with std's `SocketAddrExt::from_abstract_name`, hands the
//! listener to tokio and serves it with `ServerBuilder::serve_unix_incoming_shutdown`; the
//! client's target is `unix-abstract:NAME` (the `unix-abstract` resolver). Over a unix
//! socket the server sees no peer address, and calls carry `:authority localhost`.
//!
//! Linux only: elsewhere `run` returns an error saying so.

use grpc_runtime::{Request, Response, Status};

use crate::pb::echo::echo_server::Echo;
use crate::pb::echo::{EchoRequest, EchoResponse};
use crate::{BoxError, Transcript};

/// Answers with the message and what the server knows of its caller.
#[derive(Debug, Clone)]
pub struct PeerEcho {
    out: Transcript,
}

impl Echo for PeerEcho {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.out.line(format!(
            "server: {:?} from peer {:?}",
            request.get_ref().message,
            request.remote_addr()
        ));
        Ok(Response::new(EchoResponse {
            message: format!(
                "{} (over an abstract unix socket)",
                request.into_inner().message
            ),
        }))
    }
}

/// Runs the example: server and client in this process over an abstract unix socket.
#[cfg(target_os = "linux")]
pub async fn run(out: &Transcript) -> Result<(), BoxError> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};

    use grpc_runtime::server::Server;
    use grpc_runtime::Channel;

    use super::echo;
    use crate::ensure;
    use crate::pb::echo::echo_client::EchoClient;
    use crate::pb::echo::echo_server::EchoServer;

    // The name is per process, so two runs at once do not collide.
    let name = format!("grpc-rust-example-{}", std::process::id());
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    out.line(format!(
        "server listening on unix-abstract:{name} (local address {:?})",
        listener.local_addr()?
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(PeerEcho { out: out.clone() }))
            .serve_unix_incoming_shutdown(listener, async move {
                let _ = stopped.await;
            }),
    );

    let channel = Channel::builder(format!("unix-abstract:{name}"))
        .connect()
        .await?;
    out.line(format!(
        "client: connected to {} (authority {:?})",
        channel.target(),
        channel.authority()
    ));
    let client = EchoClient::new(channel);
    for i in 1..=2 {
        let reply = client
            .unary_echo(echo(&format!("hello {i}")))
            .await?
            .into_inner()
            .message;
        out.line(format!("client: {reply:?}"));
        ensure!(
            reply == format!("hello {i} (over an abstract unix socket)"),
            "unexpected reply {reply:?}"
        );
    }

    let _ = stop.send(());
    server.await??;
    // The name is free again as soon as the listener is closed: no file was left behind.
    UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
    out.line(format!(
        "server stopped; unix-abstract:{name} is free again"
    ));
    Ok(())
}

/// Abstract unix sockets exist on Linux only.
#[cfg(not(target_os = "linux"))]
pub async fn run(_out: &Transcript) -> Result<(), BoxError> {
    Err("the unix-abstract example needs Linux (abstract unix sockets)".into())
}
