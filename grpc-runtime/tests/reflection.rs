//! Server reflection v1 and v1alpha over real sockets, through the generated
//! reflection clients on our Channel.

mod common;

use std::time::Duration;

use common::ReceiverStream;
use grpc_runtime::server::Server;
use grpc_runtime::services::reflection::{v1, v1alpha, ReflectionBuilder};
use grpc_runtime::{Channel, Code, Status, Streaming};
use prost::Message;
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};
use tokio::sync::mpsc;

use v1::server_reflection_request::MessageRequest as Q;
use v1::server_reflection_response::MessageResponse as A;

/// A hand-made proto2 pair: `test/ext.proto` (message Base, extensions 100-199;
/// message Plain) and `test/ext_more.proto` (extensions a=100, b=150 of Base).
fn extension_set() -> FileDescriptorSet {
    let base = DescriptorProto {
        name: Some("Base".into()),
        extension_range: vec![prost_types::descriptor_proto::ExtensionRange {
            start: Some(100),
            end: Some(200),
            options: None,
        }],
        ..Default::default()
    };
    let plain = DescriptorProto {
        name: Some("Plain".into()),
        ..Default::default()
    };
    let ext = |name: &str, number: i32| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(prost_types::field_descriptor_proto::Label::Optional as i32),
        r#type: Some(prost_types::field_descriptor_proto::Type::Int32 as i32),
        extendee: Some(".test.ext.Base".into()),
        ..Default::default()
    };
    FileDescriptorSet {
        file: vec![
            FileDescriptorProto {
                name: Some("test/ext.proto".into()),
                package: Some("test.ext".into()),
                message_type: vec![base, plain],
                syntax: Some("proto2".into()),
                ..Default::default()
            },
            FileDescriptorProto {
                name: Some("test/ext_more.proto".into()),
                package: Some("test.ext".into()),
                dependency: vec!["test/ext.proto".into()],
                extension: vec![ext("a", 100), ext("b", 150)],
                syntax: Some("proto2".into()),
                ..Default::default()
            },
        ],
    }
}

async fn start_server() -> std::net::SocketAddr {
    let reflection = ReflectionBuilder::new()
        .register_encoded_file_descriptor_set(grpc_runtime::services::health::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(grpc_runtime::rpc_types::FILE_DESCRIPTOR_SET)
        .register_file_descriptor_set(extension_set())
        .build()
        .unwrap();
    common::serve(
        Server::builder()
            .add_service(grpc_runtime::services::health::HealthReporter::new().service())
            .add_service(reflection.v1())
            .add_service(reflection.v1alpha()),
    )
    .await
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap()
}

/// One reflection stream: ask, read the answer.
struct Session<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Streaming<Resp>,
}

impl<Req, Resp: Message + Default + 'static> Session<Req, Resp> {
    async fn ask(&mut self, req: Req) -> Result<Resp, Status> {
        assert!(self.tx.send(req).await.is_ok());
        match tokio::time::timeout(Duration::from_secs(5), self.rx.message())
            .await
            .expect("answer in time")
        {
            Ok(Some(m)) => Ok(m),
            Ok(None) => panic!("stream ended without an answer"),
            Err(e) => Err(e),
        }
    }
}

async fn v1_session(
    addr: std::net::SocketAddr,
) -> Session<v1::ServerReflectionRequest, v1::ServerReflectionResponse> {
    let c = v1::server_reflection_client::ServerReflectionClient::new(channel(addr).await);
    let (tx, rx) = mpsc::channel(4);
    let rx = c
        .server_reflection_info(ReceiverStream(rx))
        .await
        .unwrap()
        .into_inner();
    Session { tx, rx }
}

fn q(m: Q) -> v1::ServerReflectionRequest {
    v1::ServerReflectionRequest {
        host: "example.test".into(),
        message_request: Some(m),
    }
}

fn file_names(a: &v1::ServerReflectionResponse) -> Vec<String> {
    match a.message_response.as_ref().unwrap() {
        A::FileDescriptorResponse(f) => f
            .file_descriptor_proto
            .iter()
            .map(|b| {
                FileDescriptorProto::decode(b.as_slice())
                    .unwrap()
                    .name()
                    .to_string()
            })
            .collect(),
        other => panic!("expected files, got {other:?}"),
    }
}

