//! Helpers shared by the fuzz targets and the seed generator (`examples/gen_corpus.rs`):
//! the server the `server_conn` target talks to, the run of one connection over an
//! in-memory pipe, and the plugin requests built from the repository's protos.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use grpc_runtime::server::{ServerBuilder, ServerCall, Service};
use grpc_runtime::services::health::HealthReporter;
use grpc_runtime::services::reflection::{Reflection, ReflectionBuilder};
use grpc_runtime::{
    BoxFuture, BoxStream, MethodDescriptor, Request, Response, Server, Status, Streaming,
};
use prost_types::compiler::CodeGeneratorRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame (length 0, type 4, no flags, stream 0).
pub const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// How long (on the paused clock) a connection may take to finish after the client's
/// bytes end. Generous: with the clock paused it costs no wall time, and a connection
/// that outlives it is a hang.
pub const CONNECTION_BOUND: Duration = Duration::from_secs(300);

/// How long (on the paused clock) the client waits after writing before it closes.
pub const QUIET: Duration = Duration::from_secs(5);

/// `grpc.fuzz.Echo`: one method of each kind, messages are `google.protobuf.BytesValue`
/// (prost's `Vec<u8>`).
pub struct Echo;

const ECHO_METHODS: &[MethodDescriptor] = &[
    MethodDescriptor {
        name: "Unary",
        full_path: "/grpc.fuzz.Echo/Unary",
        client_streaming: false,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Expand",
        full_path: "/grpc.fuzz.Echo/Expand",
        client_streaming: false,
        server_streaming: true,
    },
    MethodDescriptor {
        name: "Collect",
        full_path: "/grpc.fuzz.Echo/Collect",
        client_streaming: true,
        server_streaming: false,
    },
    MethodDescriptor {
        name: "Bidi",
        full_path: "/grpc.fuzz.Echo/Bidi",
        client_streaming: true,
        server_streaming: true,
    },
];

impl Service for Echo {
    fn name(&self) -> &'static str {
        "grpc.fuzz.Echo"
    }
    fn methods(&self) -> &'static [MethodDescriptor] {
        ECHO_METHODS
    }
    fn call(&self, method: &str, call: ServerCall) -> BoxFuture<()> {
        match method {
            "Unary" => call.unary(|req: Request<Vec<u8>>| async move {
                let msg = req.into_inner();
                if msg.first() == Some(&b'!') {
                    return Err(Status::with_details_bytes(
                        grpc_runtime::Code::Aborted,
                        "echo: \u{1F600} %",
                        msg,
                    ));
                }
                Ok(Response::new(msg))
            }),
            "Expand" => call.server_streaming(|req: Request<Vec<u8>>| async move {
                let msg = req.into_inner();
                let n = msg.len() % 5;
                let out: BoxStream<Vec<u8>> = Box::pin(futures_util::stream::iter(
                    (0..n).map(move |_| Ok(msg.clone())),
                ));
                Ok(Response::new(out))
            }),
            "Collect" => call.client_streaming(|req: Request<Streaming<Vec<u8>>>| async move {
                let mut stream = req.into_inner();
                let mut all = Vec::new();
                while let Some(msg) = stream.message().await? {
                    all.extend_from_slice(&msg[..msg.len().min(1024)]);
                }
                Ok(Response::new(all))
            }),
            "Bidi" => call.bidi_streaming(|req: Request<Streaming<Vec<u8>>>| async move {
                let stream = req.into_inner();
                let out: BoxStream<Vec<u8>> = Box::pin(stream);
                Ok(Response::new(out))
            }),
            _ => call.unimplemented(),
        }
    }
}

struct Services {
    health: HealthReporter,
    reflection: Reflection,
}

fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let health = HealthReporter::new();
        health.set_serving("grpc.fuzz.Echo");
        health.set_not_serving("grpc.fuzz.Down");
        let reflection = ReflectionBuilder::new()
            .register_encoded_file_descriptor_set(
                grpc_runtime::services::health::FILE_DESCRIPTOR_SET,
            )
            .build()
            .expect("built-in descriptors index");
        Services { health, reflection }
    })
}

/// The server every `server_conn` input talks to: default settings (4 MiB receive limit,
/// all encodings), health, reflection (v1 and v1alpha) and the echo service.
pub fn server() -> ServerBuilder {
    let s = services();
    Server::builder()
        .add_service(s.health.service())
        .add_service(s.reflection.v1())
        .add_service(s.reflection.v1alpha())
        .add_service(Echo)
}

/// Serves one connection whose client side is `client`'s other end, until the server
/// drops it. The server's future runs in a spawned task; abort it to stop serving.
pub fn spawn_server(server_io: DuplexStream) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let incoming =
        futures_util::stream::iter([Ok::<_, std::io::Error>((server_io, None::<SocketAddr>))])
            .chain(futures_util::stream::pending());
    tokio::spawn(server().serve_with_incoming_stream(incoming, std::future::pending()))
}

/// The bytes a fuzz input sends: as is when it starts like the HTTP/2 preface, else
/// behind a valid preface and an empty SETTINGS frame (so random bytes land in frame
/// parsing, not in the preface check).
pub fn client_bytes(input: &[u8]) -> Vec<u8> {
    if input.starts_with(&PREFACE[..4]) {
        input.to_vec()
    } else {
        [PREFACE, EMPTY_SETTINGS, input].concat()
    }
}

