//! Generated code is rustfmt-clean: `rustfmt --edition 2021 --check` reports no diff on any
//! file generated for the shipped protos, the edge-case protos (with several option sets),
//! and synthetic protos whose names sweep through the lengths where rustfmt changes layout.
//!
//! The generator never runs rustfmt itself (output must not depend on the machine); it lays
//! code out following rustfmt's rules, and this test holds it to them. Without a rustfmt
//! binary (on PATH or in `$CARGO_HOME/bin`) the tests print a note and pass.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rustfmt() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("rustfmt")];
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin").join("rustfmt"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo").join("bin").join("rustfmt"));
    }
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Writes `files` into a fresh directory and runs `rustfmt --check` on all of them; returns
/// the diff rustfmt printed (empty when clean). `None` when rustfmt is missing.
fn rustfmt_diff(name: &str, files: &[protoc_gen_rust_grpc::GeneratedFile]) -> Option<String> {
    let Some(rustfmt) = rustfmt() else {
        println!("note: no rustfmt binary found (PATH, $CARGO_HOME/bin); skipping the rustfmt check for {name}");
        return None;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("rustfmt_clean")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.content).unwrap();
        paths.push(path);
    }
    assert!(!paths.is_empty(), "{name}: nothing generated");
    let out = Command::new(rustfmt)
        .args(["--edition", "2021", "--check", "--color", "never"])
        .args(&paths)
        .output()
        .unwrap();
    let diff =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.success(),
        diff.trim().is_empty(),
        "{name}: {diff}"
    );
    Some(diff)
}

fn generate(
    protos: &[&str],
    include: &str,
    options: &str,
) -> Vec<protoc_gen_rust_grpc::GeneratedFile> {
    let root = repo();
    let protos: Vec<PathBuf> = protos.iter().map(|p| root.join(p)).collect();
    protoc_gen_rust_grpc::configure()
        .options(protoc_gen_rust_grpc::Options::parse(options).unwrap())
        .generate(&protos, &[root.join(include)])
        .unwrap()
}

fn assert_clean(name: &str, files: &[protoc_gen_rust_grpc::GeneratedFile]) {
    if let Some(diff) = rustfmt_diff(name, files) {
        assert!(
            diff.trim().is_empty(),
            "{name}: generated code is not rustfmt-clean:\n{diff}"
        );
    }
}

/// Every `.proto` under `protos/` (the shipped set).
fn shipped() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "proto") {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let root = repo();
    let mut out = Vec::new();
    walk(&root.join("protos"), &root, &mut out);
    // The well-known types come with prost-types; generating them is not a shipped use.
    out.retain(|p| !p.starts_with("protos/google/protobuf/"));
    out.sort();
    out
}

#[test]
fn shipped_protos_are_rustfmt_clean() {
    let protos = shipped();
    assert!(protos.len() >= 16, "{protos:?}");
    let protos: Vec<&str> = protos.iter().map(String::as_str).collect();
    assert_clean(
        "shipped",
        &generate(&protos, "protos", "include_file=mod.rs"),
    );
    assert_clean(
        "shipped_crate_runtime",
        &generate(&protos, "protos", "runtime_crate=crate,messages=false"),
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
fn edge_protos_are_rustfmt_clean() {
    let include = "protoc-gen-rust-grpc/tests/protos";
    assert_clean("edge", &generate(EDGE, include, "include_file=mod.rs"));
    assert_clean(
        "edge_options",
        &generate(
            EDGE,
            include,
            "client=false,messages=false,runtime_crate=crate::rt,extern_path=.grpc_rust.test.common=::common_types",
        ),
    );
    assert_clean(
        "edge_server_only",
        &generate(
            EDGE,
            include,
            "client=false,runtime_crate=::some::other::runtime",
        ),
    );
}

/// Names of every length from 1 to 48 in every position whose width changes rustfmt's layout:
/// message, enum and enum value names, field names, map and oneof fields, rpc names and
/// request/response types of all four call kinds, and service names. (From about 50
/// characters on, rustfmt starts splitting method chains in the server's dispatch `match`,
/// which the generator does not model.)
const SWEEP: usize = 48;

#[test]
fn name_length_sweep_is_rustfmt_clean() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rustfmt_sweep_protos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for n in 1..=SWEEP {
        let name = |c: char| -> String {
            let mut s = String::from("Q");
            s.extend(std::iter::repeat_n(c, n - 1));
            s
        };
        let msg = name('m');
        let field = name('f').to_lowercase();
        let rpc = name('r');
        let svc = name('s');
        let en = name('e');
        let proto = format!(
            r#"syntax = "proto3";
package sweep.p{n};

message {msg} {{
  string {field} = 1;
  map<string, {msg}> {field}_map = 2;
  repeated {en} {field}_list = 3;
  oneof {field}_choice {{
    {msg} {field}_one = 4;
    string {field}_two = 5;
  }}
  message Nested {{
    map<string, string> m = 1;
    {en} e = 2;
  }}
  optional Nested {field}_nested = 6;
}}

enum {en} {{
  {upper}_UNSPECIFIED = 0;
  {upper}_VALUE_WITH_A_LONGER_NAME = 1;
  {upper}_OLD = 2 [deprecated = true];
}}

service {svc} {{
  rpc {rpc}(M) returns ({msg});
  rpc {rpc}Server(M) returns (stream {msg});
  rpc {rpc}Client(stream {msg}) returns (M);
  rpc {rpc}Bidi(stream {msg}) returns (stream {msg});
}}

service Short{n} {{
  rpc {rpc}(M) returns (M);
}}

message M {{}}
"#,
            upper = en.to_uppercase()
        );
        let path = dir.join(format!("sweep{n}.proto"));
        std::fs::write(&path, proto).unwrap();
        files.push(path);
    }
    let generated = protoc_gen_rust_grpc::configure()
        .generate(&files, std::slice::from_ref(&dir))
        .unwrap();
    assert_eq!(generated.len(), SWEEP);
    assert_clean("sweep", &generated);
    let generated = protoc_gen_rust_grpc::configure()
        .options(protoc_gen_rust_grpc::Options::parse("runtime_crate=crate").unwrap())
        .generate(&files, &[dir])
        .unwrap();
    assert_clean("sweep_crate_runtime", &generated);
}
