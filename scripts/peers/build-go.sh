#!/usr/bin/env bash
# Build grpc-go 1.33.3 interop and benchmark binaries offline from Debian's
# golang-google-grpc source package, into $GRPC_RUST_PEERS/go/bin:
#   interop_server, interop_client, http2_negative_client,
#   bench_worker, bench_client, bench_server
# and soak_client (scripts/peers/go-soak: rpc_soak/channel_soak on grpc-go 1.33, whose
# interop client lacks them) and authz_client (scripts/peers/go-authz: client
# certificates and per-call tokens against an A43 policy, for tests/peer_go.rs).
# GOPATH mode (GO111MODULE=off) against Debian's Go packages. The package's own
# Debian patches are applied: one swaps the SHA-1 test certificates that Go >= 1.18
# rejects for SHA-256 ones. Idempotent: exits at once when all binaries exist
# (FORCE=1 rebuilds).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
ROOT=$GRPC_RUST_PEERS/go
BINS="interop_server interop_client http2_negative_client bench_worker bench_client bench_server"
have_all() { local b; for b in $BINS; do [ -x "$ROOT/bin/$b" ] || return 1; done; }
go_env() { export GO111MODULE=off GOPATH=$ROOT/gopath:/usr/share/gocode GOFLAGS= GOCACHE=$ROOT/gocache; }
build_soak() { log "go build soak_client"; (cd "$HERE/go-soak" && go_env && go build -o "$ROOT/bin/soak_client" .); }
build_authz() { log "go build authz_client"; (cd "$HERE/go-authz" && go_env && go build -o "$ROOT/bin/authz_client" .); }
if [ "${FORCE:-0}" != 1 ] && have_all; then
  # soak_client came later than the others: build it alone into an existing cache.
  [ -x "$ROOT/bin/soak_client" ] || build_soak
  [ -x "$ROOT/bin/authz_client" ] || build_authz
  log "go peers: cached in $ROOT/bin"; exit 0
fi

apt_install golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev dpkg-dev patch xz-utils
apt_source_download "golang-google-grpc=$GO_GRPC_DEB_VERSION" "$ROOT/src-pkg" "golang-google-grpc_$GO_GRPC_VERSION.orig.tar.xz"
SRC=$ROOT/gopath/src/google.golang.org/grpc
mkdir -p "$ROOT/gopath/src/google.golang.org" "$ROOT/bin"
log "unpacking grpc-go $GO_GRPC_VERSION and applying Debian patches"
rm -rf "$ROOT/src-pkg/golang-google-grpc-$GO_GRPC_VERSION" "$ROOT/src-pkg/debian-dir" "$SRC"
(cd "$ROOT/src-pkg" && tar xf "golang-google-grpc_$GO_GRPC_VERSION.orig.tar.xz" \
  && mkdir -p debian-dir && tar xf "golang-google-grpc_$GO_GRPC_DEB_VERSION.debian.tar.xz" -C debian-dir \
  && mv "golang-google-grpc-$GO_GRPC_VERSION" "$SRC")
while read -r p; do
  case "$p" in ''|'#'*) continue;; esac
  patch -s -p1 -d "$SRC" < "$ROOT/src-pkg/debian-dir/debian/patches/$p"
done < "$ROOT/src-pkg/debian-dir/debian/patches/series"

go_env
cd "$SRC"
build() { log "go build $2"; go build -o "$ROOT/bin/$1" "$2"; }
build interop_server ./interop/server
build interop_client ./interop/client
build http2_negative_client ./interop/http2
build bench_worker ./benchmark/worker
build bench_client ./benchmark/client
build bench_server ./benchmark/server
build_soak
build_authz
log "go peers built in $ROOT/bin"
