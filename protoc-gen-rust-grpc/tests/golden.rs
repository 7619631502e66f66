//! Golden tests: the protoc plugin (real protoc from protoc-bin-vendored running our
//! binary) and the build.rs path (pure-Rust parser) must give byte-identical output for
//! every shipped proto set and the edge-case protos.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("golden")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs protoc with our plugin; returns (file name, content) sorted by name.
fn via_plugin(
    name: &str,
    protos: &[PathBuf],
    includes: &[PathBuf],
    opt: &str,
) -> Vec<(String, String)> {
    let dir = out_dir(name);
    let mut cmd = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap());
    cmd.arg(format!(
        "--plugin=protoc-gen-rust-grpc={}",
        env!("CARGO_BIN_EXE_protoc-gen-rust-grpc")
    ))
    .arg(format!("--rust-grpc_out={}", dir.display()));
    if !opt.is_empty() {
        cmd.arg(format!("--rust-grpc_opt={opt}"));
    }
    for include in includes {
        cmd.arg(format!("-I{}", include.display()));
    }
    cmd.arg(format!(
        "-I{}",
        protoc_bin_vendored::include_path().unwrap().display()
    ));
    cmd.args(protos);
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "protoc failed for {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn via_build(protos: &[PathBuf], includes: &[PathBuf], opt: &str) -> Vec<(String, String)> {
    let options = protoc_gen_rust_grpc::Options::parse(opt).unwrap();
    let mut files: Vec<(String, String)> = protoc_gen_rust_grpc::configure()
        .options(options)
        .generate(protos, includes)
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.content))
        .collect();
    files.sort();
    files
}

fn check(name: &str, protos: &[&str], includes: &[&str], opt: &str) -> Vec<(String, String)> {
    let protos: Vec<PathBuf> = protos.iter().map(|p| repo().join(p)).collect();
    let includes: Vec<PathBuf> = includes.iter().map(|p| repo().join(p)).collect();
    let plugin = via_plugin(name, &protos, &includes, opt);
    let build = via_build(&protos, &includes, opt);
    let names = |v: &[(String, String)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&plugin), names(&build), "{name}: different file sets");
    for ((n, a), (_, b)) in plugin.iter().zip(&build) {
        if a != b {
            let dir = out_dir(&format!("{name}-diff"));
            std::fs::write(dir.join(format!("{n}.plugin")), a).unwrap();
            std::fs::write(dir.join(format!("{n}.build")), b).unwrap();
            panic!(
                "{name}: {n} differs between plugin and build.rs path (see {})",
                dir.display()
            );
        }
    }
    plugin
}

#[test]
fn helloworld() {
    let files = check(
        "helloworld",
        &["protos/examples/helloworld/helloworld.proto"],
        &["protos"],
        "",
    );
    assert_eq!(files.len(), 1);
    let (name, content) = &files[0];
    assert_eq!(name, "helloworld.rs");
    assert!(content.contains("\"/helloworld.Greeter/SayHello\""));
    assert!(content.contains("pub mod greeter_client"));
    assert!(content.contains("pub mod greeter_server"));
    assert!(content.contains("/// Answers with a greeting for the given name."));
    assert!(content.contains("pub const FILE_DESCRIPTOR_SET: &[u8]"));
}

#[test]
fn route_guide() {
    check(
        "route_guide",
        &["protos/examples/routeguide/route_guide.proto"],
        &["protos"],
        "",
    );
}

#[test]
fn grpc_testing() {
    let protos = [
        "protos/grpc/testing/benchmark_service.proto",
        "protos/grpc/testing/control.proto",
        "protos/grpc/testing/empty.proto",
        "protos/grpc/testing/messages.proto",
        "protos/grpc/testing/payloads.proto",
        "protos/grpc/testing/stats.proto",
        "protos/grpc/testing/test.proto",
        "protos/grpc/testing/worker_service.proto",
    ];
    let files = check("grpc_testing", &protos, &["protos"], "");
    assert_eq!(files[0].0, "grpc.testing.rs");
}

