//! The interop client: its flags ([`ClientConfig`]), channel construction (plaintext or TLS
//! with a test CA and server-name override), and every test case of grpc's
//! interop-test-descriptions.md that issue 5 lists ([`CASES`], [`run_case`]).
//!
//! Each case asserts exactly what the description says and returns `Err(reason)` on the
//! first mismatch.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_util::StreamExt;
use grpc_runtime::client::credentials::{allow_insecure, MetadataCredentials};
use grpc_runtime::client::{
    interceptor::InterceptFuture, CallInfo, ClientCallContext, Interceptor,
};
use grpc_runtime::transport::ClientTlsConfig;
use grpc_runtime::{
    Channel, Code, CompressionEncoding, MetadataMap, OutboundMessage, OutboundStream, Request,
    Status, Streaming,
};
use tokio::sync::mpsc;

use crate::flags::Flags;
use crate::pb::test_service_client::TestServiceClient;
use crate::pb::unimplemented_service_client::UnimplementedServiceClient;
use crate::pb::{
    BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest,
    SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest, StreamingOutputCallResponse,
};

/// Every case `interop_client` implements, in the order of the interop descriptions.
pub const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "very_large_request",
    "concurrent_large_unary",
    "rpc_soak",
    "channel_soak",
];

/// Flags `interop_client` accepts.
pub const CLIENT_FLAGS: &[&str] = &[
    "server_uri",
    "server_host",
    "server_port",
    "server_host_override",
    "service_config_json",
    "test_case",
    "use_tls",
    "use_test_ca",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "bearer_token",
    "allow_insecure_call_credentials",
    "additional_metadata",
    "soak_iterations",
    "soak_max_failures",
    "soak_per_iteration_max_acceptable_latency_ms",
    "soak_overall_timeout_seconds",
    "soak_min_time_ms_between_rpcs",
    "soak_request_size",
    "soak_response_size",
    "concurrent_large_unary_calls",
    "concurrent_large_unary_parallelism",
    "overall_timeout_seconds",
    // Accepted for command-line compatibility with other implementations' runners; unused.
    "default_service_account",
    "oauth_scope",
    "service_account_key_file",
    "use_alts",
    "custom_credentials_type",
];

/// Boolean flags of `interop_client` (may be given bare: `--use_tls`).
pub const CLIENT_BOOL_FLAGS: &[&str] = &[
    "use_tls",
    "use_test_ca",
    "use_alts",
    "allow_insecure_call_credentials",
];

/// The directory holding our test certificates (`ca.pem`, `server1.pem`, `server1.key`):
/// `$GRPC_RUST_CERTS_DIR` if set, else `conformance/certs` of this source tree.
pub fn certs_dir() -> PathBuf {
    match std::env::var_os("GRPC_RUST_CERTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs"),
    }
}

/// Where a case's log lines go (soak iterations, notes).
pub type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Soak test settings (`--soak_*` flags).
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// RPCs to perform (`--soak_iterations`, default 10).
    pub iterations: u32,
    /// Failures tolerated, inclusive (`--soak_max_failures`, default 0).
    pub max_failures: u32,
    /// Latency above which an RPC counts as failed (default 1000 ms).
    pub max_latency: Duration,
    /// Give up after this long (default iterations x max latency).
    pub overall_timeout: Duration,
    /// Minimum time between RPC starts (default 0).
    pub min_time_between_rpcs: Duration,
    /// Request payload bytes of each soak RPC (`--soak_request_size`, default 271828, as
    /// large_unary).
    pub request_size: usize,
    /// Response payload bytes each soak RPC asks for and checks (`--soak_response_size`,
    /// default 314159, as large_unary).
    pub response_size: usize,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            iterations: 10,
            max_failures: 0,
            max_latency: Duration::from_millis(1000),
            overall_timeout: Duration::from_millis(10_000),
            min_time_between_rpcs: Duration::ZERO,
            request_size: LARGE_REQUEST_SIZE,
            response_size: LARGE_RESPONSE_SIZE,
        }
    }
}

/// large_unary's request payload size (also the default `--soak_request_size`).
pub const LARGE_REQUEST_SIZE: usize = 271828;
/// large_unary's response payload size (also the default `--soak_response_size`).
pub const LARGE_RESPONSE_SIZE: usize = 314159;