fn error_code(a: &v1::ServerReflectionResponse) -> i32 {
    match a.message_response.as_ref().unwrap() {
        A::ErrorResponse(e) => {
            assert!(!e.error_message.is_empty());
            e.error_code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn v1_list_services_echoes_request() {
    let addr = start_server().await;
    let mut s = v1_session(addr).await;
    let req = q(Q::ListServices(String::new()));
    let a = s.ask(req.clone()).await.unwrap();
    assert_eq!(a.valid_host, "example.test");
    assert_eq!(a.original_request.as_ref(), Some(&req));
    let A::ListServicesResponse(l) = a.message_response.unwrap() else {
        panic!("not a list")
    };
    let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health".to_string(),
            "grpc.reflection.v1.ServerReflection".to_string(),
            "grpc.reflection.v1alpha.ServerReflection".to_string(),
        ]
    );
}

#[tokio::test]
async fn v1_file_containing_symbol_for_every_kind_of_symbol() {
    let addr = start_server().await;
    let mut s = v1_session(addr).await;
    let health = "grpc/health/v1/health.proto".to_string();
    let a = s
        .ask(q(Q::FileContainingSymbol("grpc.health.v1.Health".into())))
        .await
        .unwrap();
    assert_eq!(file_names(&a), vec![health.clone()]);
    // The descriptor is the real one: it has the service and its three methods.
    let A::FileDescriptorResponse(f) = a.message_response.unwrap() else {
        unreachable!()
    };
    let fd = FileDescriptorProto::decode(f.file_descriptor_proto[0].as_slice()).unwrap();
    let methods: Vec<&str> = fd.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["Check", "List", "Watch"]);
    for symbol in [
        "grpc.health.v1.Health.Watch",
        "grpc.health.v1.HealthCheckRequest",
        "grpc.health.v1.HealthCheckRequest.service",
        "grpc.health.v1.HealthCheckResponse.ServingStatus",
        "grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN",
        ".grpc.health.v1.HealthListResponse",
    ] {
        let a = s
            .ask(q(Q::FileContainingSymbol(symbol.into())))
            .await
            .unwrap();
        assert_eq!(file_names(&a), vec![health.clone()], "{symbol}");
    }
    // Dependencies come along, once per stream.
    let a = s
        .ask(q(Q::FileContainingSymbol(
            "google.rpc.BadRequest.FieldViolation".into(),
        )))
        .await
        .unwrap();
    let mut names = file_names(&a);
    assert_eq!(names[0], "google/rpc/error_details.proto");
    names.sort();
    assert_eq!(
        names,
        [
            "google/protobuf/duration.proto",
            "google/rpc/error_details.proto"
        ]
    );
    let a = s
        .ask(q(Q::FileContainingSymbol("google.rpc.Status".into())))
        .await
        .unwrap();
    assert_eq!(
        file_names(&a),
        ["google/rpc/status.proto", "google/protobuf/any.proto"]
    );
    let a = s
        .ask(q(Q::FileContainingSymbol("google.rpc.Status".into())))
        .await
        .unwrap();
    assert_eq!(
        file_names(&a),
        ["google/rpc/status.proto"],
        "imports already sent on this stream are skipped"
    );
}

#[tokio::test]
async fn v1_file_by_filename_and_not_found_keeps_the_stream() {
    let addr = start_server().await;
    let mut s = v1_session(addr).await;
    let a = s
        .ask(q(Q::FileByFilename("google/rpc/status.proto".into())))
        .await
        .unwrap();
    assert_eq!(
        file_names(&a),
        ["google/rpc/status.proto", "google/protobuf/any.proto"]
    );
    // An asked-for file is always sent, even if sent before as a dependency.
    let a = s
        .ask(q(Q::FileByFilename("google/protobuf/any.proto".into())))
        .await
        .unwrap();
    assert_eq!(file_names(&a), ["google/protobuf/any.proto"]);

    let nf = Code::NotFound as i32;
    assert_eq!(
        error_code(
            &s.ask(q(Q::FileByFilename("nope.proto".into())))
                .await
                .unwrap()
        ),
        nf
    );
    assert_eq!(
        error_code(
            &s.ask(q(Q::FileContainingSymbol("no.Such".into())))
                .await
                .unwrap()
        ),
        nf
    );
    assert_eq!(
        error_code(
            &s.ask(q(Q::FileContainingSymbol("grpc.health.v1".into())))
                .await
                .unwrap()
        ),
        nf
    );
    let ext = v1::ExtensionRequest {
        containing_type: "test.ext.Base".into(),
        extension_number: 999,
    };
    assert_eq!(
        error_code(&s.ask(q(Q::FileContainingExtension(ext))).await.unwrap()),
        nf
    );
    assert_eq!(
        error_code(
            &s.ask(q(Q::AllExtensionNumbersOfType("no.Such".into())))
                .await
                .unwrap()
        ),
        nf
    );
    // The stream still answers.
    let a = s.ask(q(Q::ListServices("*".into()))).await.unwrap();
    assert!(matches!(
        a.message_response,
        Some(A::ListServicesResponse(_))
    ));
}

