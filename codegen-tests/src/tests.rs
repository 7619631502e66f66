use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use grpc_runtime::server::Service as _;
use grpc_runtime::{IntoRequest, MethodDescriptor};
use prost::Message;

use crate::edge::grpc_rust::test::{common, edge, legacy};
use crate::shipped::{grpc, helloworld, routeguide};

/// Polls a future that is ready at once (the default handlers are).
fn ready<F: Future>(f: F) -> F::Output {
    fn raw() -> RawWaker {
        fn clone(_: *const ()) -> RawWaker {
            raw()
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    // SAFETY: the vtable functions do nothing and never touch the data pointer.
    let waker = unsafe { Waker::from_raw(raw()) };
    let mut cx = Context::from_waker(&waker);
    let mut f = Box::pin(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future not ready"),
    }
}

fn assert_send<T: Send>(_: &T) {}

/// A stream of one item type, for type-checking streaming client calls.
struct Empty<T>(std::marker::PhantomData<T>);
impl<T> futures_core::Stream for Empty<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
        Poll::Ready(None)
    }
}
// SAFETY-free: PhantomData<T> is Send when T is.
fn empty<T>() -> Empty<T> {
    Empty(std::marker::PhantomData)
}

#[test]
fn messages_round_trip() {
    let req = helloworld::HelloRequest {
        name: "world".into(),
    };
    let bytes = req.encode_to_vec();
    assert_eq!(bytes, b"\x0a\x05world");
    assert_eq!(
        helloworld::HelloRequest::decode(bytes.as_slice()).unwrap(),
        req
    );

    let p = grpc::testing::SimpleRequest {
        response_size: 7,
        ..Default::default()
    };
    assert_eq!(
        grpc::testing::SimpleRequest::decode(p.encode_to_vec().as_slice()).unwrap(),
        p
    );
}

#[test]
fn service_names_and_paths() {
    use helloworld::greeter_server::{METHODS, SERVICE_NAME};
    assert_eq!(SERVICE_NAME, "helloworld.Greeter");
    assert_eq!(
        METHODS,
        &[
            MethodDescriptor {
                name: "SayHello",
                full_path: "/helloworld.Greeter/SayHello",
                client_streaming: false,
                server_streaming: false,
            },
            MethodDescriptor {
                name: "SayHelloAgain",
                full_path: "/helloworld.Greeter/SayHelloAgain",
                client_streaming: false,
                server_streaming: false,
            },
        ]
    );
    let kinds: Vec<(&str, bool, bool)> = routeguide::route_guide_server::METHODS
        .iter()
        .map(|m| (m.full_path, m.client_streaming, m.server_streaming))
        .collect();
    assert_eq!(
        kinds,
        [
            ("/routeguide.RouteGuide/GetFeature", false, false),
            ("/routeguide.RouteGuide/ListFeatures", false, true),
            ("/routeguide.RouteGuide/RecordRoute", true, false),
            ("/routeguide.RouteGuide/RouteChat", true, true),
        ]
    );
    assert_eq!(
        grpc::testing::test_service_server::SERVICE_NAME,
        "grpc.testing.TestService"
    );
    assert_eq!(
        grpc::health::v1::health_server::SERVICE_NAME,
        "grpc.health.v1.Health"
    );
    assert_eq!(
        grpc::reflection::v1alpha::server_reflection_server::METHODS[0].full_path,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    );
    assert_eq!(crate::edge::floating_server::SERVICE_NAME, "Floating");
    assert_eq!(
        crate::edge::floating_server::METHODS[0].full_path,
        "/Floating/Drift"
    );
    assert_eq!(
        edge::all_kinds_server::METHODS[7].full_path,
        "/grpc_rust.test.edge.AllKinds/lowerCamel"
    );
    assert!(edge::nothing_server::METHODS.is_empty());
}

struct MyGreeter;
impl helloworld::greeter_server::Greeter for MyGreeter {}

