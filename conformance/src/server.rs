//! The interop server: [`InteropService`] implements every server feature of grpc's
//! interop-test-descriptions.md (EmptyCall, UnaryCall, CacheableUnaryCall,
//! StreamingInputCall, StreamingOutputCall, FullDuplexCall, HalfDuplexCall, compressed
//! requests/responses, echo status, echo metadata, interval_us), and [`serve`] runs it on a
//! listener, plaintext or TLS (the runtime's rustls server TLS, ALPN h2).
//!
//! UnimplementedCall and the UnimplementedService are left to the generated defaults and
//! the router: both answer UNIMPLEMENTED.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grpc_runtime::server::authz::FileWatcherInterceptor;
use grpc_runtime::server::{Server, ServerTlsConfig};
use grpc_runtime::{
    BoxStream, Code, CompressionEncoding, MetadataMap, Request, Response, ServerContext, Status,
    Streaming,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::flags::Flags;
use crate::pb::test_service_server::{TestService, TestServiceServer};
use crate::pb::{
    EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

/// Flags `interop_server` accepts.
pub const SERVER_FLAGS: &[&str] = &[
    "port",
    "use_tls",
    "tls_cert_file",
    "tls_key_file",
    "address_type",
    "host",
    "client_ca_file",
    "authz_policy",
    "grpc_web",
];
/// Boolean flags of `interop_server`.
pub const SERVER_BOOL_FLAGS: &[&str] = &["use_tls", "grpc_web"];

/// Largest request message the server accepts (very_large_request sends 10 MiB).
pub const MAX_RECV_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Largest response payload the server builds (a peer cannot make it allocate more).
pub const MAX_RESPONSE_PAYLOAD: usize = 16 * 1024 * 1024;

const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
const ECHO_TRAILING: &str = "x-grpc-test-echo-trailing-bin";

/// How the server listens.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind (`--host`, default `0.0.0.0`, `::` with `--address_type=IPV6`;
    /// `--port`, default 10000).
    pub addr: SocketAddr,
    /// `--use_tls`: serve TLS with the certificate below.
    pub use_tls: bool,
    /// `--tls_cert_file` (default: our `conformance/certs/server1.pem`).
    pub cert_file: PathBuf,
    /// `--tls_key_file` (default: our `conformance/certs/server1.key`).
    pub key_file: PathBuf,
    /// `--client_ca_file` (needs `--use_tls`): require client certificates signed by
    /// this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// `--authz_policy`: a gRFC A43 authorization policy file applied to every
    /// service, reread every [`AUTHZ_REFRESH`] (a broken new version keeps the old one).
    pub authz_policy: Option<PathBuf>,
    /// `--grpc_web` (default true): also serve gRPC-Web (HTTP/1.1 and HTTP/2, any origin)
    /// on the same port; `--grpc_web=false` serves native gRPC only.
    pub grpc_web: bool,
}

/// How often `--authz_policy` is checked for changes.
pub const AUTHZ_REFRESH: Duration = Duration::from_secs(1);

impl ServerConfig {
    /// A plaintext configuration for `addr` with our default certificate paths.
    pub fn new(addr: SocketAddr) -> ServerConfig {
        let certs = crate::client::certs_dir();
        ServerConfig {
            addr,
            use_tls: false,
            cert_file: certs.join("server1.pem"),
            key_file: certs.join("server1.key"),
            client_ca_file: None,
            authz_policy: None,
            grpc_web: true,
        }
    }

    /// Builds the configuration from parsed flags.
    pub fn from_flags(flags: &Flags) -> Result<ServerConfig, String> {
        let port: u16 = flags.num("port", 10000u16)?;
        let default_host = match flags.get("address_type").map(|s| s.to_ascii_uppercase()) {
            None => "0.0.0.0",
            Some(t) if t == "IPV4" || t == "IPV4_IPV6" => "0.0.0.0",
            Some(t) if t == "IPV6" => "::",
            Some(t) => {
                return Err(format!(
                    "--address_type={t}: expected IPV4, IPV6 or IPV4_IPV6"
                ))
            }
        };
        let host = flags.string("host", default_host);
        let ip: std::net::IpAddr = host
            .parse()
            .map_err(|_| format!("--host={host}: not an IP address"))?;
        let mut c = ServerConfig::new(SocketAddr::new(ip, port));
        c.use_tls = flags.bool("use_tls", false)?;
        c.grpc_web = flags.bool("grpc_web", true)?;
        if let Some(p) = flags.get("tls_cert_file").filter(|s| !s.is_empty()) {
            c.cert_file = PathBuf::from(p);
        }
        if let Some(p) = flags.get("tls_key_file").filter(|s| !s.is_empty()) {
            c.key_file = PathBuf::from(p);
        }
        if let Some(p) = flags.get("client_ca_file").filter(|s| !s.is_empty()) {
            if !c.use_tls {
                return Err("--client_ca_file needs --use_tls".into());
            }
            c.client_ca_file = Some(PathBuf::from(p));
        }
        c.authz_policy = flags
            .get("authz_policy")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Ok(c)
    }
}

/// The `grpc.testing.TestService` implementation.
#[derive(Clone, Debug, Default)]
pub struct InteropService;

/// Copies the echo metadata of the request: the initial value into `headers`, the trailing
/// one into the call's trailers (sent with any final status, errors included).
fn echo_metadata(request_md: &MetadataMap, ctx: &ServerContext, headers: &mut MetadataMap) {
    for v in request_md.get_all(ECHO_INITIAL) {
        if let Err(e) = headers.append(ECHO_INITIAL, v.to_string()) {
            tracing::debug!("cannot echo {ECHO_INITIAL}: {e}");
        }
    }
    let mut trailers = MetadataMap::new();
    for v in request_md.get_all_bin(ECHO_TRAILING) {
        if let Err(e) = trailers.append_bin(ECHO_TRAILING, v.clone()) {
            tracing::debug!("cannot echo {ECHO_TRAILING}: {e}");
        }
    }
    if !trailers.is_empty() {
        ctx.add_trailers(trailers);
    }
}

fn echo_status(s: Option<&EchoStatus>) -> Option<Status> {
    s.filter(|s| s.code != 0)
        .map(|s| Status::new(Code::from_i32(s.code), s.message.clone()))
}

fn make_payload(response_type: i32, size: i32) -> Result<Payload, Status> {
    if response_type != PayloadType::Compressable as i32 {
        return Err(Status::invalid_argument(format!(
            "unsupported response_type {response_type}"
        )));
    }
    if size < 0 {
        return Err(Status::invalid_argument(format!(
            "negative response size {size}"
        )));
    }
    if size as usize > MAX_RESPONSE_PAYLOAD {
        return Err(Status::invalid_argument(format!(
            "response size {size} is larger than this server's limit of {MAX_RESPONSE_PAYLOAD} bytes"
        )));
    }
    Ok(Payload {
        r#type: response_type,
        body: vec![0u8; size as usize],
    })
}

/// The CompressedRequest feature, checked per message as the C++ interop server does:
/// with `expect_compressed` true the message must have arrived compressed (call encoding
/// set and compressed flag 1), with false (or absent) it must have arrived uncompressed;
/// otherwise INVALID_ARGUMENT.
fn check_expect_compressed(
    expect: bool,
    encoding: Option<CompressionEncoding>,
    compressed: Option<bool>,
) -> Result<(), Status> {
    let compressed = encoding.is_some() && compressed.unwrap_or(false);
    if expect && !compressed {
        return Err(Status::invalid_argument(
            "Compressed request expectation not met: expected a compressed message, got an uncompressed one",
        ));
    }
    if !expect && compressed {
        return Err(Status::invalid_argument(
            "Compressed request expectation not met: expected an uncompressed message, got a compressed one",
        ));
    }
    Ok(())
}

/// Enables gzip for the responses when the client accepts it; messages then carry the
/// compressed flag only while `set_message_compression(true)`.
fn enable_response_compression(ctx: &ServerContext) {
    if !ctx.set_compression(Some(CompressionEncoding::Gzip)) {
        tracing::debug!("client does not accept gzip: responses stay uncompressed");
    }
    ctx.set_message_compression(false);
}

fn payload_len(p: Option<&Payload>) -> usize {
    p.map(|p| p.body.len()).unwrap_or(0)
}

/// One response to send, with the compression to use for it.
type Item = (Result<StreamingOutputCallResponse, Status>, bool);

/// Sends the responses for `params` (sleeping `interval_us` before each); false when the
/// client went away.
async fn send_responses(
    tx: &mpsc::Sender<Item>,
    response_type: i32,
    params: &[ResponseParameters],
) -> bool {
    for p in params {
        if p.interval_us > 0 {
            // Stop waiting as soon as the client is gone.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_micros(p.interval_us as u64)) => {}
                _ = tx.closed() => return false,
            }
        }
        let item = match make_payload(response_type, p.size) {
            Ok(payload) => Ok(StreamingOutputCallResponse {
                payload: Some(payload),
            }),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        let compressed = p.compressed.as_ref().is_some_and(|b| b.value);
        if tx.send((item, compressed)).await.is_err() || failed {
            return false;
        }
    }
    true
}

/// The response stream the runtime writes: applies each item's compression flag just
/// before the runtime encodes it.
fn response_stream(
    ctx: ServerContext,
    rx: mpsc::Receiver<Item>,
) -> BoxStream<StreamingOutputCallResponse> {
    Box::pin(futures_util::stream::unfold(
        (ctx, rx),
        |(ctx, mut rx)| async move {
            let (item, compressed) = rx.recv().await?;
            ctx.set_message_compression(compressed);
            Some((item, (ctx, rx)))
        },
    ))
}

fn streaming_response(
    request_md: &MetadataMap,
    ctx: &ServerContext,
    rx: mpsc::Receiver<Item>,
) -> Response<BoxStream<StreamingOutputCallResponse>> {
    let mut headers = MetadataMap::new();
    echo_metadata(request_md, ctx, &mut headers);
    enable_response_compression(ctx);
    let mut resp = Response::new(response_stream(ctx.clone(), rx));
    *resp.metadata_mut() = headers;
    resp
}

impl TestService for InteropService {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let mut headers = MetadataMap::new();
        echo_metadata(request.metadata(), request.context(), &mut headers);
        let mut resp = Response::new(Empty {});
        *resp.metadata_mut() = headers;
        Ok(resp)
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let ctx = request.context().clone();
        let mut headers = MetadataMap::new();
        echo_metadata(request.metadata(), &ctx, &mut headers);
        let req = request.get_ref();
        check_expect_compressed(
            req.expect_compressed.as_ref().is_some_and(|b| b.value),
            request.compression(),
            request.message_compressed(),
        )?;
        if let Some(s) = echo_status(req.response_status.as_ref()) {
            return Err(s);
        }
        let payload = make_payload(req.response_type, req.response_size)?;
        if req.response_compressed.as_ref().is_some_and(|b| b.value) {
            enable_response_compression(&ctx);
            ctx.set_message_compression(true);
        } else {
            ctx.set_compression(None);
        }
        let mut resp = Response::new(SimpleResponse {
            payload: if req.response_size > 0 {
                Some(payload)
            } else {
                None
            },
            server_id: if req.fill_server_id {
                "grpc-rust".to_string()
            } else {
                String::new()
            },
            ..Default::default()
        });
        *resp.metadata_mut() = headers;
        Ok(resp)
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let mut headers = MetadataMap::new();
        echo_metadata(request.metadata(), request.context(), &mut headers);
        if let Err(e) = headers.insert("cache-control", "max-age=60, public") {
            tracing::debug!("cannot set cache-control: {e}");
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut resp = Response::new(SimpleResponse {
            payload: Some(Payload {
                r#type: PayloadType::Compressable as i32,
                body: nanos.to_string().into_bytes(),
            }),
            ..Default::default()
        });
        *resp.metadata_mut() = headers;
        Ok(resp)
    }

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<BoxStream<StreamingOutputCallResponse>>, Status> {
        let ctx = request.context().clone();
        let (tx, rx) = mpsc::channel(1);
        let resp = streaming_response(request.metadata(), &ctx, rx);
        let req = request.into_inner();
        tokio::spawn(async move {
            if send_responses(&tx, req.response_type, &req.response_parameters).await {
                if let Some(s) = echo_status(req.response_status.as_ref()) {
                    let _ = tx.send((Err(s), false)).await;
                }
            }
        });
        Ok(resp)
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut headers = MetadataMap::new();
        echo_metadata(request.metadata(), request.context(), &mut headers);
        let encoding = request.compression();
        let mut stream = request.into_inner();
        let mut sum: usize = 0;
        while let Some(m) = stream.message().await? {
            check_expect_compressed(
                m.expect_compressed.as_ref().is_some_and(|b| b.value),
                encoding,
                stream.last_message_compressed(),
            )?;
            sum = sum.saturating_add(payload_len(m.payload.as_ref()));
        }
        let aggregated_payload_size = i32::try_from(sum)
            .map_err(|_| Status::invalid_argument("aggregated payload size overflows int32"))?;
        let mut resp = Response::new(StreamingInputCallResponse {
            aggregated_payload_size,
        });
        *resp.metadata_mut() = headers;
        Ok(resp)
    }

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<BoxStream<StreamingOutputCallResponse>>, Status> {
        let ctx = request.context().clone();
        let (tx, rx) = mpsc::channel(1);
        let resp = streaming_response(request.metadata(), &ctx, rx);
        let mut requests = request.into_inner();
        tokio::spawn(async move {
            loop {
                match requests.message().await {
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send((Err(e), false)).await;
                        return;
                    }
                    Ok(Some(req)) => {
                        if let Some(s) = echo_status(req.response_status.as_ref()) {
                            let _ = tx.send((Err(s), false)).await;
                            return;
                        }
                        if !send_responses(&tx, req.response_type, &req.response_parameters).await {
                            return;
                        }
                    }
                }
            }
        });
        Ok(resp)
    }

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<BoxStream<StreamingOutputCallResponse>>, Status> {
        let ctx = request.context().clone();
        let (tx, rx) = mpsc::channel(1);
        let resp = streaming_response(request.metadata(), &ctx, rx);
        let mut requests = request.into_inner();
        tokio::spawn(async move {
            let mut all = Vec::new();
            loop {
                match requests.message().await {
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send((Err(e), false)).await;
                        return;
                    }
                    Ok(Some(req)) => all.push(req),
                }
            }
            for req in all {
                if let Some(s) = echo_status(req.response_status.as_ref()) {
                    let _ = tx.send((Err(s), false)).await;
                    return;
                }
                if !send_responses(&tx, req.response_type, &req.response_parameters).await {
                    return;
                }
            }
        });
        Ok(resp)
    }
}