#[tokio::test]
async fn v1_extensions() {
    let addr = start_server().await;
    let mut s = v1_session(addr).await;
    let a = s
        .ask(q(Q::AllExtensionNumbersOfType("test.ext.Base".into())))
        .await
        .unwrap();
    let A::AllExtensionNumbersResponse(n) = a.message_response.unwrap() else {
        panic!("not numbers")
    };
    assert_eq!(n.base_type_name, "test.ext.Base");
    assert_eq!(n.extension_number, [100, 150]);
    // A known type without extensions: an empty list, not an error.
    let a = s
        .ask(q(Q::AllExtensionNumbersOfType("test.ext.Plain".into())))
        .await
        .unwrap();
    let A::AllExtensionNumbersResponse(n) = a.message_response.unwrap() else {
        panic!("not numbers")
    };
    assert!(n.extension_number.is_empty());
    let ext = v1::ExtensionRequest {
        containing_type: ".test.ext.Base".into(),
        extension_number: 150,
    };
    let a = s.ask(q(Q::FileContainingExtension(ext))).await.unwrap();
    assert_eq!(file_names(&a), ["test/ext_more.proto", "test/ext.proto"]);
    // Extensions are symbols too.
    let a = s
        .ask(q(Q::FileContainingSymbol("test.ext.a".into())))
        .await
        .unwrap();
    assert_eq!(file_names(&a), ["test/ext_more.proto"]);
}

#[tokio::test]
async fn v1_request_without_question_is_invalid_argument() {
    let addr = start_server().await;
    let mut s = v1_session(addr).await;
    let a = s.ask(q(Q::ListServices(String::new()))).await.unwrap();
    assert!(a.message_response.is_some());
    let err = s
        .ask(v1::ServerReflectionRequest {
            host: String::new(),
            message_request: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn v1alpha_answers_the_same() {
    use v1alpha::server_reflection_request::MessageRequest as AQ;
    use v1alpha::server_reflection_response::MessageResponse as AA;
    let addr = start_server().await;
    let c = v1alpha::server_reflection_client::ServerReflectionClient::new(channel(addr).await);
    let (tx, rx) = mpsc::channel(4);
    let stream = c
        .server_reflection_info(ReceiverStream(rx))
        .await
        .unwrap()
        .into_inner();
    let mut s = Session { tx, rx: stream };
    let req = v1alpha::ServerReflectionRequest {
        host: "h".into(),
        message_request: Some(AQ::ListServices(String::new())),
    };
    let a = s.ask(req.clone()).await.unwrap();
    assert_eq!(a.original_request, Some(req));
    let Some(AA::ListServicesResponse(l)) = a.message_response else {
        panic!("not a list")
    };
    assert_eq!(l.service.len(), 3);
    let a = s
        .ask(v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AQ::FileContainingSymbol(
                "grpc.reflection.v1alpha.ServerReflection".into(),
            )),
        })
        .await
        .unwrap();
    let Some(AA::FileDescriptorResponse(f)) = a.message_response else {
        panic!("not files")
    };
    let fd = FileDescriptorProto::decode(f.file_descriptor_proto[0].as_slice()).unwrap();
    assert_eq!(fd.name(), "grpc/reflection/v1alpha/reflection.proto");
    let a = s
        .ask(v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AQ::FileByFilename("missing.proto".into())),
        })
        .await
        .unwrap();
    let Some(AA::ErrorResponse(e)) = a.message_response else {
        panic!("not an error")
    };
    assert_eq!(e.error_code, Code::NotFound as i32);
}

#[tokio::test]
async fn client_half_close_ends_the_stream_ok() {
    let addr = start_server().await;
    let mut s = v1_session(addr).await;
    s.ask(q(Q::ListServices(String::new()))).await.unwrap();
    drop(s.tx);
    let end = tokio::time::timeout(Duration::from_secs(5), s.rx.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
}

/// `ServerBuilder::add_reflection()`: one line lists every service the server serves
/// (whatever order it was called in) and describes the generated ones, as grpc-go's
/// `reflection.Register(s)`; a hand-written service without descriptors is listed by name.
#[tokio::test]
async fn add_reflection_lists_every_service_of_the_server() {
    struct Bare;
    impl grpc_runtime::server::Service for Bare {
        fn name(&self) -> &'static str {
            "test.Bare"
        }
        fn methods(&self) -> &'static [grpc_runtime::MethodDescriptor] {
            &[]
        }
        fn call(
            &self,
            _method: &str,
            call: grpc_runtime::server::ServerCall,
        ) -> grpc_runtime::BoxFuture<()> {
            call.unimplemented()
        }
    }
    let addr = common::serve(
        grpc_runtime::server::Server::builder()
            .add_reflection()
            .add_service(grpc_runtime::services::health::HealthReporter::new().service())
            .add_service(Bare),
    )
    .await;
    let mut s = v1_session(addr).await;
    let A::ListServicesResponse(l) = s
        .ask(q(Q::ListServices(String::new())))
        .await
        .unwrap()
        .message_response
        .unwrap()
    else {
        panic!("not a list")
    };
    let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "test.Bare"
        ]
    );
    // The generated health service described itself.
    let a = s
        .ask(q(Q::FileContainingSymbol("grpc.health.v1.Health".into())))
        .await
        .unwrap();
    assert_eq!(file_names(&a), ["grpc/health/v1/health.proto"]);
    let a = s
        .ask(q(Q::FileContainingSymbol("test.Bare".into())))
        .await
        .unwrap();
    assert_eq!(error_code(&a), 5);
}