#[test]
fn default_handlers_answer_unimplemented() {
    use helloworld::greeter_server::{Greeter, GreeterServer};
    let reply = ready(MyGreeter.say_hello(helloworld::HelloRequest::default().into_request()));
    let status = reply.unwrap_err();
    let debug = format!("{status:?}");
    assert!(debug.contains("method SayHello not implemented"), "{debug}");
    // The stand-in prints the numeric code, the real runtime the name.
    assert!(
        debug.contains("12") || debug.contains("Unimplemented"),
        "{debug}"
    );

    let server = GreeterServer::new(MyGreeter);
    assert_eq!(server.name(), "helloworld.Greeter");
    assert_eq!(server.methods().len(), 2);
    let _clone = server.clone();
}

struct Overriding;
impl edge::all_kinds_server::AllKinds for Overriding {
    async fn unary(
        &self,
        request: grpc_runtime::Request<edge::Request>,
    ) -> Result<grpc_runtime::Response<edge::Response>, grpc_runtime::Status> {
        let _ = request;
        Err(grpc_runtime::Status::unimplemented("overridden"))
    }
}

struct Keys;
impl edge::keyword_methods_server::KeywordMethods for Keys {}
struct Nothing;
impl edge::nothing_server::Nothing for Nothing {}
struct Old;
#[allow(deprecated)]
impl edge::legacy_server::Legacy for Old {}

