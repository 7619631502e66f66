#!/usr/bin/env bash
# gRPC-Web in a real browser, and Connect-ES from Node:
#  1. the browser example (`--bin grpc-web-browser`, examples/web/) in headless Chromium
#     (Debian's chromium, driven by playwright-core): the page calls the server through
#     Connect-ES's gRPC-Web transport; examples/web/test/browser.mjs checks the unary
#     reply, the streamed replies (in order, arriving one by one), the error statuses
#     (Trailers-Only and trailer frame), the CORS preflights, and that a page from an
#     origin not allowed is refused; screenshot in $TARGET/browser-test.png;
#  2. Connect-ES's gRPC-Web transports from Node (connect-node over HTTP/1.1 and h2,
#     connect-web on fetch) against interop_server: unary, server streaming, an error
#     status, client streaming refused (h2);
#  3. `buf curl --list-services` (reflection) against interop_server: exactly its test
#     service, health and both reflection versions, and a call with the schema from
#     reflection.
# Also regenerates the page's code (buf generate + protoc-gen-es) and bundles it (esbuild):
# the result must equal the committed examples/web/dist/app.js (--update rewrites it).
#
#   scripts/browser-test.sh [--no-build] [--update]
#
# Installs Debian's chromium (apt) if missing and the npm packages of examples/web
# (package-lock.json, `npm ci`) into examples/web/node_modules. Exits non-zero on any
# failure; the browser part is bounded by 120 s, the Node part by 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1 UPDATE=0
for a in "$@"; do
  case $a in
    --no-build) BUILD=0 ;;
    --update) UPDATE=1 ;;
    *) echo "usage: $0 [--no-build] [--update]" >&2; exit 64 ;;
  esac
done
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
step() { echo "-- [$(( $(date +%s) - start ))s] $*"; }
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  step "installing chromium (apt)"
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  step "installing nodejs and npm (apt)"
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
WEB=examples/web
# npm ci only when package-lock.json changed since the last install.
if ! cmp -s "$WEB/package-lock.json" "$WEB/node_modules/.installed-lock.json" 2>/dev/null; then
  step "npm ci ($WEB)"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$WEB/package-lock.json" "$WEB/node_modules/.installed-lock.json"
fi
TARGET=${CARGO_TARGET_DIR:-target}
OUT=$TARGET/browser-test
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

step "generate (buf + protoc-gen-es) and bundle (esbuild)"
(
  cd "$WEB"
  npm run -s generate
  npx esbuild src/app.ts --bundle --minify --format=esm --target=es2020 --legal-comments=none \
    --log-level=warning --outfile="$OUT/app.js"
  npx esbuild test/node-interop.ts --bundle --platform=node --format=esm --log-level=warning \
    --outfile="$OUT/node-interop.mjs"
)
FAIL=0
if ! cmp -s "$OUT/app.js" "$WEB/dist/app.js"; then
  if [ $UPDATE = 1 ]; then
    cp "$OUT/app.js" "$WEB/dist/app.js"
    echo "updated $WEB/dist/app.js (rebuild the example binary: it embeds it)"
  else
    echo "FAIL bundle: $WEB/dist/app.js differs from the bundle built from $WEB/src (run $0 --update)"
    FAIL=1
  fi
else
  echo "PASS bundle: $WEB/dist/app.js is what $WEB/src builds ($(wc -c <"$OUT/app.js") bytes)"
fi

if [ $BUILD = 1 ]; then
  step "cargo build (grpc-web-browser, interop_server)"
  cargo build -j2 -p examples --bin grpc-web-browser -p conformance --bin interop_server
fi
LOG=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$LOG"' EXIT
"$TARGET/debug/grpc-web-browser" --addr 127.0.0.1:0 --page-addr 127.0.0.1:0 >"$LOG/example.out" 2>&1 &
PIDS+=($!)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
"$TARGET/debug/interop_server" --port="$PORT" --host=127.0.0.1 >"$LOG/interop.log" 2>&1 &
PIDS+=($!)
PAGE=""
for _ in $(seq 100); do
  PAGE=$(sed -n 's/^page: \(http:[^ ]*\).*/\1/p' "$LOG/example.out")
  [ -n "$PAGE" ] && break
  sleep 0.1
done
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
if [ -z "$PAGE" ]; then
  echo "FAIL: grpc-web-browser did not start:"; cat "$LOG/example.out"; exit 1
fi

step "browser: $PAGE in $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
rc=0
(cd "$WEB" && CHROMIUM=$CHROMIUM timeout -k 5 120 node test/browser.mjs "$PAGE" "$OUT/browser-test.png") \
  | tee "$LOG/browser.txt" || rc=$?
[ $rc = 0 ] || { echo "FAIL browser part (exit $rc)"; FAIL=1; }
echo "screenshot: $OUT/browser-test.png"

step "node: Connect-ES gRPC-Web transports against interop_server (127.0.0.1:$PORT)"
rc=0
timeout -k 5 60 node "$OUT/node-interop.mjs" "http://127.0.0.1:$PORT" | tee "$LOG/node.txt" || rc=$?
[ $rc = 0 ] || { echo "FAIL node part (exit $rc)"; FAIL=1; }

step "buf curl: reflection lists every service of interop_server"
# The interop server adds reflection in one line (ServerBuilder::add_reflection) next to
# the test service and health: buf's reflection client (v1, falling back to v1alpha)
# must list exactly these, and describe a method through reflection alone.
WANT="grpc.health.v1.Health
grpc.reflection.v1.ServerReflection
grpc.reflection.v1alpha.ServerReflection
grpc.testing.TestService"
BUF=$WEB/node_modules/.bin/buf
GOT=$(timeout -k 5 30 "$BUF" curl --list-services --protocol grpc --http2-prior-knowledge \
  "http://127.0.0.1:$PORT" 2>&1 | sort) || true
if [ "$GOT" = "$WANT" ]; then
  echo "PASS buf curl --list-services: $(tr '\n' ' ' <<<"$GOT")" | tee "$LOG/buf.txt"
else
  echo "FAIL buf curl --list-services: got [$GOT], want [$WANT]" | tee "$LOG/buf.txt"
fi
GOT=$(timeout -k 5 30 "$BUF" curl --protocol grpc --http2-prior-knowledge --data '{"response_size": 3}' \
  "http://127.0.0.1:$PORT/grpc.testing.TestService/UnaryCall" 2>&1) || true
if grep -q '"body": "AAAA"' <<<"$GOT"; then
  echo "PASS buf curl UnaryCall with the schema from reflection" | tee -a "$LOG/buf.txt"
else
  echo "FAIL buf curl UnaryCall with the schema from reflection: $GOT" | tee -a "$LOG/buf.txt"
fi

passed=$(cat "$LOG/browser.txt" "$LOG/node.txt" "$LOG/buf.txt" | grep -c '^PASS' || true)
failed=$(cat "$LOG/browser.txt" "$LOG/node.txt" "$LOG/buf.txt" | grep -c '^FAIL' || true)
[ $FAIL = 0 ] || failed=$((failed > 0 ? failed : 1))
step "done"
echo "browser-test: $passed passed, $failed failed"
if [ $FAIL != 0 ] || [ "$failed" != 0 ]; then
  echo "server output:"; tail -20 "$LOG/example.out"
  exit 1
fi
