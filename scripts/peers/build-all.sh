#!/usr/bin/env bash
# Build or set up every interop peer into $GRPC_RUST_PEERS (~/.cache/grpc-rust/peers):
# grpc-go 1.33 (Debian source), grpc C++ 1.51 (Debian source + system libgrpc++),
# Python grpcio (PyPI) with grpc 1.51's interop code. Each step is skipped when
# its output is already cached, so a second run takes about a second.
#
# Usage: build-all.sh [go] [cpp] [cpp-qps] [python]   (no argument: go cpp python)
#   cpp-qps also builds qps_worker and qps_json_driver (benchmarks).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
WANT=${*:-go cpp python}
start=$(date +%s)
for w in $WANT; do
  t0=$(date +%s)
  case $w in
    go) bash "$HERE/build-go.sh";;
    cpp) bash "$HERE/build-cpp.sh" interop;;
    cpp-qps) bash "$HERE/build-cpp.sh" all;;
    python) bash "$HERE/setup-python.sh";;
    *) die "unknown peer '$w' (go, cpp, cpp-qps, python)";;
  esac
  log "$w ready ($(( $(date +%s) - t0 )) s)"
done
log "peers ready in $GRPC_RUST_PEERS ($(( $(date +%s) - start )) s)"
