//! The `protoc-gen-rust-grpc` binary: a thin wrapper around [`protoc_gen_rust_grpc::plugin`].

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("protoc-gen-rust-grpc {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "protoc-gen-rust-grpc {}: protoc plugin generating Rust gRPC code.\n\
             Usage: protoc --rust-grpc_out=DIR [--rust-grpc_opt=k=v,...] -I protos x.proto\n\
             Options: client=true|false, server=true|false, messages=true|false,\n\
             extern_path=.pkg=::rust::path (repeatable), runtime_crate=::grpc_runtime, include_file=mod.rs",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("protoc-gen-rust-grpc: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    match protoc_gen_rust_grpc::plugin::run(&input) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(&output).and_then(|()| stdout.flush()) {
                eprintln!("protoc-gen-rust-grpc: cannot write stdout: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("protoc-gen-rust-grpc: {e}");
            ExitCode::FAILURE
        }
    }
}
