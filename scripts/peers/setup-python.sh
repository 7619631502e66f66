#!/usr/bin/env bash
# Set up the Python grpcio interop client and server: PyPI grpcio (+ tools) in a
# venv, the interop code from the Debian `grpc` 1.51.1 source package
# (src/python/grpcio_tests/tests/interop), and its testing protos generated
# with grpcio-tools. Result in $GRPC_RUST_PEERS/py/interop; run from there:
#   $GRPC_RUST_PEERS/py/venv/bin/python -m tests.interop.server --port N [--use_tls=true]
#   $GRPC_RUST_PEERS/py/venv/bin/python -m tests.interop.client --server_port N --test_case X
# Our one change to the upstream code: tests/interop/resources.py reads the TLS
# files from $INTEROP_TLS_CERT_FILE, $INTEROP_TLS_KEY_FILE and $INTEROP_CA_FILE
# when set (else its bundled grpc test credentials), so the server can serve
# grpc-rust's test certificates. The client trusts another CA through grpc's
# own GRPC_DEFAULT_SSL_ROOTS_FILE_PATH with --use_test_ca=false.
# Idempotent: exits at once when the tree is complete.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
ROOT=$GRPC_RUST_PEERS/py/interop
STAMP=$ROOT/.complete-$GRPC_VERSION
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && "$PEERS_PY" -c 'import grpc, grpc_tools' 2>/dev/null; then
  log "python peers: cached in $ROOT"; exit 0
fi
fetch_grpc_source
ensure_py_venv
log "assembling Python interop tree in $ROOT"
rm -rf "$ROOT" && mkdir -p "$ROOT/tests/unit"
cp -r "$GRPC_SRC/src/python/grpcio_tests/tests/interop" "$ROOT/tests/"
cp "$GRPC_SRC/src/python/grpcio_tests/tests/unit/test_common.py" "$ROOT/tests/unit/"
touch "$ROOT/tests/__init__.py" "$ROOT/tests/unit/__init__.py"
"$PEERS_PY" - "$ROOT/tests/interop/resources.py" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
helper = '''

def _read(env, resource):
    """grpc-rust: read a TLS file named by $env if set, else the bundled resource."""
    path = os.environ.get(env)
    if path:
        with open(path, 'rb') as f:
            return f.read()
    return pkgutil.get_data(__name__, resource)
'''
s = s.replace("import pkgutil\n", "import pkgutil\n" + helper, 1)
for fn, env in (("_ROOT_CERTIFICATES_RESOURCE_PATH", "INTEROP_CA_FILE"),
                ("_PRIVATE_KEY_RESOURCE_PATH", "INTEROP_TLS_KEY_FILE"),
                ("_CERTIFICATE_CHAIN_RESOURCE_PATH", "INTEROP_TLS_CERT_FILE")):
    old = f"pkgutil.get_data(__name__, {fn})"
    assert old in s, old
    s = s.replace(old, f"_read('{env}', {fn})")
open(p, "w").write(s)
PY
(cd "$ROOT" && "$PEERS_PY" -m grpc_tools.protoc -I "$GRPC_SRC" --python_out=. --grpc_python_out=. \
  "$GRPC_SRC"/src/proto/grpc/testing/{test,messages,empty}.proto)
(cd "$ROOT" && "$PEERS_PY" -c 'import tests.interop.client, tests.interop.server') || die "python interop tree does not import"
touch "$STAMP"
log "python peers ready in $ROOT"
