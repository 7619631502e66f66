#!/usr/bin/env bash
# Build grpc C++ 1.51.1 interop_server, interop_client (and, with QPS=1 or the
# `qps` argument, qps_worker + qps_json_driver) from the Debian `grpc` source
# package, linked against Debian's libgrpc++ 1.51.1, into $GRPC_RUST_PEERS/cpp.
# The testing protos are generated with protoc + grpc_cpp_plugin from
# protobuf-compiler-grpc. Idempotent: exits at once when the binaries exist;
# make is incremental otherwise. JOBS (default 2) sets make's parallelism.
#
# Usage: build-cpp.sh [interop|qps|all]     (default: interop)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
WHAT=${1:-interop}
case $WHAT in
  interop) BINS="interop_server interop_client";;
  qps) BINS="qps_worker qps_json_driver";;
  all) BINS="interop_server interop_client qps_worker qps_json_driver";;
  *) die "usage: build-cpp.sh [interop|qps|all]";;
esac
ROOT=$GRPC_RUST_PEERS/cpp
have_all() { local b; for b in $BINS; do [ -x "$ROOT/$b" ] || return 1; done; }
if [ "${FORCE:-0}" != 1 ] && have_all; then log "cpp peers ($WHAT): cached in $ROOT"; exit 0; fi

apt_install g++ make pkg-config protobuf-compiler libprotobuf-dev libgrpc++-dev libgrpc-dev \
  protobuf-compiler-grpc libabsl-dev libssl-dev
fetch_grpc_source
mkdir -p "$ROOT/gen"
cd "$ROOT"
PROTOS="test messages empty benchmark_service control payloads stats worker_service report_qps_scenario_service"
if [ ! -f gen/src/proto/grpc/testing/report_qps_scenario_service.grpc.pb.cc ]; then
  log "protoc: generating C++ for the testing protos"
  protoc -I "$GRPC_SRC" --cpp_out=gen --grpc_out=gen --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin \
    $(for p in $PROTOS; do echo "$GRPC_SRC/src/proto/grpc/testing/$p.proto"; done)
fi
log "make $BINS (-j${JOBS:-2}; first build takes a few minutes)"
make -s -f "$HERE/cpp-interop.mk" G="$GRPC_SRC" -j"${JOBS:-2}" $BINS
log "cpp peers built: $(cd "$ROOT" && ls $BINS | tr '\n' ' ')"