/// Everything the client cases need: where to connect and how.
#[derive(Clone)]
pub struct ClientConfig {
    /// `--server_uri`: a channel target in any form of grpc's naming doc (`dns:///host:port`,
    /// `ipv4:a:p,b:p`, `ipv6:[a]:p`, `unix:path`, `unix-abstract:name`, `host:port`, ...);
    /// when set, `server_host` / `server_port` are ignored.
    pub server_uri: Option<String>,
    /// `--server_host` (default `localhost`).
    pub server_host: String,
    /// `--server_port`.
    pub server_port: u16,
    /// `--service_config_json`: the channel's default service config (gRFC A2 JSON).
    pub service_config_json: Option<String>,
    /// `--server_host_override`: TLS name to verify and `:authority` to send.
    pub server_host_override: Option<String>,
    /// `--use_tls`.
    pub use_tls: bool,
    /// `--use_test_ca`: trust the test CA (ours unless `--ca_file`).
    pub use_test_ca: bool,
    /// `--ca_file`: PEM of the CA to trust.
    pub ca_file: Option<PathBuf>,
    /// `--client_cert_file` and `--client_key_file`: PEM certificate chain and key presented
    /// for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// `--bearer_token`: sent as call credentials (`authorization: Bearer ...`) on every call.
    pub bearer_token: Option<String>,
    /// `--allow_insecure_call_credentials`: send `--bearer_token` over plaintext too.
    pub allow_insecure_call_credentials: bool,
    /// `--additional_metadata`: `key:value;key2:value2` sent on every call.
    pub additional_metadata: Vec<(String, String)>,
    /// Soak settings.
    pub soak: SoakConfig,
    /// Calls made by `concurrent_large_unary` (default 1000).
    pub concurrent_calls: usize,
    /// How many of them are in flight at once (default 100).
    pub concurrent_parallelism: usize,
    /// Log sink (default: `tracing::info!`).
    pub log: LogFn,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server_uri", &self.server_uri)
            .field("server_host", &self.server_host)
            .field("server_port", &self.server_port)
            .field("service_config_json", &self.service_config_json)
            .field("server_host_override", &self.server_host_override)
            .field("use_tls", &self.use_tls)
            .field("use_test_ca", &self.use_test_ca)
            .field("ca_file", &self.ca_file)
            .field("client_identity", &self.client_identity)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "(set)"))
            .field(
                "allow_insecure_call_credentials",
                &self.allow_insecure_call_credentials,
            )
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A plaintext configuration for `host:port` with default settings.
    pub fn new(server_host: impl Into<String>, server_port: u16) -> ClientConfig {
        ClientConfig {
            server_uri: None,
            server_host: server_host.into(),
            server_port,
            service_config_json: None,
            server_host_override: None,
            use_tls: false,
            use_test_ca: false,
            ca_file: None,
            client_identity: None,
            bearer_token: None,
            allow_insecure_call_credentials: false,
            additional_metadata: Vec::new(),
            soak: SoakConfig::default(),
            concurrent_calls: 1000,
            concurrent_parallelism: 100,
            log: Arc::new(|line: &str| tracing::info!("{line}")),
        }
    }

    /// Builds the configuration from parsed flags.
    pub fn from_flags(flags: &Flags) -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new(
            flags.string("server_host", "localhost"),
            flags.num("server_port", 10000u16)?,
        );
        // As grpc-go: an empty value is the same as no flag.
        c.server_uri = flags
            .get("server_uri")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        c.service_config_json = flags
            .get("service_config_json")
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string);
        c.server_host_override = flags
            .get("server_host_override")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        c.use_tls = flags.bool("use_tls", false)?;
        c.use_test_ca = flags.bool("use_test_ca", false)?;
        c.ca_file = flags
            .get("ca_file")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let cert = flags
            .get("client_cert_file")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let key = flags
            .get("client_key_file")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        c.client_identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("--client_cert_file and --client_key_file go together".into()),
        };
        c.bearer_token = flags
            .get("bearer_token")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        c.allow_insecure_call_credentials = flags.bool("allow_insecure_call_credentials", false)?;
        if let Some(md) = flags.get("additional_metadata") {
            c.additional_metadata = parse_additional_metadata(md)?;
        }
        let iterations = flags.num("soak_iterations", 10u32)?;
        let max_latency_ms = flags.num("soak_per_iteration_max_acceptable_latency_ms", 1000u64)?;
        let overall_s = flags.num("soak_overall_timeout_seconds", 0u64)?;
        c.soak = SoakConfig {
            iterations,
            max_failures: flags.num("soak_max_failures", 0u32)?,
            max_latency: Duration::from_millis(max_latency_ms),
            overall_timeout: if overall_s > 0 {
                Duration::from_secs(overall_s)
            } else {
                Duration::from_millis(max_latency_ms.saturating_mul(u64::from(iterations)))
            },
            // Capped at a year: Instant + a u64::MAX-ms duration would panic.
            min_time_between_rpcs: Duration::from_millis(
                flags.num("soak_min_time_ms_between_rpcs", 0u64)?,
            )
            .min(Duration::from_secs(365 * 86_400)),
            request_size: payload_size(flags, "soak_request_size", LARGE_REQUEST_SIZE)?,
            response_size: payload_size(flags, "soak_response_size", LARGE_RESPONSE_SIZE)?,
        };
        c.concurrent_calls = flags.num("concurrent_large_unary_calls", 1000usize)?;
        c.concurrent_parallelism = flags
            .num("concurrent_large_unary_parallelism", 100usize)?
            .max(1);
        Ok(c)
    }

    /// The channel target: `--server_uri` as given, else `http(s)://server_host:server_port`.
    pub fn target(&self) -> String {
        if let Some(uri) = &self.server_uri {
            return uri.clone();
        }
        let host = if self.server_host.contains(':') && !self.server_host.starts_with('[') {
            format!("[{}]", self.server_host)
        } else {
            self.server_host.clone()
        };
        let scheme = if self.use_tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.server_port)
    }

    /// Creates a new channel (lazily connecting) with the call recorder attached.
    pub fn channel(&self, recorder: &Recorder) -> Result<Channel, String> {
        let mut ep = Channel::builder(self.target())
            .connect_timeout(Duration::from_secs(10))
            // very_large_request sends 10 MiB; responses stay within the 4 MiB default
            // except for what the cases ask for.
            .max_decoding_message_size(16 * 1024 * 1024)
            .interceptor(recorder.clone());
        if let Some(o) = &self.server_host_override {
            ep = ep.authority(o.clone());
        }
        if let Some(json) = &self.service_config_json {
            // As grpc-go: a given config is the one in force, whatever a resolver says.
            ep = ep
                .default_service_config(json.clone())
                .ignore_resolver_service_config(true);
        }
        if let Some(token) = &self.bearer_token {
            let creds = MetadataCredentials::bearer_token(token)
                .map_err(|e| format!("--bearer_token: {}", e.message()))?;
            // Refused on plaintext (the call fails UNAUTHENTICATED before it is sent)
            // unless explicitly allowed.
            ep = if self.allow_insecure_call_credentials {
                ep.call_credentials(allow_insecure(creds))
            } else {
                ep.call_credentials(creds)
            };
        }
        if self.client_identity.is_some() && !self.use_tls {
            return Err("--client_cert_file/--client_key_file need --use_tls".into());
        }
        if self.use_tls {
            let ca_path = match (&self.ca_file, self.use_test_ca) {
                (Some(p), _) => Some(p.clone()),
                (None, true) => Some(certs_dir().join("ca.pem")),
                // As grpc-go: the system's CA certificates.
                (None, false) => None,
            };
            let mut tls = match ca_path {
                Some(path) => {
                    let pem = std::fs::read(&path)
                        .map_err(|e| format!("reading CA file {}: {e}", path.display()))?;
                    ClientTlsConfig::new().ca_certificate_pem(pem)
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            if let Some((cert, key)) = &self.client_identity {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
                };
                tls = tls.identity_pem(read(cert)?, read(key)?);
            }
            // The name to verify: the override, else --server_host; with --server_uri and
            // no override, the channel's authority (the target's host) as grpc-go does.
            let name = match (&self.server_host_override, &self.server_uri) {
                (Some(o), _) => Some(o.clone()),
                (None, None) => Some(self.server_host.clone()),
                (None, Some(_)) => None,
            };
            if let Some(name) = name {
                tls = tls.domain_name(name);
            }
            ep = ep.tls_config(tls);
        }
        ep.connect_lazy()
            .map_err(|e| format!("building channel to {}: {e}", self.target()))
    }

    /// Checks that a channel can be built from these settings (target form, service
    /// config, TLS files) without connecting, so a bad `--server_uri` or
    /// `--service_config_json` is reported before any case runs.
    pub fn validate(&self) -> Result<(), String> {
        self.channel(&Recorder::default()).map(drop)
    }
}

