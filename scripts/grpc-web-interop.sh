#!/usr/bin/env bash
# gRPC-Web interop with clients we did not write: `buf curl --protocol grpcweb` (npm
# @bufbuild/buf, Connect-Go's gRPC-Web client) against our interop_server, over HTTP/1.1
# (plaintext), HTTP/2 (prior knowledge, plaintext) and HTTP/2 over TLS (ALPN), plus curl
# for gRPC-Web over HTTP/1.1 on TLS (ALPN http/1.1) and a CORS preflight. The schema
# comes from protos/ (grpc/testing/test.proto): buf has no reflection over gRPC-Web.
#
#   scripts/grpc-web-interop.sh [--no-build]
#
# Installs buf into ~/.cache/grpc-rust/buf (npm). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
[ "${1:-}" = "--no-build" ] && BUILD=0
CACHE=${GRPC_RUST_CACHE:-$HOME/.cache/grpc-rust}
BUF=$CACHE/buf/node_modules/.bin/buf
if [ ! -x "$BUF" ]; then
  mkdir -p "$CACHE/buf"
  npm install --no-audit --no-fund --prefix "$CACHE/buf" @bufbuild/buf >/dev/null
fi
TARGET=${CARGO_TARGET_DIR:-target}
if [ $BUILD = 1 ]; then
  cargo build -j2 -p conformance --bin interop_server
fi
SERVER=$TARGET/debug/interop_server
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port) TLS_PORT=$(free_port) OFF_PORT=$(free_port)
LOG=$(mktemp -d)
"$SERVER" --port="$PORT" --host=127.0.0.1 >"$LOG/plain.log" 2>&1 & P1=$!
"$SERVER" --port="$TLS_PORT" --host=127.0.0.1 --use_tls=true >"$LOG/tls.log" 2>&1 & P2=$!
"$SERVER" --port="$OFF_PORT" --host=127.0.0.1 --grpc_web=false >"$LOG/off.log" 2>&1 & P3=$!
trap 'kill $P1 $P2 $P3 2>/dev/null || true; rm -rf "$LOG"' EXIT
for p in $PORT $TLS_PORT $OFF_PORT; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

FAIL=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; FAIL=1; }
SVC=grpc.testing.TestService
bufcurl() { "$BUF" curl --protocol grpcweb --schema protos "$@"; }
# expect NAME PATTERN CMD...: CMD's stdout+stderr must match PATTERN (and CMD exit 0
# unless NAME starts with "error:").
expect() {
  local name=$1 pattern=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $name != error:* && $rc != 0 ]]; then fail "$name (exit $rc): $out"; return; fi
  if [[ $name == error:* && $rc == 0 ]]; then fail "$name (expected a failure): $out"; return; fi
  if grep -Eiq -- "$pattern" <<<"$out"; then pass "$name"; else fail "$name: no /$pattern/ in: $out"; fi
}

CA=(--cacert conformance/certs/ca.pem --servername foo.test.google.fr)
for transport in http1 h2 tls; do
  case $transport in
    http1) URL=http://127.0.0.1:$PORT; EXTRA=() ;;
    h2) URL=http://127.0.0.1:$PORT; EXTRA=(--http2-prior-knowledge) ;;
    tls) URL=https://127.0.0.1:$TLS_PORT; EXTRA=("${CA[@]}") ;;
  esac
  expect "$transport unary" '"body": "AAAAAAAA"' \
    bufcurl "${EXTRA[@]}" --data '{"response_size": 6}' "$URL/$SVC/UnaryCall"
  expect "$transport empty call" '^\{\}$' bufcurl "${EXTRA[@]}" "$URL/$SVC/EmptyCall"
  expect "$transport server streaming (3 messages)" '"body": "AAAAAA=="' \
    bufcurl "${EXTRA[@]}" --data '{"response_parameters":[{"size":1},{"size":2},{"size":4}]}' "$URL/$SVC/StreamingOutputCall"
  expect "$transport metadata echo (response headers)" '< \(#1\) x-grpc-test-echo-initial: hello' \
    bufcurl "${EXTRA[@]}" -v -H 'x-grpc-test-echo-initial: hello' --data '{}' "$URL/$SVC/UnaryCall"
  expect "error:$transport status and message" '"code": "not_found".*|"message": "gone away"' \
    bufcurl "${EXTRA[@]}" --data '{"response_status":{"code":5,"message":"gone away"}}' "$URL/$SVC/UnaryCall"
  expect "error:$transport client streaming refused" 'unimplemented' \
    bufcurl "${EXTRA[@]}" --data '{}' "$URL/$SVC/StreamingInputCall"
