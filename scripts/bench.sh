#!/usr/bin/env bash
# Side-by-side benchmarks of grpc-rust against tonic, grpc-go (and grpc C++ for the qps
# scenario), with a bare h2 server as the ceiling. See docs/benchmarks.md for the results and
# how to read them; issue 7 for the plan.
#
# What this does, in one go:
#   1. installs what it needs: h2load (Debian nghttp2-client), grpc-go's benchmark binaries and
#      (unless --no-cpp) grpc C++'s qps_worker + qps_json_driver via scripts/peers, and builds
#      grpc-go's benchmark server without profiling (bench/go-server);
#   2. builds release binaries: benchmark_worker (this workspace) and tonic-peer + h2-echo
#      (the separate bench/ workspace, target dir bench/target);
#   3. runs scripts/bench.py: every server pinned to CPU 0, every load generator to CPU 1,
#      N runs each (interleaved), medians and ratios -> docs/benchmarks.md + docs/benchmarks.svg
#      (+ docs/benchmarks-results.json with every raw number).
#
# Usage: scripts/bench.sh [--quick] [--runs N] [--only unary,latency,stream,client,memory,qps,channel]
#                         [--duration S] [--no-cpp] [--no-build] [--out FILE.md]
#   --quick      seconds-long runs, 1 run each, smaller memory probes: a smoke test, numbers
#                not meaningful (the report says so).
#   everything else is passed to scripts/bench.py (see `python3 scripts/bench.py --help`).
#
# Every process is bounded in time and listens on 127.0.0.1 only. Run it on a quiet machine:
# the report records the load average before and after.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/peers/common.sh

BUILD=1
CPP=1
for a in "$@"; do
  case $a in
    --no-build) BUILD=0;;
    --no-cpp) CPP=0;;
  esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# 1. tools and peers
command -v h2load >/dev/null || apt_install nghttp2-client
command -v taskset >/dev/null || apt_install util-linux
if [ "$BUILD" = 1 ]; then
  bash scripts/peers/build-all.sh go
  if [ "$CPP" = 1 ]; then bash scripts/peers/build-all.sh cpp-qps; fi
  GO_ROOT=$GRPC_RUST_PEERS/go
  if [ ! -x "$GO_ROOT/bin/go_bench_server_noprof" ] || [ bench/go-server/main.go -nt "$GO_ROOT/bin/go_bench_server_noprof" ]; then
    log "building grpc-go benchmark server without profiling (bench/go-server)"
    (cd bench/go-server && GO111MODULE=off GOPATH=$GO_ROOT/gopath:/usr/share/gocode GOFLAGS= \
      GOCACHE=$GO_ROOT/gocache timeout 900 go build -o "$GO_ROOT/bin/go_bench_server_noprof" main.go)
  fi

  # 2. release builds
  log "cargo build --release benchmark_worker"
  timeout 3600 cargo build --release -p conformance --bin benchmark_worker
  log "cargo build --release tonic-peer + h2-echo (bench/ workspace, target bench/target)"
  (cd bench && timeout 3600 cargo build --release)
fi

# 2b. the binary must hold this checkout's code: a target dir shared with another checkout
# (a git worktree, say) can make cargo reuse that checkout's artifacts (see built-here.py)
python3 scripts/built-here.py target/release/benchmark_worker "$ROOT"

# 3. run
ARGS=()
for a in "$@"; do
  case $a in --no-build) ;; *) ARGS+=("$a");; esac
done
exec python3 scripts/bench.py --peers "$GRPC_RUST_PEERS" "${ARGS[@]}"