/// A payload size flag: a non-negative number that fits the proto's int32 size fields.
fn payload_size(flags: &Flags, name: &str, default: usize) -> Result<usize, String> {
    let n = flags.num(name, default)?;
    if n > i32::MAX as usize {
        return Err(format!("flag --{name}: {n} is larger than {}", i32::MAX));
    }
    Ok(n)
}

/// Parses `--additional_metadata`: `key:value` pairs separated by `;`.
pub fn parse_additional_metadata(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| format!("--additional_metadata: {part:?} is not key:value"))?;
        out.push((k.trim().to_ascii_lowercase(), v.to_string()));
    }
    Ok(out)
}

/// A client interceptor that adds `--additional_metadata` to every call and records the
/// final status the runtime reports for each call and the server it went to (the cancel
/// cases read the status: a cancelled call has no other place its status shows up; the
/// soak cases log the server of a failed call).
#[derive(Clone, Default)]
pub struct Recorder {
    metadata: Arc<Vec<(String, String)>>,
    finished: Arc<Mutex<Vec<FinishedCall>>>,
}

/// One finished call as the [`Recorder`] saw it.
#[derive(Clone, Debug)]
pub struct FinishedCall {
    /// The method path.
    pub path: &'static str,
    /// The call's final status.
    pub status: Status,
    /// The server's address (`CallInfo::peer`): `None` when no connection was reached, or
    /// over a unix socket.
    pub peer: Option<SocketAddr>,
}

impl Recorder {
    /// A recorder adding `metadata` to every call.
    pub fn new(metadata: Vec<(String, String)>) -> Recorder {
        Recorder {
            metadata: Arc::new(metadata),
            finished: Arc::default(),
        }
    }

    /// The final statuses recorded for calls to `path`, oldest first.
    pub fn statuses(&self, path: &str) -> Vec<Status> {
        self.calls(path).into_iter().map(|c| c.status).collect()
    }

