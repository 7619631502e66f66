#!/bin/sh
# Regenerates the code grpc-runtime checks in (google.rpc messages, health and
# reflection services) with our own plugin, runtime_crate=crate. The list of
# files lives in protoc-gen-rust-grpc/tests/runtime_generated.rs, whose
# `checked_in_files_are_fresh` test fails when a file is stale.
set -eu
cd "$(dirname "$0")/.."
cargo test -j2 -p protoc-gen-rust-grpc --test runtime_generated -- --ignored --exact regenerate
git status --short grpc-runtime/src/generated
