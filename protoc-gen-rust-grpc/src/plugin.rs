//! The protoc plugin protocol: decode a `CodeGeneratorRequest`, run [`crate::generate`],
//! encode a `CodeGeneratorResponse`.

use prost::Message as _;
use prost_types::compiler::{code_generator_response, CodeGeneratorRequest, CodeGeneratorResponse};

use crate::{generate, Error, Options};

/// `CodeGeneratorResponse.Feature.FEATURE_PROTO3_OPTIONAL`.
const FEATURE_PROTO3_OPTIONAL: u64 = 1;

/// Handles one serialized `CodeGeneratorRequest` and returns the serialized response.
///
/// Problems with the options or the protos are reported inside the response (`error`), as
/// protoc expects. Only a request that cannot be decoded is an `Err`: the caller should
/// print it and exit non-zero.
pub fn run(request: &[u8]) -> Result<Vec<u8>, Error> {
    if request.is_empty() {
        return Err(Error::new(
            "empty CodeGeneratorRequest on stdin; this program is a protoc plugin: run it through `protoc --rust-grpc_out=DIR ...`",
        ));
    }
    let request = CodeGeneratorRequest::decode(request)
        .map_err(|e| Error::new(format!("malformed CodeGeneratorRequest on stdin: {e}")))?;
    Ok(respond(&request).encode_to_vec())
}

/// Builds the response for a decoded request.
pub fn respond(request: &CodeGeneratorRequest) -> CodeGeneratorResponse {
    let mut response = CodeGeneratorResponse {
        supported_features: Some(FEATURE_PROTO3_OPTIONAL),
        ..Default::default()
    };
    let result = Options::parse(request.parameter())
        .and_then(|options| generate(&request.file_to_generate, &request.proto_file, &options));
    match result {
        Ok(files) => {
            response.file = files
                .into_iter()
                .map(|f| code_generator_response::File {
                    name: Some(f.name),
                    content: Some(f.content),
                    ..Default::default()
                })
                .collect();
        }
        Err(e) => response.error = Some(e.to_string()),
    }
    response
}