    /// The calls to `path` that finished, oldest first.
    pub fn calls(&self, path: &str) -> Vec<FinishedCall> {
        match self.finished.lock() {
            Ok(g) => g.iter().filter(|c| c.path == path).cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// How many calls (to any method) have finished so far.
    pub fn finished_count(&self) -> usize {
        self.finished.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// The first call to `path` among those that finished after the first `skip`.
    pub fn call_after(&self, skip: usize, path: &str) -> Option<FinishedCall> {
        self.finished
            .lock()
            .ok()?
            .iter()
            .skip(skip)
            .find(|c| c.path == path)
            .cloned()
    }

    /// Waits (up to `timeout`) for a call to `path` to finish and returns its status.
    pub async fn wait_status(&self, path: &str, timeout: Duration) -> Option<Status> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.statuses(path).pop() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Interceptor for Recorder {
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        let mut r = Ok(());
        for (k, v) in self.metadata.iter() {
            let res = if k.ends_with("-bin") {
                call.metadata_mut()
                    .append_bin(k, bytes::Bytes::from(v.clone().into_bytes()))
            } else {
                call.metadata_mut().append(k, v.clone())
            };
            if let Err(e) = res {
                r = Err(Status::invalid_argument(format!(
                    "--additional_metadata {k:?}: {e}"
                )));
                break;
            }
        }
        Box::pin(std::future::ready(r))
    }

    fn finish_call(&self, call: &CallInfo, status: &Status) {
        if let Ok(mut g) = self.finished.lock() {
            g.push(FinishedCall {
                path: call.path(),
                status: status.clone(),
                peer: call.peer(),
            });
        }
    }
}

/// A case failure: the reason, readable.
pub type CaseResult = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

fn st(context: &str, s: Status) -> String {
    format!(
        "{context}: call failed with {:?}: {:?}",
        s.code(),
        s.message()
    )
}

fn zeros(n: usize) -> Vec<u8> {
    vec![0u8; n]
}

fn payload(n: usize) -> Option<Payload> {
    Some(Payload {
        r#type: PayloadType::Compressable as i32,
        body: zeros(n),
    })
}

fn bool_value(v: bool) -> Option<BoolValue> {
    Some(BoolValue { value: v })
}

fn large_request() -> SimpleRequest {
    soak_request(LARGE_REQUEST_SIZE, LARGE_RESPONSE_SIZE)
}

/// A large_unary-style request: `request_size` zero bytes, asking for `response_size`.
/// Both sizes fit an `i32` (checked when the flags are parsed).
fn soak_request(request_size: usize, response_size: usize) -> SimpleRequest {
    SimpleRequest {
        response_type: PayloadType::Compressable as i32,
        response_size: i32::try_from(response_size).unwrap_or(i32::MAX),
        payload: payload(request_size),
        ..Default::default()
    }
}

fn check_payload(what: &str, p: Option<&Payload>, size: usize) -> CaseResult {
    let body: &[u8] = p.map(|p| p.body.as_slice()).unwrap_or(&[]);
    ensure!(
        body.len() == size,
        "{what}: response payload is {} bytes, expected {size}",
        body.len()
    );
    ensure!(
        body.iter().all(|b| *b == 0),
        "{what}: response payload is not all zeros"
    );
    Ok(())
}

fn check_simple(what: &str, r: &SimpleResponse, size: usize) -> CaseResult {
    check_payload(what, r.payload.as_ref(), size)
}

fn expect_code<T>(what: &str, r: Result<T, Status>, code: Code) -> CaseResult {
    match r {
        Ok(_) => Err(format!("{what}: expected status {code:?}, but the call succeeded (the server ignored the request's expectation)")),
        Err(s) => {
            ensure!(s.code() == code, "{what}: expected status {code:?}, got {:?}: {:?}", s.code(), s.message());
            Ok(())
        }
    }
}

/// A request stream fed through a channel: the sender controls when messages go out and
/// dropping it half-closes.
fn feed<T: Send + 'static>() -> (
    mpsc::UnboundedSender<T>,
    impl Stream<Item = T> + Send + 'static,
) {
    let (tx, rx) = mpsc::unbounded_channel::<T>();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    (tx, stream)
}

/// Runs the case named `case` (or every case for `all`) against the configured server.
pub async fn run_case(cfg: &ClientConfig, case: &str) -> CaseResult {
    if case == "all" {
        for c in CASES {
            (cfg.log)(&format!("running {c}"));
            Box::pin(run_case(cfg, c))
                .await
                .map_err(|e| format!("{c}: {e}"))?;
        }
        return Ok(());
    }
    let recorder = Recorder::new(cfg.additional_metadata.clone());
    let channel = cfg.channel(&recorder)?;
    let client = TestServiceClient::new(channel.clone());
    let r = match case {
        "empty_unary" => empty_unary(&client).await,
        "large_unary" => large_unary(&client).await,
        "client_compressed_unary" => client_compressed_unary(&client).await,
        "server_compressed_unary" => server_compressed_unary(&client).await,
        "client_streaming" => client_streaming(&client).await,
        "client_compressed_streaming" => client_compressed_streaming(&client).await,
        "server_streaming" => server_streaming(&client).await,
        "server_compressed_streaming" => server_compressed_streaming(&client).await,
        "ping_pong" => ping_pong(&client).await,
        "empty_stream" => empty_stream(&client).await,
        "custom_metadata" => custom_metadata(&client).await,
        "status_code_and_message" => status_code_and_message(&client).await,
        "special_status_message" => special_status_message(&client).await,
        "unimplemented_method" => unimplemented_method(&client).await,
        "unimplemented_service" => unimplemented_service(&channel).await,
        "cancel_after_begin" => cancel_after_begin(&client).await,
        "cancel_after_first_response" => cancel_after_first_response(&client).await,
        "timeout_on_sleeping_server" => timeout_on_sleeping_server(&client).await,
        "very_large_request" => very_large_request(&client).await,
        "concurrent_large_unary" => concurrent_large_unary(cfg, &client).await,
        "rpc_soak" => soak(cfg, Some((&client, &recorder))).await,
        "channel_soak" => soak(cfg, None).await,
        other => Err(format!(
            "unknown test case {other:?}; known: all, {}",
            CASES.join(", ")
        )),
    };
    channel.shutdown();
    r
}

async fn empty_unary(client: &TestServiceClient) -> CaseResult {
    let r = client
        .empty_call(Empty {})
        .await
        .map_err(|s| st("EmptyCall", s))?;
    let _: &Empty = r.get_ref();
    Ok(())
}

async fn large_unary(client: &TestServiceClient) -> CaseResult {
    let r = client
        .unary_call(large_request())
        .await
        .map_err(|s| st("UnaryCall", s))?;
    check_simple("UnaryCall", r.get_ref(), 314159)
}

async fn client_compressed_unary(client: &TestServiceClient) -> CaseResult {
    // No warm-up call: before the server advertised its encodings the channel assumes it
    // accepts every encoding we implement (as grpc clients do), so the first call
    // already goes out compressed.
    let mut probe = large_request();
    probe.expect_compressed = bool_value(true);
    let mut req = Request::new(probe.clone());
    req.set_compression(None);
    expect_code(
        "feature probe (uncompressed, expect_compressed=true)",
        client.unary_call(req).await,
        Code::InvalidArgument,
    )?;

    let mut req = Request::new(probe);
    req.set_compression(Some(CompressionEncoding::Gzip));
    let r = client
        .unary_call(req)
        .await
        .map_err(|s| st("compressed UnaryCall", s))?;
    check_simple("compressed UnaryCall", r.get_ref(), 314159)?;

    let mut plain = large_request();
    plain.expect_compressed = bool_value(false);
    let mut req = Request::new(plain);
    req.set_compression(None);
    let r = client
        .unary_call(req)
        .await
        .map_err(|s| st("uncompressed UnaryCall", s))?;
    check_simple("uncompressed UnaryCall", r.get_ref(), 314159)
}

async fn server_compressed_unary(client: &TestServiceClient) -> CaseResult {
    for compressed in [true, false] {
        let mut req = large_request();
        req.response_compressed = bool_value(compressed);
        let what = format!("UnaryCall response_compressed={compressed}");
        let r = client.unary_call(req).await.map_err(|s| st(&what, s))?;
        let flag = r.message_compressed();
        ensure!(
            flag == Some(compressed),
            "{what}: the response's compressed flag is {flag:?}, expected {compressed}"
        );
        check_simple(&what, r.get_ref(), 314159)?;
    }
    Ok(())
}

fn input(size: usize, expect_compressed: Option<bool>) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: payload(size),
        expect_compressed: expect_compressed.and_then(bool_value),
    }
}

async fn client_streaming(client: &TestServiceClient) -> CaseResult {
    let msgs: Vec<_> = [27182, 8, 1828, 45904]
        .into_iter()
        .map(|n| input(n, None))
        .collect();
    let r = client
        .streaming_input_call(futures_util::stream::iter(msgs))
        .await
        .map_err(|s| st("StreamingInputCall", s))?;
    let got = r.get_ref().aggregated_payload_size;
    ensure!(
        got == 74922,
        "aggregated_payload_size is {got}, expected 74922"
    );
    Ok(())
}

async fn client_compressed_streaming(client: &TestServiceClient) -> CaseResult {
    let mut req = Request::new(futures_util::stream::iter(vec![input(27182, Some(true))]));
    req.set_compression(None);
    expect_code(
        "feature probe (uncompressed, expect_compressed=true)",
        client.streaming_input_call(req).await,
        Code::InvalidArgument,
    )?;
    // One gzip call: the first message compressed, the second sent with flag 0.
    let msgs = vec![
        OutboundMessage::new(input(27182, Some(true))),
        OutboundMessage::new(input(45904, Some(false))).compress(false),
    ];
    let mut req = Request::new(OutboundStream::new(futures_util::stream::iter(msgs)));
    req.set_compression(Some(CompressionEncoding::Gzip));
    let r = client.streaming_input_call(req).await.map_err(|s| {
        st(
            "StreamingInputCall (compressed, then uncompressed message)",
            s,
        )
    })?;
    let resp: &StreamingInputCallResponse = r.get_ref();
    let got = resp.aggregated_payload_size;
    ensure!(
        got == 73086,
        "aggregated_payload_size is {got}, expected 73086"
    );
    Ok(())
}

fn params(size: i32, compressed: Option<bool>) -> ResponseParameters {
    ResponseParameters {
        size,
        interval_us: 0,
        compressed: compressed.and_then(bool_value),
    }
}