/// Feeds `input` (see [`client_bytes`]) to a fresh server connection over an in-memory
/// pipe, waits [`QUIET`], ends the client's writing, reads everything the server writes
/// back until it closes, and returns that. Runs on a paused clock: timers fire as soon as nothing else
/// can run. Panics if the connection is still open [`CONNECTION_BOUND`] later.
pub fn run_connection(input: &[u8]) -> Vec<u8> {
    let bytes = client_bytes(input);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (client, server_io) = tokio::io::duplex(64 * 1024);
        let server = spawn_server(server_io);
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async move {
            // The server may close first: a failed write is an outcome, not a failure.
            let _ = wr.write_all(&bytes).await;
            // Let the calls run to completion before the client's side closes (HTTP/2
            // treats EOF as the end of the connection, so closing at once would cut every
            // call short). On the paused clock the sleep ends only once nothing else can
            // run, and timers due before it (short grpc-timeouts) fire first.
            tokio::time::sleep(QUIET).await;
            let _ = wr.shutdown().await;
        };
        let read = async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let ((), out) =
            tokio::time::timeout(CONNECTION_BOUND, futures_util::future::join(write, read))
                .await
                .expect("the server kept the connection open after the client's bytes ended");
        server.abort();
        out
    })
}

/// The repository root (this crate lives in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Well-formed `CodeGeneratorRequest`s built from the repository's protos (parsed in pure
/// Rust, as `protoc` would hand them to the plugin), with a few option strings.
pub fn plugin_requests() -> &'static [CodeGeneratorRequest] {
    static REQUESTS: OnceLock<Vec<CodeGeneratorRequest>> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        let root = repo_root();
        let sets: &[(&str, &[&str], &str)] = &[
            ("protos", &["examples/helloworld/helloworld.proto"], ""),
            (
                "protos",
                &["examples/routeguide/route_guide.proto"],
                "client=false",
            ),
            (
                "protos",
                &["grpc/health/v1/health.proto"],
                "include_file=mod.rs",
            ),
            (
                "protos",
                &[
                    "grpc/testing/test.proto",
                    "grpc/testing/messages.proto",
                    "grpc/testing/empty.proto",
                ],
                "server=false,runtime_crate=::rt",
            ),
            (
                "protos",
                &["google/rpc/status.proto", "google/rpc/error_details.proto"],
                "messages=false,extern_path=.google.protobuf=::prost_types",
            ),
            (
                "protoc-gen-rust-grpc/tests/protos",
                &["edge/edge.proto"],
                "",
            ),
            (
                "protoc-gen-rust-grpc/tests/protos",
                &["edge/legacy.proto"],
                "include_file=mod.rs",
            ),
            (
                "protoc-gen-rust-grpc/tests/protos",
                &["edge/comments.proto"],
                "",
            ),
            (
                "protoc-gen-rust-grpc/tests/protos",
                &["edge/nopackage.proto", "edge/common.proto"],
                "",
            ),
        ];
        sets.iter()
            .map(|(include, inputs, parameter)| {
                let include = root.join(include);
                let parsed = protobuf_parse::Parser::new()
                    .pure()
                    .include(&include)
                    .inputs(inputs.iter().map(|i| include.join(i)))
                    .parse_and_typecheck()
                    .unwrap_or_else(|e| panic!("parsing {inputs:?}: {e}"));
                let proto_file = parsed
                    .file_descriptors
                    .iter()
                    .map(|f| {
                        let bytes =
                            protobuf::Message::write_to_bytes(f).expect("descriptor encodes");
                        <prost_types::FileDescriptorProto as prost::Message>::decode(
                            bytes.as_slice(),
                        )
                        .expect("descriptor decodes")
                    })
                    .collect();
                CodeGeneratorRequest {
                    file_to_generate: inputs.iter().map(|s| s.to_string()).collect(),
                    parameter: Some(parameter.to_string()),
                    proto_file,
                    ..Default::default()
                }
            })
            .collect()
    })
}

/// Shared ownership for the seed generator's recorder.
pub type Log = Arc<std::sync::Mutex<Vec<u8>>>;

/// For the plugin targets: panics raised inside prost-build are expected on odd
/// descriptors, and the plugin turns them into an error response ("prost-build failed on
/// these descriptors"), so they are not printed nor (as libfuzzer-sys's own hook would)
/// turned into an abort. Every other panic goes to the hook libfuzzer-sys installed, which
/// reports it as a crash. Whether a contained panic came from our code instead is checked
/// on the response by [`check_plugin_response`].
pub fn contain_prost_build_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_prost_build = info
                .location()
                .is_some_and(|l| l.file().contains("/prost-build-"));
            if !in_prost_build {
                previous(info);
            }
        }));
    });
}

/// What every plugin response must satisfy: files or an error, not both, files named; and
/// no error that says our own code panicked (the generator's last-resort `catch_unwind`
/// reports those as "internal error while generating code"). Its other safety net, "internal
/// error: generated code ... does not parse" (names protoc would never accept, such as an
/// empty field name), is an error response and allowed.
pub fn check_plugin_response(response: &prost_types::compiler::CodeGeneratorResponse) {
    match &response.error {
        Some(error) => {
            assert!(response.file.is_empty(), "error and files both set");
            assert!(
                !error.starts_with("internal error while generating code"),
                "our generator panicked: {error}"
            );
        }
        None => {
            for f in &response.file {
                assert!(
                    f.name.as_deref().is_some_and(|n| !n.is_empty()),
                    "a file without a name"
                );
            }
        }
    }
}