done
# buf curl neither sets grpc-timeout (reserved) nor prints gRPC-Web trailers: curl checks
# the deadline and the -bin trailer frame.
printf '\0\0\0\0\x08\x12\x06\x08\x01\x10\x80\x89\x7a' >"$LOG/slow.bin"  # one response after 2 s
expect "http1 deadline (curl)" 'grpc-status: 4' \
  curl -sS -i -H 'content-type: application/grpc-web' -H 'grpc-timeout: 100m' --data-binary @"$LOG/slow.bin" \
  "http://127.0.0.1:$PORT/$SVC/StreamingOutputCall"
printf '\0\0\0\0\0' >"$LOG/empty.bin"
expect "http1 -bin trailer round trip (curl)" 'x-grpc-test-echo-trailing-bin: q83vEjRW' sh -c \
  "curl -sS -H 'content-type: application/grpc-web' -H 'x-grpc-test-echo-trailing-bin: q83vEjRW' \
   --data-binary @$LOG/empty.bin http://127.0.0.1:$PORT/$SVC/UnaryCall | tr -d '\0' | strings"

# gRPC-Web over HTTP/1.1 on TLS (ALPN http/1.1), with curl.
expect "tls http1 (curl, ALPN http/1.1)" 'grpc-status: 0' sh -c \
  "curl -sS --http1.1 --cacert conformance/certs/ca.pem --resolve foo.test.google.fr:$TLS_PORT:127.0.0.1 \
   -H 'content-type: application/grpc-web+proto' --data-binary @$LOG/empty.bin \
   https://foo.test.google.fr:$TLS_PORT/$SVC/EmptyCall -o - | tr -d '\0' | strings"
expect "CORS preflight" 'access-control-allow-origin: \*' \
  curl -sS -i -X OPTIONS -H 'origin: http://example.test' -H 'access-control-request-method: POST' \
  -H 'access-control-request-headers: x-grpc-web,content-type,x-user-agent' "http://127.0.0.1:$PORT/$SVC/UnaryCall"
# Native gRPC on the same port still works (buf curl's own gRPC client).
expect "native gRPC alongside" '"body": "AAAA"' \
  "$BUF" curl --protocol grpc --http2-prior-knowledge --schema protos --data '{"response_size": 3}' "http://127.0.0.1:$PORT/$SVC/UnaryCall"
# --grpc_web=false: HTTP/1.1 is not served, native gRPC is.
expect "error:grpc_web=false refuses HTTP/1.1" '.' bufcurl --data '{}' "http://127.0.0.1:$OFF_PORT/$SVC/EmptyCall"
expect "grpc_web=false native gRPC" '^\{\}$' \
  "$BUF" curl --protocol grpc --http2-prior-knowledge --schema protos "http://127.0.0.1:$OFF_PORT/$SVC/EmptyCall"

if [ $FAIL != 0 ]; then
  echo "gRPC-Web interop: FAILED (server logs: plain/tls/off)"; cat "$LOG"/*.log | tail -20
  exit 1
fi
echo "gRPC-Web interop: all passed ($("$BUF" --version), buf curl --protocol grpcweb)"