async fn collect(
    what: &str,
    mut s: Streaming<StreamingOutputCallResponse>,
) -> Result<Vec<StreamingOutputCallResponse>, String> {
    let mut out = Vec::new();
    while let Some(m) = s.message().await.map_err(|e| st(what, e))? {
        out.push(m);
    }
    Ok(out)
}

fn check_sizes(what: &str, got: &[StreamingOutputCallResponse], sizes: &[usize]) -> CaseResult {
    ensure!(
        got.len() == sizes.len(),
        "{what}: got {} responses, expected exactly {}",
        got.len(),
        sizes.len()
    );
    for (i, (m, n)) in got.iter().zip(sizes).enumerate() {
        check_payload(&format!("{what} response #{i}"), m.payload.as_ref(), *n)?;
    }
    Ok(())
}

async fn server_streaming(client: &TestServiceClient) -> CaseResult {
    let sizes = [31415, 9, 2653, 58979];
    let req = StreamingOutputCallRequest {
        response_type: PayloadType::Compressable as i32,
        response_parameters: sizes.iter().map(|n| params(*n, None)).collect(),
        ..Default::default()
    };
    let r = client
        .streaming_output_call(req)
        .await
        .map_err(|s| st("StreamingOutputCall", s))?;
    let got = collect("StreamingOutputCall", r.into_inner()).await?;
    check_sizes("StreamingOutputCall", &got, &[31415, 9, 2653, 58979])
}

async fn server_compressed_streaming(client: &TestServiceClient) -> CaseResult {
    let req = StreamingOutputCallRequest {
        response_type: PayloadType::Compressable as i32,
        response_parameters: vec![params(31415, Some(true)), params(92653, Some(false))],
        ..Default::default()
    };
    let r = client
        .streaming_output_call(req)
        .await
        .map_err(|s| st("StreamingOutputCall", s))?;
    let mut stream = r.into_inner();
    let mut got = Vec::new();
    let mut flags = Vec::new();
    while let Some(m) = stream
        .message()
        .await
        .map_err(|e| st("StreamingOutputCall", e))?
    {
        got.push(m);
        flags.push(stream.last_message_compressed().unwrap_or(false));
    }
    check_sizes("StreamingOutputCall", &got, &[31415, 92653])?;
    ensure!(
        flags == [true, false],
        "StreamingOutputCall: response compressed flags are {flags:?}, expected [true, false]"
    );
    Ok(())
}

fn duplex_req(size: i32, body: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_type: PayloadType::Compressable as i32,
        response_parameters: vec![params(size, None)],
        payload: payload(body),
        ..Default::default()
    }
}

async fn ping_pong(client: &TestServiceClient) -> CaseResult {
    let steps = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)];
    let (tx, stream) = feed();
    tx.send(duplex_req(steps[0].0, steps[0].1))
        .map_err(|_| "request stream closed".to_string())?;
    let r = client
        .full_duplex_call(stream)
        .await
        .map_err(|s| st("FullDuplexCall", s))?;
    let mut responses = r.into_inner();
    for (i, (size, _)) in steps.iter().enumerate() {
        if i > 0 {
            tx.send(duplex_req(*size, steps[i].1))
                .map_err(|_| "request stream closed early".to_string())?;
        }
        let m = responses
            .message()
            .await
            .map_err(|s| st(&format!("FullDuplexCall response #{i}"), s))?
            .ok_or_else(|| format!("FullDuplexCall ended after {i} responses, expected 4"))?;
        check_payload(
            &format!("FullDuplexCall response #{i}"),
            m.payload.as_ref(),
            *size as usize,
        )?;
    }
    drop(tx);
    match responses
        .message()
        .await
        .map_err(|s| st("FullDuplexCall after half-close", s))?
    {
        None => Ok(()),
        Some(_) => Err("FullDuplexCall: more than 4 responses".into()),
    }
}

async fn empty_stream(client: &TestServiceClient) -> CaseResult {
    let r = client
        .full_duplex_call(futures_util::stream::iter(
            Vec::<StreamingOutputCallRequest>::new(),
        ))
        .await
        .map_err(|s| st("FullDuplexCall", s))?;
    let got = collect("FullDuplexCall", r.into_inner()).await?;
    ensure!(
        got.is_empty(),
        "FullDuplexCall: got {} responses, expected none",
        got.len()
    );
    Ok(())
}

const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
const ECHO_INITIAL_VALUE: &str = "test_initial_metadata_value";
const ECHO_TRAILING: &str = "x-grpc-test-echo-trailing-bin";
const ECHO_TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];

fn echo_metadata() -> MetadataMap {
    let mut md = MetadataMap::new();
    // Both keys are valid constants; failure here would be a runtime bug.
    let _ = md.insert(ECHO_INITIAL, ECHO_INITIAL_VALUE);
    let _ = md.insert_bin(
        ECHO_TRAILING,
        bytes::Bytes::from_static(ECHO_TRAILING_VALUE),
    );
    md
}

fn check_echo(what: &str, headers: &MetadataMap, trailers: Option<&MetadataMap>) -> CaseResult {
    let got = headers.get(ECHO_INITIAL);
    ensure!(
        got == Some(ECHO_INITIAL_VALUE),
        "{what}: initial metadata {ECHO_INITIAL} is {got:?}, expected {ECHO_INITIAL_VALUE:?}"
    );
    let got = trailers
        .and_then(|t| t.get_bin(ECHO_TRAILING))
        .map(|b| b.to_vec());
    ensure!(
        got.as_deref() == Some(ECHO_TRAILING_VALUE),
        "{what}: trailing metadata {ECHO_TRAILING} is {got:02x?}, expected [ab, ab, ab]"
    );
    Ok(())
}

async fn custom_metadata(client: &TestServiceClient) -> CaseResult {
    let mut req = Request::new(large_request());
    *req.metadata_mut() = echo_metadata();
    let r = client
        .unary_call(req)
        .await
        .map_err(|s| st("UnaryCall", s))?;
    check_simple("UnaryCall", r.get_ref(), 314159)?;
    check_echo("UnaryCall", r.metadata(), r.trailers())?;

    let mut req = Request::new(futures_util::stream::iter(vec![duplex_req(314159, 271828)]));
    *req.metadata_mut() = echo_metadata();
    let r = client
        .full_duplex_call(req)
        .await
        .map_err(|s| st("FullDuplexCall", s))?;
    let (_, mut stream, _) = r.into_parts();
    // A bidi call returns before the response headers; they are read from the stream.
    let headers = stream
        .headers()
        .await
        .map_err(|s| st("FullDuplexCall", s))?
        .clone();
    let mut got = Vec::new();
    while let Some(m) = stream
        .message()
        .await
        .map_err(|s| st("FullDuplexCall", s))?
    {
        got.push(m);
    }
    check_sizes("FullDuplexCall", &got, &[314159])?;
    check_echo("FullDuplexCall", &headers, stream.trailers())
}

