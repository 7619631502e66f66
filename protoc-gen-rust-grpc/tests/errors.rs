//! Error paths of both entry points: bad options, colliding names, malformed stdin, and
//! parse errors in the build.rs path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prost::Message;

fn protos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protos")
}

fn plugin() -> &'static str {
    env!("CARGO_BIN_EXE_protoc-gen-rust-grpc")
}

/// Runs protoc with our plugin; returns (success, stderr).
fn protoc(proto: &str, opt: &str) -> (bool, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("errors")
        .join(opt.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap());
    cmd.arg(format!("--plugin=protoc-gen-rust-grpc={}", plugin()))
        .arg(format!("--rust-grpc_out={}", dir.display()))
        .arg(format!("-I{}", protos().display()))
        .arg(format!(
            "-I{}",
            protoc_bin_vendored::include_path().unwrap().display()
        ));
    if !opt.is_empty() {
        cmd.arg(format!("--rust-grpc_opt={opt}"));
    }
    cmd.arg(protos().join(proto));
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_binary(stdin: &[u8], args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = Command::new(plugin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_option_is_reported_by_protoc() {
    let (ok, stderr) = protoc("edge/common.proto", "client=true,frobnicate=1");
    assert!(!ok);
    assert!(stderr.contains("unknown option `frobnicate`"), "{stderr}");
}

#[test]
fn malformed_options_are_reported_by_protoc() {
    let (ok, stderr) = protoc("edge/common.proto", "client");
    assert!(!ok);
    assert!(stderr.contains("malformed option `client`"), "{stderr}");
    let (ok, stderr) = protoc("edge/common.proto", "server=maybe");
    assert!(!ok);
    assert!(
        stderr.contains("malformed option `server=maybe`"),
        "{stderr}"
    );
    let (ok, stderr) = protoc("edge/common.proto", "extern_path=nodot=::x");
    assert!(!ok);
    assert!(stderr.contains("extern_path=nodot=::x"), "{stderr}");
}

#[test]
fn build_path_rejects_bad_options() {
    let e = protoc_gen_rust_grpc::configure()
        .extern_path("no.leading.dot", "::x")
        .generate(&[protos().join("edge/common.proto")], &[protos()])
        .unwrap_err();
    assert!(e.to_string().contains("extern_path"), "{e}");
    let e = protoc_gen_rust_grpc::configure()
        .runtime_crate("not a path")
        .generate(&[protos().join("edge/common.proto")], &[protos()])
        .unwrap_err();
    assert!(e.to_string().contains("runtime_crate"), "{e}");
}

const COLLIDE: &str = "service `grpc_rust.test.errors.Colliding` has methods `GetThing` and `get_thing` that both map to the Rust name `get_thing`";

#[test]
fn colliding_methods_plugin() {
    let (ok, stderr) = protoc("errors/collide.proto", "");
    assert!(!ok);
    assert!(stderr.contains(COLLIDE), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn colliding_methods_build() {
    let e = protoc_gen_rust_grpc::configure()
        .generate(&[protos().join("errors/collide.proto")], &[protos()])
        .unwrap_err();
    assert!(e.to_string().contains(COLLIDE), "{e}");
    assert!(e.to_string().contains("errors/collide.proto"), "{e}");
}

#[test]
fn parse_error_names_file_line_column() {
    let e = protoc_gen_rust_grpc::configure()
        .generate(&[protos().join("errors/broken.proto")], &[protos()])
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("broken.proto"), "{msg}");
    // The missing `;` after `string name = 1` is noticed at line 7, column 3.
    assert!(
        msg.ends_with("errors/broken.proto:7:3: While parsing field, expecting char `;`"),
        "{msg}"
    );
}

#[test]
fn missing_input_file_is_an_error() {
    let e = protoc_gen_rust_grpc::configure()
        .generate(&[protos().join("edge/does_not_exist.proto")], &[protos()])
        .unwrap_err();
    assert!(e.to_string().contains("does_not_exist.proto"), "{e}");
}

#[test]
fn malformed_stdin_exits_non_zero_without_panic() {
    for input in [&b"\xff\xff\xff\xff"[..], b"\x0a\x05ab", b""] {
        let (code, stdout, stderr) = run_binary(input, &[]);
        assert_eq!(code, Some(1), "input {input:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains("CodeGeneratorRequest"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn version_flag() {
    let (code, stdout, _) = run_binary(b"", &["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        String::from_utf8(stdout).unwrap(),
        format!("protoc-gen-rust-grpc {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn request_problems_go_into_response_error() {
    use prost_types::compiler::{CodeGeneratorRequest, CodeGeneratorResponse};
    // A file to generate that the request does not describe.
    let request = CodeGeneratorRequest {
        file_to_generate: vec!["missing.proto".into()],
        parameter: Some("server=false".into()),
        ..Default::default()
    };
    let (code, stdout, stderr) = run_binary(&request.encode_to_vec(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let response = CodeGeneratorResponse::decode(stdout.as_slice()).unwrap();
    assert!(
        response.error().contains("missing.proto"),
        "{:?}",
        response.error
    );
    assert_eq!(response.supported_features, Some(1));
    assert!(response.file.is_empty());

    // A type that does not exist: never a panic, an error in the response.
    let file = prost_types::FileDescriptorProto {
        name: Some("bad.proto".into()),
        package: Some("bad".into()),
        syntax: Some("proto3".into()),
        message_type: vec![prost_types::DescriptorProto {
            name: Some("M".into()),
            field: vec![prost_types::FieldDescriptorProto {
                name: Some("x".into()),
                number: Some(1),
                label: Some(1),
                r#type: Some(11),
                type_name: Some(".bad.Nope".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let request = CodeGeneratorRequest {
        file_to_generate: vec!["bad.proto".into()],
        proto_file: vec![file],
        ..Default::default()
    };
    let response = protoc_gen_rust_grpc::plugin::respond(&request);
    assert_eq!(
        response.error(),
        "bad.proto: field `M.x` refers to unknown type `.bad.Nope`"
    );
}

#[test]
fn module_clash_with_message_module() {
    let e = protoc_gen_rust_grpc::configure()
        .generate(&[protos().join("errors/module_clash.proto")], &[protos()])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("needs the Rust module `greeter_client`"),
        "{e}"
    );
}

#[test]
fn method_named_new_clashes_with_client_constructor() {
    let e = protoc_gen_rust_grpc::configure()
        .generate(&[protos().join("errors/new_method.proto")], &[protos()])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("method `New` of service `grpc_rust.test.errors.Factory` maps to `new`"),
        "{e}"
    );
    // Without a client there is nothing to clash with.
    let files = protoc_gen_rust_grpc::configure()
        .client(false)
        .generate(&[protos().join("errors/new_method.proto")], &[protos()])
        .unwrap();
    assert!(files[0].content.contains("fn new("));
}

#[test]
fn underscore_method_name_is_an_error_not_a_panic() {
    use prost_types::{FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto};
    let file = FileDescriptorProto {
        name: Some("u.proto".into()),
        package: Some("u".into()),
        syntax: Some("proto3".into()),
        message_type: vec![prost_types::DescriptorProto {
            name: Some("M".into()),
            ..Default::default()
        }],
        service: vec![ServiceDescriptorProto {
            name: Some("S".into()),
            method: vec![MethodDescriptorProto {
                name: Some("_".into()),
                input_type: Some(".u.M".into()),
                output_type: Some(".u.M".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = protoc_gen_rust_grpc::generate(&["u.proto".into()], &[file], &Default::default())
        .unwrap_err();
    assert!(e.to_string().contains("method `_` of service `u.S`"), "{e}");
}
