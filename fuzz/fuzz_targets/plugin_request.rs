//! The plugin's input: arbitrary bytes as the serialized `CodeGeneratorRequest`
//! ([`protoc_gen_rust_grpc::plugin::run`]). It must answer `Err` (undecodable) or a
//! response (possibly carrying `error`), never panic; a response is a valid
//! `CodeGeneratorResponse` with either files or an error, never both, and never an error
//! saying our own generator panicked (prost-build's panics on odd descriptors are
//! contained by the plugin and allowed, see `grpc_rust_fuzz::contain_prost_build_panics`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost_types::compiler::CodeGeneratorResponse;

fuzz_target!(init: grpc_rust_fuzz::contain_prost_build_panics(), |data: &[u8]| {
    if let Ok(out) = protoc_gen_rust_grpc::plugin::run(data) {
        let response = CodeGeneratorResponse::decode(out.as_slice()).expect("the response decodes");
        grpc_rust_fuzz::check_plugin_response(&response);
    }
});