async fn expect_echo_status(client: &TestServiceClient, code: i32, message: &str) -> CaseResult {
    let want = Code::from_i32(code);
    let check = |what: &str, s: Status| -> CaseResult {
        ensure!(
            s.code() == want,
            "{what}: status code {:?}, expected {want:?}",
            s.code()
        );
        ensure!(
            s.message() == message,
            "{what}: status message {:?}, expected {message:?}",
            s.message()
        );
        Ok(())
    };
    let req = SimpleRequest {
        response_status: Some(EchoStatus {
            code,
            message: message.to_string(),
        }),
        ..Default::default()
    };
    match client.unary_call(req).await {
        Ok(_) => return Err("UnaryCall succeeded, expected the echoed status".into()),
        Err(s) => check("UnaryCall", s)?,
    }
    Ok(())
}

async fn status_code_and_message(client: &TestServiceClient) -> CaseResult {
    let message = "test status message";
    expect_echo_status(client, 2, message).await?;
    let req = StreamingOutputCallRequest {
        response_status: Some(EchoStatus {
            code: 2,
            message: message.to_string(),
        }),
        ..Default::default()
    };
    let r = client
        .full_duplex_call(futures_util::stream::iter(vec![req]))
        .await;
    let status = match r {
        Err(s) => s,
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        return Err("FullDuplexCall ended OK, expected the echoed status".into())
                    }
                    Err(e) => break e,
                }
            }
        }
    };
    ensure!(
        status.code() == Code::Unknown,
        "FullDuplexCall: status code {:?}, expected Unknown",
        status.code()
    );
    ensure!(
        status.message() == message,
        "FullDuplexCall: status message {:?}, expected {message:?}",
        status.message()
    );
    Ok(())
}

async fn special_status_message(client: &TestServiceClient) -> CaseResult {
    expect_echo_status(
        client,
        2,
        "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n",
    )
    .await
}

async fn unimplemented_method(client: &TestServiceClient) -> CaseResult {
    expect_code(
        "TestService/UnimplementedCall",
        client.unimplemented_call(Empty {}).await,
        Code::Unimplemented,
    )
}

async fn unimplemented_service(channel: &Channel) -> CaseResult {
    let client = UnimplementedServiceClient::new(channel.clone());
    expect_code(
        "UnimplementedService/UnimplementedCall",
        client.unimplemented_call(Empty {}).await,
        Code::Unimplemented,
    )
}

async fn cancel_after_begin(client: &TestServiceClient) -> CaseResult {
    // Make sure the connection is up so the call's headers go out before we cancel.
    client
        .empty_call(Empty {})
        .await
        .map_err(|s| st("EmptyCall (warm-up)", s))?;
    let (tx, stream) = feed::<StreamingInputCallRequest>();
    let mut req = Request::new(stream);
    let cancel = req.cancel_handle();
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.streaming_input_call(req).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        !call.is_finished(),
        "StreamingInputCall completed before it was cancelled"
    );
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| "the cancelled StreamingInputCall did not end within 5 s".to_string())?
        .map_err(|e| format!("StreamingInputCall task failed: {e}"))?;
    drop(tx);
    match r {
        Ok(r) => Err(format!(
            "cancelled StreamingInputCall succeeded: {:?}",
            r.into_inner()
        )),
        Err(s) => {
            ensure!(
                s.code() == Code::Cancelled,
                "cancelled StreamingInputCall completed with {:?}: {:?}",
                s.code(),
                s.message()
            );
            Ok(())
        }
    }
}

async fn cancel_after_first_response(client: &TestServiceClient) -> CaseResult {
    let (tx, stream) = feed();
    tx.send(duplex_req(31415, 27182))
        .map_err(|_| "request stream closed".to_string())?;
    let r = client
        .full_duplex_call(stream)
        .await
        .map_err(|s| st("FullDuplexCall", s))?;
    let mut responses = r.into_inner();
    let m = responses
        .message()
        .await
        .map_err(|s| st("FullDuplexCall first response", s))?
        .ok_or("FullDuplexCall ended without a response")?;
    check_payload("FullDuplexCall first response", m.payload.as_ref(), 31415)?;
    // Cancel while the call is open: RST_STREAM(CANCEL), and the call's status is CANCELLED.
    responses.cancel();
    drop(tx);
    let s = match responses.message().await {
        Err(s) => s,
        Ok(m) => {
            return Err(format!(
                "FullDuplexCall after cancel: got {m:?}, expected CANCELLED"
            ))
        }
    };
    ensure!(
        s.code() == Code::Cancelled,
        "cancelled FullDuplexCall completed with {:?}: {:?}",
        s.code(),
        s.message()
    );
    let code = responses.status().map(|s| s.code());
    ensure!(
        code == Some(Code::Cancelled),
        "cancelled FullDuplexCall: final status {code:?}, expected Cancelled"
    );
    Ok(())
}

async fn timeout_on_sleeping_server(client: &TestServiceClient) -> CaseResult {
    let (tx, stream) = feed();
    let first = StreamingOutputCallRequest {
        payload: payload(27182),
        ..Default::default()
    };
    tx.send(first)
        .map_err(|_| "request stream closed".to_string())?;
    let mut req = Request::new(stream);
    req.set_timeout(Duration::from_millis(1));
    let status = match client.full_duplex_call(req).await {
        Err(s) => s,
        Ok(r) => {
            let mut s = r.into_inner();
            loop {
                match s.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        return Err("FullDuplexCall ended OK, expected DEADLINE_EXCEEDED".into())
                    }
                    Err(e) => break e,
                }
            }
        }
    };
    drop(tx);
    ensure!(
        status.code() == Code::DeadlineExceeded,
        "FullDuplexCall with a 1ms timeout ended with {:?}: {:?}, expected DeadlineExceeded",
        status.code(),
        status.message()
    );
    Ok(())
}

async fn very_large_request(client: &TestServiceClient) -> CaseResult {
    // As grpc-java's very_large_request: a 10 MiB request, a 10 byte response.
    let req = SimpleRequest {
        response_type: PayloadType::Compressable as i32,
        response_size: 10,
        payload: payload(10 * 1024 * 1024),
        ..Default::default()
    };
    let r = client
        .unary_call(req)
        .await
        .map_err(|s| st("UnaryCall with a 10 MiB request", s))?;
    check_simple("UnaryCall with a 10 MiB request", r.get_ref(), 10)
}

