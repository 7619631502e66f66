# shellcheck shell=bash
# Shared helpers for the interop peer build scripts. Source it; do not run it.
#
# Everything is cached under $GRPC_RUST_PEERS (default ~/.cache/grpc-rust/peers),
# outside the repository; nothing built here is ever committed. Sources come
# only from Debian source packages (apt-get source) and PyPI (pip).
#
# Layout:
#   $GRPC_RUST_PEERS/src/grpc-1.51.1   grpc source package (C++, Python, Ruby, protos)
#   $GRPC_RUST_PEERS/py/venv           Python venv with grpcio, grpcio-tools, ...
#   $GRPC_RUST_PEERS/go/bin            grpc-go 1.33 binaries
#   $GRPC_RUST_PEERS/cpp/              grpc C++ 1.51 binaries
#   $GRPC_RUST_PEERS/py/interop        Python interop tree
#   $GRPC_RUST_PEERS/ruby/             Ruby interop tree

GRPC_RUST_PEERS=${GRPC_RUST_PEERS:-$HOME/.cache/grpc-rust/peers}
export GRPC_RUST_PEERS
GRPC_DEB_VERSION=1.51.1-3
GRPC_VERSION=1.51.1
GRPC_SRC=$GRPC_RUST_PEERS/src/grpc-$GRPC_VERSION
GO_GRPC_DEB_VERSION=1.33.3-2
GO_GRPC_VERSION=1.33.3
PEERS_PY=$GRPC_RUST_PEERS/py/venv/bin/python
export DEBIAN_FRONTEND=noninteractive

log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a command as root (directly, or through sudo when available).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -E "$@"
  else die "need root (or sudo) for: $*"; fi
}

# Install Debian packages that are not installed yet (quietly; no-op when all present).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { as_root apt-get update >/dev/null && as_root apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
}

# Make `apt-get source` work: add a deb-src entry for bookworm if none exists.
ensure_debsrc() {
  if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src' /etc/apt/sources.list; then
    return 0
  fi
  log "enabling deb-src (bookworm main)"
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | as_root tee /etc/apt/sources.list.d/grpc-rust-debsrc.sources >/dev/null
  as_root apt-get update >/dev/null
}

# Download Debian source package $1=version-spec (e.g. grpc=1.51.1-3) into $2 unless $3 exists there.
apt_source_download() {
  local spec=$1 dir=$2 marker=$3
  mkdir -p "$dir"
  [ -f "$dir/$marker" ] && return 0
  ensure_debsrc
  apt_install dpkg-dev
  log "apt-get source --download-only $spec"
  (cd "$dir" && apt-get source --download-only "$spec" >/dev/null 2>&1) \
    || (cd "$dir" && as_root apt-get source --download-only "$spec" >/dev/null) \
    || die "apt-get source $spec failed"
}

# Unpack the grpc source package into $GRPC_SRC (once).
fetch_grpc_source() {
  [ -f "$GRPC_SRC/src/proto/grpc/testing/test.proto" ] && return 0
  apt_source_download "grpc=$GRPC_DEB_VERSION" "$GRPC_RUST_PEERS/src" "grpc_$GRPC_VERSION.orig.tar.gz"
  log "unpacking grpc $GRPC_VERSION source"
  (cd "$GRPC_RUST_PEERS/src" && rm -rf "grpc-$GRPC_VERSION" && tar xzf "grpc_$GRPC_VERSION.orig.tar.gz")
}

# Python venv with the PyPI grpc packages (once; pip is skipped when they import).
ensure_py_venv() {
  if [ ! -x "$PEERS_PY" ]; then
    command -v python3 >/dev/null || apt_install python3 python3-venv
    log "creating venv $GRPC_RUST_PEERS/py/venv"
    mkdir -p "$GRPC_RUST_PEERS/py"
    python3 -m venv "$GRPC_RUST_PEERS/py/venv" || { apt_install python3-venv; python3 -m venv "$GRPC_RUST_PEERS/py/venv"; }
  fi
  if ! "$PEERS_PY" -c 'import grpc, grpc_tools, grpc_health, grpc_reflection, grpc_status, google.rpc.status_pb2, google.auth, requests' 2>/dev/null; then
    log "pip install grpcio grpcio-tools ... (PyPI)"
    "$PEERS_PY" -m pip install -q --disable-pip-version-check grpcio grpcio-tools grpcio-health-checking \
      grpcio-reflection grpcio-status googleapis-common-protos google-auth requests \
      || die "pip install failed"
  fi
}
