#!/usr/bin/env bash
# Verify protos/ against the canonical upstream definitions (see check-protos.py).
# Fetches the Debian grpc 1.51.1 source package and a Python venv with grpcio-tools
# and googleapis-common-protos into $GRPC_RUST_PEERS (~/.cache/grpc-rust/peers) once.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/peers/common.sh"
fetch_grpc_source
ensure_py_venv
GOOGLEAPIS=$("$PEERS_PY" -c 'import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))')
exec "$PEERS_PY" "$HERE/check-protos.py" --grpc-src "$GRPC_SRC" --googleapis "$GOOGLEAPIS" --ours "$HERE/../protos" "$@"