#[test]
fn edge_servers_and_handlers() {
    use edge::all_kinds_server::{AllKinds, AllKindsServer};
    use edge::keyword_methods_server::KeywordMethods;
    let status = ready(Overriding.unary(edge::Request::default().into_request())).unwrap_err();
    assert!(format!("{status:?}").contains("overridden"));
    let status =
        ready(Overriding.lower_camel(edge::Keywords::default().into_request())).unwrap_err();
    assert!(format!("{status:?}").contains("method lowerCamel not implemented"));
    let status = ready(Keys.r#type(edge::Keywords::default().into_request())).unwrap_err();
    assert!(format!("{status:?}").contains("method Type not implemented"));
    let status = ready(Keys.self_(edge::Keywords::default().into_request())).unwrap_err();
    assert!(format!("{status:?}").contains("method Self not implemented"));
    let server = AllKindsServer::new(Overriding);
    assert_eq!(server.methods().len(), 8);
    let nothing = edge::nothing_server::NothingServer::new(Nothing);
    assert_eq!(nothing.name(), "grpc_rust.test.edge.Nothing");
    #[allow(deprecated)]
    let legacy = edge::legacy_server::LegacyServer::new(Old);
    assert_eq!(legacy.name(), "grpc_rust.test.edge.Legacy");
    struct Guide;
    impl crate::custom_runtime::route_guide_server::RouteGuide for Guide {}
    let guide = crate::custom_runtime::route_guide_server::RouteGuideServer::new(Guide);
    assert_eq!(
        guide.methods()[3].full_path,
        "/routeguide.RouteGuide/RouteChat"
    );
    // Services only, messages from elsewhere.
    struct G;
    impl crate::server_only::greeter_server::Greeter for G {}
    let s = crate::server_only::greeter_server::GreeterServer::new(G);
    assert_eq!(s.name(), "helloworld.Greeter");
}

/// Type-checks every client call kind (the stand-in runtime cannot run them).
#[allow(dead_code)]
fn client_calls_type_check(client: &edge::all_kinds_client::AllKindsClient) {
    let f = client.unary(edge::Request::default());
    assert_send(&f);
    let f = client.server_stream(edge::Request::default().into_request());
    assert_send(&f);
    let f = client.client_stream(empty::<edge::Request>());
    assert_send(&f);
    let f = client.bidi_stream(empty::<edge::Request>());
    assert_send(&f);
    let f = client.ping(());
    assert_send(&f);
    let f = client.share(common::Shared::default());
    assert_send(&f);
    let k = edge::keyword_methods_client::KeywordMethodsClient::new(client.channel().clone());
    drop(k.r#match(edge::Keywords::default()));
    drop(k.r#async(edge::Keywords::default()));
    drop(k.r#await(empty::<edge::Keywords>()));
    drop(k.r#fn(edge::Keywords::default()));
}

#[test]
fn edge_messages() {
    let k = edge::Keywords {
        r#type: "t".into(),
        r#match: true,
        self_: 3,
        r#async: "a".into(),
        r#await: "w".into(),
        r#fn: "f".into(),
        crate_: "c".into(),
    };
    assert_eq!(
        edge::Keywords::decode(k.encode_to_vec().as_slice()).unwrap(),
        k
    );
    let s = edge::Self_ {
        super_: "up".into(),
    };
    assert_eq!(s.super_, "up");
    let r = edge::Request {
        maybe: Some(0),
        counters: [("a".to_string(), 1i64)].into_iter().collect(),
        choice: Some(edge::request::Choice::Shared(common::Shared {
            id: "x".into(),
        })),
        at: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        }),
        ..Default::default()
    };
    let back = edge::Request::decode(r.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.maybe, Some(0), "proto3 optional keeps explicit zero");
    let _kind = edge::request::inner::Kind::Deep;
    let _deeper = edge::request::inner::Deeper::default();
    let old = legacy::Old::default();
    assert_eq!(old.count(), 7);
    assert_eq!(old.label(), "none");
    assert_eq!(old.color(), common::Color::Red);
    assert_eq!(old.ratio(), 1.5);
    let details = legacy::old::Details {
        url: Some("u".into()),
    };
    let with_group = legacy::Old {
        id: "i".into(),
        details: Some(details),
        ..Default::default()
    };
    assert_eq!(
        legacy::Old::decode(with_group.encode_to_vec().as_slice()).unwrap(),
        with_group
    );
    assert_eq!(legacy::Level::Low as i32, -1);
    let loose = crate::edge::Loose {
        shared: Some(common::Shared::default()),
    };
    assert!(loose.shared.is_some());
}

#[test]
fn file_descriptor_sets() {
    let fds = prost_types::FileDescriptorSet::decode(helloworld::FILE_DESCRIPTOR_SET).unwrap();
    let names: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["examples/helloworld/helloworld.proto"]);
    assert!(fds.file[0].source_code_info.is_none());

    let fds = prost_types::FileDescriptorSet::decode(grpc::testing::FILE_DESCRIPTOR_SET).unwrap();
    let names: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
    assert!(names.contains(&"grpc/testing/test.proto"));
    assert!(
        names.contains(&"google/protobuf/timestamp.proto"),
        "{names:?}"
    );
    // Dependencies come before their dependents.
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("grpc/testing/empty.proto") < pos("grpc/testing/test.proto"));

    let fds = prost_types::FileDescriptorSet::decode(edge::FILE_DESCRIPTOR_SET).unwrap();
    let edge_file = fds
        .file
        .iter()
        .find(|f| f.name() == "edge/edge.proto")
        .unwrap();
    assert_eq!(edge_file.service.len(), 4);
    assert!(fds.file.iter().any(|f| f.name() == "edge/common.proto"));
}

/// Deprecated messages and enums carry `#[deprecated]` (so user code using them warns) yet
/// the generated code compiles warning-free here under `#![deny(warnings)]`, including the
/// messages that use them, and they round-trip through prost like any message.
#[test]
#[allow(deprecated)]
fn deprecated_messages_and_enums() {
    let thing = edge::OldThing {
        name: "old".into(),
        mode: edge::old_thing::Mode::Fast as i32,
        kind: edge::OldKind::Gone as i32,
    };
    let uses = edge::UsesOld {
        thing: Some(thing.clone()),
        kind: edge::OldKind::Gone as i32,
        things: vec![thing.clone()],
        by_name: [("a".to_string(), thing.clone())].into_iter().collect(),
        choice: Some(edge::uses_old::Choice::One(thing.clone())),
        kinds: vec![edge::OldKind::Unspecified as i32],
    };
    let decoded = edge::UsesOld::decode(uses.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, uses);
    assert_eq!(
        edge::OldKind::from_str_name("OLD_KIND_GONE"),
        Some(edge::OldKind::Gone)
    );
    // The deprecated types also work in service signatures.
    struct L;
    impl edge::legacy_server::Legacy for L {}
    let server = edge::legacy_server::LegacyServer::new(L);
    assert_eq!(
        server.methods()[1].full_path,
        "/grpc_rust.test.edge.Legacy/Retire"
    );
}