#[test]
fn health_reflection_rpc() {
    let files = check(
        "health_reflection_rpc",
        &[
            "protos/grpc/health/v1/health.proto",
            "protos/grpc/reflection/v1/reflection.proto",
            "protos/grpc/reflection/v1alpha/reflection.proto",
            "protos/google/rpc/code.proto",
            "protos/google/rpc/error_details.proto",
            "protos/google/rpc/status.proto",
        ],
        &["protos"],
        "include_file=mod.rs",
    );
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "google.rpc.rs",
            "grpc.health.v1.rs",
            "grpc.reflection.v1.rs",
            "grpc.reflection.v1alpha.rs",
            "mod.rs"
        ]
    );
}

const EDGE: &[&str] = &[
    "protoc-gen-rust-grpc/tests/protos/edge/comments.proto",
    "protoc-gen-rust-grpc/tests/protos/edge/common.proto",
    "protoc-gen-rust-grpc/tests/protos/edge/edge.proto",
    "protoc-gen-rust-grpc/tests/protos/edge/legacy.proto",
    "protoc-gen-rust-grpc/tests/protos/edge/nopackage.proto",
];

#[test]
fn edge_cases() {
    let files = check(
        "edge",
        EDGE,
        &["protoc-gen-rust-grpc/tests/protos"],
        "include_file=mod.rs",
    );
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "_.rs",
            "grpc_rust.test.comments.rs",
            "grpc_rust.test.common.rs",
            "grpc_rust.test.edge.rs",
            "grpc_rust.test.legacy.rs",
            "mod.rs"
        ]
    );
    let edge = &files[3].1;
    assert!(edge.contains("\"/grpc_rust.test.edge.AllKinds/lowerCamel\""));
    assert!(edge.contains("pub async fn r#type("));
    assert!(edge.contains("pub async fn self_("));
    assert!(edge.contains("#[deprecated]"));
    // Message- and enum-level `deprecated`, with the messages scoped under `allow(deprecated)`.
    assert!(edge
        .contains("/// A message nobody should use any more.\n    #[deprecated]\n    #[derive("));
    assert!(edge.contains("/// A deprecated enum.\n    #[deprecated]\n    #[derive("));
    assert!(edge.contains("#[allow(deprecated)]\npub use self::__generated_messages::*;"));
    assert!(
        !files[2].1.contains("__generated_messages"),
        "packages without deprecated types stay flat"
    );
    assert!(edge.contains("/// Trailing comment on count."));
    assert!(
        !edge.contains("Trailing comment on Old."),
        "protoc drops comments after a closing brace"
    );
    assert!(files[0].1.contains("\"/Floating/Drift\""));
}

#[test]
fn edge_cases_with_options() {
    let files = check(
        "edge_options",
        EDGE,
        &["protoc-gen-rust-grpc/tests/protos"],
        r"client=false,messages=false,runtime_crate=crate::rt,extern_path=.grpc_rust.test.common=::common_types,include_file=all\,mods.rs",
    );
    let edge = &files
        .iter()
        .find(|f| f.0 == "grpc_rust.test.edge.rs")
        .unwrap()
        .1;
    assert!(!edge.contains("_client"));
    assert!(!edge.contains("pub struct Request"));
    assert!(
        edge.contains("use crate::rt;")
            && edge.contains("impl<T: AllKinds> rt::server::Service for AllKindsServer<T>")
    );
    assert!(edge.contains("::common_types::Shared"));
    assert!(files.iter().any(|f| f.0 == "all,mods.rs"));
}

/// `protoc --rust-grpc_out` finds the plugin on PATH by its name, as users run it.
#[test]
fn plugin_found_on_path() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_protoc-gen-rust-grpc"))
        .parent()
        .unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let dir = out_dir("on_path");
    let status = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap())
        .env("PATH", path)
        .arg(format!("--rust-grpc_out={}", dir.display()))
        .arg("--rust-grpc_opt=server=false")
        .arg(format!("-I{}", repo().join("protos").display()))
        .arg("examples/helloworld/helloworld.proto")
        .status()
        .unwrap();
    assert!(status.success());
    let content = std::fs::read_to_string(dir.join("helloworld.rs")).unwrap();
    assert!(content.contains("pub mod greeter_client"));
    assert!(!content.contains("pub mod greeter_server"));
}