/// Loads our TLS configuration (certificate chain and key, PEM) for the runtime's server TLS
/// (rustls, ALPN `h2` required), checking it now so a bad file is reported at startup.
pub fn tls_config(cert_file: &Path, key_file: &Path) -> Result<ServerTlsConfig, String> {
    let cert_pem =
        std::fs::read(cert_file).map_err(|e| format!("reading {}: {e}", cert_file.display()))?;
    let key_pem =
        std::fs::read(key_file).map_err(|e| format!("reading {}: {e}", key_file.display()))?;
    let tls = ServerTlsConfig::new(cert_pem, key_pem);
    tls.build().map_err(|e| {
        format!(
            "TLS certificate {} / key {}: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(tls)
}

/// Serves the interop service on `listener` until `shutdown` resolves, over TLS when `tls`
/// is given, with gRPC-Web on (as `interop_server` runs by default).
pub async fn serve(
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with(listener, tls, None, true, shutdown).await
}

/// [`serve`], with an authorization policy enforced on every call when `authz` is given,
/// and gRPC-Web (any origin) on or off.
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    authz: Option<FileWatcherInterceptor>,
    grpc_web: bool,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    // Health (everything SERVING) and reflection for every service, so tools such as
    // grpcurl, `buf curl` and grpc_cli work against the interop server.
    let health = grpc_runtime::services::health::HealthReporter::new();
    health.set_serving("grpc.testing.TestService");
    let mut builder = Server::builder()
        .max_receive_message_size(MAX_RECV_MESSAGE_SIZE)
        .add_service(TestServiceServer::new(InteropService))
        .add_service(health.service())
        .add_reflection();
    if grpc_web {
        builder = builder.grpc_web(grpc_runtime::server::GrpcWebConfig::new());
    }
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    if let Some(authz) = authz {
        builder = builder.add_interceptor(authz);
    }
    builder
        .serve_with_incoming_shutdown(listener, shutdown)
        .await
}

/// Binds `cfg.addr` and serves until `shutdown` resolves.
pub async fn run(
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let mut tls = if cfg.use_tls {
        Some(tls_config(&cfg.cert_file, &cfg.key_file)?)
    } else {
        None
    };
    if let Some(ca_file) = &cfg.client_ca_file {
        let ca =
            std::fs::read(ca_file).map_err(|e| format!("reading {}: {e}", ca_file.display()))?;
        let t = tls
            .take()
            .ok_or("--client_ca_file needs --use_tls")?
            .client_ca_pem(ca);
        t.build()
            .map_err(|e| format!("--client_ca_file {}: {e}", ca_file.display()))?;
        tls = Some(t);
    }
    let authz = match &cfg.authz_policy {
        None => None,
        Some(p) => Some(
            FileWatcherInterceptor::new(p, AUTHZ_REFRESH)
                .map_err(|e| format!("--authz_policy: {e}"))?,
        ),
    };
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| format!("binding {}: {e}", cfg.addr))?;
    serve_with(listener, tls, authz, cfg.grpc_web, shutdown)
        .await
        .map_err(|e| format!("server failed: {e}"))
}