async fn concurrent_large_unary(cfg: &ClientConfig, client: &TestServiceClient) -> CaseResult {
    let total = cfg.concurrent_calls;
    let calls = futures_util::stream::iter(0..total).map(|i| {
        let client = client.clone();
        async move {
            let r = client
                .unary_call(large_request())
                .await
                .map_err(|s| st(&format!("UnaryCall #{i}"), s))?;
            check_simple(&format!("UnaryCall #{i}"), r.get_ref(), 314159)
        }
    });
    let results: Vec<CaseResult> = calls
        .buffer_unordered(cfg.concurrent_parallelism)
        .collect()
        .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    ensure!(
        failures.is_empty(),
        "{} of {total} concurrent large unary calls failed; first: {}",
        failures.len(),
        failures[0]
    );
    Ok(())
}

/// The method path the soak cases call.
const UNARY_CALL_PATH: &str = "/grpc.testing.TestService/UnaryCall";

/// How a soak iteration names the server that answered: its socket address; `unix` for a
/// unix socket (a response without a TCP peer, or a failed call to a `unix:` target);
/// `none` when the call reached no server.
fn peer_label(peer: Option<SocketAddr>, answered: bool, target: &str) -> String {
    match peer {
        Some(a) => a.to_string(),
        None if answered || target.starts_with("unix") => "unix".to_string(),
        None => "none".to_string(),
    }
}

/// One soak RPC on `client`: its outcome, latency and the server it went to. The server of
/// a failed call comes from `recorder` (the channel's interceptor), which saw the call end.
async fn soak_rpc(
    client: &TestServiceClient,
    recorder: &Recorder,
    req: SimpleRequest,
    t0: Instant,
    target: &str,
) -> (Result<SimpleResponse, String>, Duration, String) {
    let before = recorder.finished_count();
    match client.unary_call(req).await {
        Ok(r) => {
            let elapsed = t0.elapsed();
            let peer = peer_label(r.remote_addr(), true, target);
            (Ok(r.into_inner()), elapsed, peer)
        }
        Err(e) => {
            let elapsed = t0.elapsed();
            let peer = recorder
                .call_after(before, UNARY_CALL_PATH)
                .and_then(|c| c.peer);
            (
                Err(st("UnaryCall", e)),
                elapsed,
                peer_label(peer, false, target),
            )
        }
    }
}

