//! Feeds corrupted CodeGeneratorRequests to the plugin entry point: every outcome must be
//! an `Err` (undecodable) or a response (possibly with `error`), never a panic escaping.

use std::path::Path;

use prost::Message;
use prost_types::compiler::CodeGeneratorRequest;

fn request() -> CodeGeneratorRequest {
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protos");
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include(&protos)
        .input(protos.join("edge/legacy.proto"))
        .parse_and_typecheck()
        .unwrap();
    let proto_file = parsed
        .file_descriptors
        .iter()
        .map(|f| {
            prost_types::FileDescriptorProto::decode(
                protobuf::Message::write_to_bytes(f).unwrap().as_slice(),
            )
            .unwrap()
        })
        .collect();
    CodeGeneratorRequest {
        file_to_generate: vec!["edge/legacy.proto".into()],
        parameter: Some("include_file=mod.rs".into()),
        proto_file,
        ..Default::default()
    }
}

#[test]
fn corrupted_requests_never_panic() {
    let bytes = request().encode_to_vec();
    let ok = protoc_gen_rust_grpc::plugin::run(&bytes).unwrap();
    let response = prost_types::compiler::CodeGeneratorResponse::decode(ok.as_slice()).unwrap();
    assert_eq!(response.error, None);
    assert_eq!(response.file.len(), 2);

    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut decoded, mut rejected) = (0, 0);
    for _ in 0..300 {
        let mut input = bytes.clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % input.len();
            input[at] = next() as u8;
        }
        if next() % 5 == 0 {
            input.truncate((next() as usize) % input.len());
        }
        match std::panic::catch_unwind(|| protoc_gen_rust_grpc::plugin::run(&input)) {
            Ok(Ok(_)) => decoded += 1,
            Ok(Err(_)) => rejected += 1,
            Err(_) => panic!("a panic escaped for input {input:?}"),
        }
    }
    assert!(
        decoded > 0 && rejected > 0,
        "decoded {decoded}, rejected {rejected}"
    );
}
