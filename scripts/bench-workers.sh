#!/usr/bin/env bash
# Smoke test of the qps worker protocol: qps_json_driver drives every pairing of benchmark
# workers -- grpc-rust's benchmark_worker, grpc-go's bench_worker, grpc C++'s qps_worker -- as
# server and as client, with the seconds-long scenarios in bench/scenarios/smoke_*.json.
# Prints one line per pairing (QPS and latencies; NOT a benchmark: runs are 2 s long) and
# exits 1 if any pairing fails or reports 0 QPS.
#
# Usage: scripts/bench-workers.sh [--build] [SCENARIO.json ...]
#   --build   build the peers (go, cpp-qps) and benchmark_worker (release) first
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/peers/common.sh
if [ "${1:-}" = --build ]; then
  shift
  bash scripts/peers/build-all.sh go cpp-qps
  timeout 3600 cargo build --release -p conformance --bin benchmark_worker
fi
SCEN=("$@")
[ ${#SCEN[@]} -gt 0 ] || SCEN=(bench/scenarios/smoke_unary.json bench/scenarios/smoke_streaming.json)
DRIVER=$GRPC_RUST_PEERS/cpp/qps_json_driver
declare -A W=(
  [grpc-rust]="$ROOT/target/release/benchmark_worker"
  [grpc-go]="$GRPC_RUST_PEERS/go/bin/bench_worker"
  [grpc-c++]="$GRPC_RUST_PEERS/cpp/qps_worker"
)
for k in "${!W[@]}"; do [ -x "${W[$k]}" ] || { echo "missing ${W[$k]} (run with --build)"; exit 1; }; done
[ -x "$DRIVER" ] || { echo "missing $DRIVER (run with --build)"; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LOGS=$(mktemp -d)
fail=0
for sc in "${SCEN[@]}"; do
  for s in grpc-rust grpc-go grpc-c++; do
    for c in grpc-rust grpc-go grpc-c++; do
      sp=$(port); cp=$(port)
      # the C++ worker needs --server_port (else it asks grpc's port server and aborts)
      extra_s=(); [ "$s" = grpc-c++ ] && extra_s=(--server_port="$(port)")
      extra_c=(); [ "$c" = grpc-c++ ] && extra_c=(--server_port="$(port)")
      timeout 120 "${W[$s]}" --driver_port="$sp" "${extra_s[@]}" > "$LOGS/s.log" 2>&1 & spid=$!
      timeout 120 "${W[$c]}" --driver_port="$cp" "${extra_c[@]}" > "$LOGS/c.log" 2>&1 & cpid=$!
      sleep 1
      out=$(QPS_WORKERS=127.0.0.1:$sp,127.0.0.1:$cp timeout 60 "$DRIVER" --scenarios_file="$sc" 2>&1 || true)
      kill "$spid" "$cpid" 2>/dev/null || true
      wait "$spid" "$cpid" 2>/dev/null || true
      qps=$(grep -oE 'QPS: [0-9.]+' <<<"$out" | head -1 | cut -d' ' -f2)
      lat=$(grep -oE 'Latencies \(50/90/95/99/99.9%-ile\): [0-9./]+ us' <<<"$out" | head -1 | cut -d' ' -f3)
      st=ok
      if [ -z "$qps" ] || [ "${qps%.*}" = 0 ]; then st=FAIL; fail=1; fi
      printf '%-4s %-28s server %-9s client %-9s QPS %-10s p50/90/95/99/99.9 %s us\n' "$st" "$(basename "$sc" .json)" "$s" "$c" "${qps:-none}" "${lat:-none}"
    done
  done
done
rm -rf "$LOGS"
exit $fail