/// rpc_soak (`shared` given: one channel for all RPCs) or channel_soak (`None`: a new
/// channel per RPC, its creation counted in the latency, its teardown not). Each RPC is a
/// large_unary with `--soak_request_size` / `--soak_response_size` payloads; each
/// iteration is logged as grpc-go does:
/// `soak iteration: N elapsed_ms: N peer: ADDR server_uri: TARGET succeeded`, or
/// `... failed: REASON`, or `... exceeds max acceptable latency: N`.
async fn soak(cfg: &ClientConfig, shared: Option<(&TestServiceClient, &Recorder)>) -> CaseResult {
    let s = &cfg.soak;
    let target = cfg.target();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = 0u32;
    let mut done = 0u32;
    for i in 0..s.iterations {
        if started.elapsed() >= s.overall_timeout {
            break;
        }
        let t0 = Instant::now();
        let next_allowed = t0 + s.min_time_between_rpcs;
        // No per-RPC deadline (as the description asks), but never past the overall timeout.
        let remaining = s.overall_timeout.saturating_sub(started.elapsed());
        let req = soak_request(s.request_size, s.response_size);
        let attempt = async {
            match shared {
                Some((client, recorder)) => soak_rpc(client, recorder, req, t0, &target).await,
                None => {
                    let recorder = Recorder::new(cfg.additional_metadata.clone());
                    let ch = match cfg.channel(&recorder) {
                        Ok(ch) => ch,
                        Err(e) => return (Err(e), t0.elapsed(), "none".to_string()),
                    };
                    let r = soak_rpc(
                        &TestServiceClient::new(ch.clone()),
                        &recorder,
                        req,
                        t0,
                        &target,
                    )
                    .await;
                    ch.shutdown();
                    r
                }
            }
        };
        let line = |elapsed: Duration, peer: &str, what: &str| {
            format!(
                "soak iteration: {i} elapsed_ms: {} peer: {peer} server_uri: {target} {what}",
                elapsed.as_millis()
            )
        };
        let Ok((result, elapsed, peer)) = tokio::time::timeout(remaining, attempt).await else {
            (cfg.log)(&line(
                t0.elapsed(),
                "none",
                "failed: still running at the overall timeout",
            ));
            break;
        };
        latencies.push(elapsed);
        done += 1;
        match result.and_then(|r| check_simple("UnaryCall", &r, s.response_size)) {
            Err(e) => {
                failures += 1;
                (cfg.log)(&line(elapsed, &peer, &format!("failed: {e}")));
            }
            Ok(()) if elapsed > s.max_latency => {
                failures += 1;
                (cfg.log)(&line(
                    elapsed,
                    &peer,
                    &format!(
                        "exceeds max acceptable latency: {}",
                        s.max_latency.as_millis()
                    ),
                ));
            }
            Ok(()) => (cfg.log)(&line(elapsed, &peer, "succeeded")),
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(next_allowed)).await;
    }
    latencies.sort();
    let pct = |p: usize| match latencies.len() {
        0 => 0.0,
        n => latencies[(n * p / 100).min(n - 1)].as_micros() as f64 / 1000.0,
    };
    (cfg.log)(&format!(
        "(server_uri: {target}) soak test ran: {done} / {} iterations. Total failures: {failures}. \
         Latencies in milliseconds: p50 {:.3} p90 {:.3} max {:.3}",
        s.iterations,
        pct(50),
        pct(90),
        pct(100)
    ));
    ensure!(
        done == s.iterations,
        "only {done} of {} soak iterations completed within the overall timeout of {} s",
        s.iterations,
        s.overall_timeout.as_secs()
    );
    ensure!(
        failures <= s.max_failures,
        "{failures} soak iterations failed, more than the {} allowed",
        s.max_failures
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ClientConfig, String> {
        ClientConfig::from_flags(&Flags::parse(
            args.iter().copied(),
            CLIENT_FLAGS,
            CLIENT_BOOL_FLAGS,
        )?)
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.server_uri, None);
        assert_eq!(c.service_config_json, None);
        assert_eq!(c.target(), "http://localhost:10000");
        let s = &c.soak;
        assert_eq!(s.iterations, 10);
        assert_eq!(s.max_failures, 0);
        assert_eq!(s.max_latency, Duration::from_millis(1000));
        assert_eq!(
            s.overall_timeout,
            Duration::from_secs(10),
            "iterations x per-iteration latency"
        );
        assert_eq!(s.min_time_between_rpcs, Duration::ZERO);
        assert_eq!(s.request_size, 271828);
        assert_eq!(s.response_size, 314159);
        let d = SoakConfig::default();
        assert_eq!(
            (
                d.iterations,
                d.overall_timeout,
                d.request_size,
                d.response_size
            ),
            (10, s.overall_timeout, 271828, 314159)
        );
    }

    #[test]
    fn soak_flags() {
        let c = parse(&[
            "--soak_iterations=7",
            "--soak_max_failures",
            "2",
            "-soak_per_iteration_max_acceptable_latency_ms=300",
            "--soak_min_time_ms_between_rpcs=5",
            "--soak_request_size=0",
            "--soak_response_size",
            "12",
        ])
        .unwrap();
        let s = &c.soak;
        assert_eq!((s.iterations, s.max_failures), (7, 2));
        assert_eq!(s.max_latency, Duration::from_millis(300));
        assert_eq!(
            s.overall_timeout,
            Duration::from_millis(2100),
            "default: 7 x 300 ms"
        );
        assert_eq!(s.min_time_between_rpcs, Duration::from_millis(5));
        assert_eq!((s.request_size, s.response_size), (0, 12));
        let req = soak_request(s.request_size, s.response_size);
        assert_eq!(
            (req.payload.unwrap().body.len(), req.response_size),
            (0, 12)
        );

        let c = parse(&["--soak_iterations=7", "--soak_overall_timeout_seconds=3"]).unwrap();
        assert_eq!(c.soak.overall_timeout, Duration::from_secs(3));

        for bad in [
            "--soak_request_size=-1",
            "--soak_response_size=2147483648",
            "--soak_request_size=big",
            "--soak_iterations=-3",
        ] {
            let err = parse(&[bad]).unwrap_err();
            let name = bad.trim_start_matches('-').split('=').next().unwrap();
            assert!(err.contains(name), "{bad}: {err}");
        }
        assert_eq!(
            parse(&["--soak_response_size=2147483647"])
                .unwrap()
                .soak
                .response_size,
            i32::MAX as usize
        );
    }

    #[test]
    fn server_uri_replaces_host_and_port() {
        let c = parse(&[
            "--server_host=example.com",
            "--server_port=1",
            "--server_uri=ipv4:127.0.0.1:5,127.0.0.1:6",
        ])
        .unwrap();
        assert_eq!(
            c.server_uri.as_deref(),
            Some("ipv4:127.0.0.1:5,127.0.0.1:6")
        );
        assert_eq!(c.target(), "ipv4:127.0.0.1:5,127.0.0.1:6");
        c.validate().unwrap();
        for uri in [
            "dns:///localhost:10000",
            "localhost:10000",
            "ipv6:[::1]:5",
            "unix:/tmp/x.sock",
            "unix:///tmp/x.sock",
            "unix-abstract:name",
            "passthrough:///127.0.0.1:5",
            "http://127.0.0.1:5",
        ] {
            let c = parse(&[&format!("--server_uri={uri}")]).unwrap();
            assert_eq!(c.target(), uri);
            c.validate().unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
        // Empty is the same as absent (grpc-go).
        assert_eq!(
            parse(&["--server_uri="]).unwrap().target(),
            "http://localhost:10000"
        );
        assert_eq!(
            parse(&["--server_host=::1", "--server_port=9"])
                .unwrap()
                .target(),
            "http://[::1]:9"
        );
        assert_eq!(
            parse(&["--server_host=h", "--use_tls"]).unwrap().target(),
            "https://h:10000"
        );
        // Malformed targets are refused when the channel is built.
        for bad in [
            "ipv4:nonsense",
            "ipv6:1.2.3.4:5",
            "ipv4:127.0.0.1:99999",
            "nosuchscheme://x/y",
        ] {
            let err = parse(&[&format!("--server_uri={bad}")])
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.contains("invalid target"), "{bad}: {err}");
        }
    }

    #[test]
    fn server_uri_with_tls() {
        let c = parse(&[
            "--server_uri=ipv4:127.0.0.1:5",
            "--use_tls",
            "--use_test_ca",
            "--server_host_override=foo.test.google.fr",
        ])
        .unwrap();
        c.validate().unwrap();
        let c = parse(&[
            "--server_uri=dns:///foo.test.google.fr:5",
            "--use_tls",
            "--use_test_ca",
        ])
        .unwrap();
        c.validate().unwrap();
        // No CA flag: the system's CA certificates, as grpc-go's interop client.
        parse(&["--server_uri=ipv4:127.0.0.1:5", "--use_tls"])
            .unwrap()
            .validate()
            .unwrap();
        // Half a client identity is a flag error.
        let err = parse(&["--use_tls", "--client_cert_file=c.pem"]).unwrap_err();
        assert!(err.contains("--client_key_file"), "{err}");
    }

    #[test]
    fn service_config_json() {
        let json = r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#;
        let c = parse(&[&format!("--service_config_json={json}")]).unwrap();
        assert_eq!(c.service_config_json.as_deref(), Some(json));
        c.validate().unwrap();
        assert_eq!(
            parse(&["--service_config_json="])
                .unwrap()
                .service_config_json,
            None
        );
        for bad in [
            r#"{"loadBalancingConfig":"#,
            r#"{"loadBalancingConfig":[{"no_such_policy":{}}]}"#,
            "[1]",
        ] {
            let err = parse(&["--service_config_json", bad])
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(
                err.contains("invalid default service config"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn peer_labels() {
        let a: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(peer_label(Some(a), true, "ipv4:127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(
            peer_label(Some(a), false, "ipv4:127.0.0.1:5"),
            "127.0.0.1:5"
        );
        assert_eq!(peer_label(None, true, "dns:///x:1"), "unix");
        assert_eq!(peer_label(None, false, "unix:/tmp/s"), "unix");
        assert_eq!(peer_label(None, false, "dns:///x:1"), "none");
    }
}
