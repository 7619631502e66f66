#!/usr/bin/env bash
# Runs the README's commands as a user would type them (CI calls this after the tests):
#   cargo run --release -p examples --bin demo
#   cargo install --path protoc-gen-rust-grpc ; protoc --rust-grpc_out=... helloworld.proto
# and checks the plugin's output equals what the build.rs path generated for the same proto.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

echo "== README: cargo run --release -p examples --bin demo"
cargo run --release -j2 -p examples --bin demo

echo "== README: cargo install --path protoc-gen-rust-grpc"
inst=$(mktemp -d)
cargo install -q -j2 --locked --path protoc-gen-rust-grpc --root "$inst"
export PATH="$inst/bin:$PATH"
protoc-gen-rust-grpc --version

if ! command -v protoc >/dev/null; then
  echo "protoc not found: installing Debian's protobuf-compiler"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get install -y -q protobuf-compiler >/dev/null 2>&1) || { apt-get update -q >/dev/null && apt-get install -y -q protobuf-compiler >/dev/null; }
fi
protoc --version

echo "== README: protoc --rust-grpc_out=src/generated -I protos protos/examples/helloworld/helloworld.proto"
work=$(mktemp -d)
mkdir -p "$work/src/generated"
cp -r protos "$work/protos"
(cd "$work" && protoc --rust-grpc_out=src/generated -I protos protos/examples/helloworld/helloworld.proto)
test -s "$work/src/generated/helloworld.rs"
grep -q "pub mod greeter_client" "$work/src/generated/helloworld.rs"
grep -q "pub mod greeter_server" "$work/src/generated/helloworld.rs"
built=$(find "$CARGO_TARGET_DIR"/release/build -path '*examples-*/out/helloworld.rs' -newer Cargo.toml 2>/dev/null | head -1)
if [ -n "$built" ]; then
  cmp "$work/src/generated/helloworld.rs" "$built" && echo "plugin output == build.rs output ($built)"
fi
rm -rf "$work" "$inst"

echo "== README: the build.rs quick start, built and run as a fresh crate"
qs=$(mktemp -d)/quickstart
mkdir -p "$qs/src"
cp -r protos "$qs/protos"
cp Cargo.lock "$qs/Cargo.lock"
python3 - "$root/README.md" "$qs" "$root" <<'PY'
import re, sys
readme, qs, root = sys.argv[1:]
text = open(readme).read()
section = text.split("### Or generate from build.rs", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```(toml|rust)\n(.*?)```", section, re.S)
toml = [b for k, b in blocks if k == "toml"][0].replace('path = "../', 'path = "' + root + '/')
build = [b for k, b in blocks if k == "rust" and b.startswith("// build.rs")][0]
main = [b for k, b in blocks if k == "rust" and b.startswith("// src/main.rs")][0]
open(qs + "/Cargo.toml", "w").write('[package]\nname = "quickstart"\nversion = "0.1.0"\nedition = "2021"\n\n' + toml)
open(qs + "/build.rs", "w").write(build)
open(qs + "/src/main.rs", "w").write(main)
PY
out=$(cd "$qs" && cargo run -q -j2)
echo "quickstart printed: $out"
[ "$out" = "Hello world" ]
echo "README commands: ok"
