#!/usr/bin/env bash
# grpc-rust interop matrix: our conformance binaries against grpc-go, grpc C++,
# Python grpcio and Ruby grpc, both directions, plaintext and TLS.
#
#   scripts/interop.sh [--no-build] [--no-build-ours] [matrix options...]
#
# 1. Builds the peers into $GRPC_RUST_PEERS (default ~/.cache/grpc-rust/peers) unless
#    cached (scripts/peers/build-all.sh; first run ~2 min, then ~1 s).
# 2. Builds our interop_server/interop_client with
#    `cargo build --release -p conformance --bin interop_server --bin interop_client`
#    unless OURS_BIN_DIR names a directory holding them already. If the conformance
#    crate does not exist yet, "ours" pairs are skipped with that reason.
# 3. Runs scripts/interop/matrix.py, which prints the case x pair matrix, optionally
#    writes it as markdown (--markdown FILE), and exits 1 on any failure that is not
#    a known peer limitation. Per-run logs go to target/interop-logs/.
#    It also runs the channel cases (round_robin_soak, pick_first_failover,
#    retry_attempts; plaintext, ~2 s): our interop_client with one --server_uri target
#    over several peer servers at once (one per --peers entry), checking its load
#    balancing and retries against servers we did not write; they count like any case.
#
# Common matrix options (see scripts/interop/matrix.py --help):
#   --peers go,cpp,python,ruby   --pairs ours-both-ways|peer-vs-peer|CLIENT:SERVER,...
#   --cases a,b,c (per-pair and channel cases)   --security plaintext,tls   --timeout 30
#   --soak-iterations 10   --soak-timeout 120   --channel-soak-iterations 20
#   --markdown FILE   --fail-fast
#   CI also runs: --peers go,python --cases rpc_soak,channel_soak --security plaintext
#   --soak-iterations 1000 (docs/reliability.md "Soak")
# Environment: GRPC_RUST_PEERS (peer cache), OURS_BIN_DIR (prebuilt binaries),
#   PEERS (peers to build, default "go cpp python ruby"), CARGO_BUILD_JOBS (default 2).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD_PEERS=1 BUILD_OURS=1
ARGS=()
for a in "$@"; do
  case $a in
    --no-build) BUILD_PEERS=0; BUILD_OURS=0;;
    --no-build-ours) BUILD_OURS=0;;
    --no-build-peers) BUILD_PEERS=0;;
    -h|--help) awk 'NR>1 && !/^#/ {exit} NR>1 {sub(/^# ?/, ""); print}' "$0"; exit 0;;
    *) ARGS+=("$a");;
  esac
done

if [ $BUILD_PEERS = 1 ]; then
  # shellcheck disable=SC2086
  bash "$HERE/peers/build-all.sh" ${PEERS:-go cpp python ruby}
fi

if [ -n "${OURS_BIN_DIR:-}" ]; then
  echo "using our binaries from OURS_BIN_DIR=$OURS_BIN_DIR"
elif [ $BUILD_OURS = 1 ]; then
  if [ -f "$REPO/conformance/Cargo.toml" ]; then
    echo "building our conformance binaries (release)"
    (cd "$REPO" && cargo build --release -j"${CARGO_BUILD_JOBS:-2}" -p conformance \
      --bin interop_server --bin interop_client)
  else
    echo "NOTE: no conformance crate ($REPO/conformance/Cargo.toml missing): 'ours' pairs will be skipped"
  fi
fi
export OURS_BIN_DIR=${OURS_BIN_DIR:-$REPO/target/release}

PY=python3
command -v python3 >/dev/null || PY=${GRPC_RUST_PEERS:-$HOME/.cache/grpc-rust/peers}/py/venv/bin/python
exec "$PY" "$HERE/interop/matrix.py" ${ARGS[@]+"${ARGS[@]}"}
