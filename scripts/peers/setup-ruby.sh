#!/usr/bin/env bash
# Set up the Ruby interop client and server: Debian's ruby-grpc 1.51.1 (+ ruby-grpc-tools,
# ruby-googleauth) running src/ruby/pb from the Debian `grpc` 1.51.1 source package, in
# $GRPC_RUST_PEERS/ruby. Run:
#   ruby $GRPC_RUST_PEERS/ruby/pb/test/server.rb --port=N [--use_tls=true]
#   ruby $GRPC_RUST_PEERS/ruby/pb/test/client.rb --server_host=H --server_port=N --test_case=X
# Our changes to the upstream code: `require 'grpc'` (the system gem) instead of the
# in-tree library, and load_test_certs reads $INTEROP_CA_FILE, $INTEROP_TLS_KEY_FILE and
# $INTEROP_TLS_CERT_FILE when set, so the server can serve grpc-rust's test certificates.
# The client trusts another CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH with --use_test_ca=false.
# Idempotent: exits at once when the tree is complete.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
ROOT=$GRPC_RUST_PEERS/ruby
STAMP=$ROOT/.complete-$GRPC_VERSION
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && command -v ruby >/dev/null; then
  log "ruby peers: cached in $ROOT"; exit 0
fi
apt_install ruby ruby-grpc ruby-grpc-tools ruby-googleauth
fetch_grpc_source
log "assembling Ruby interop tree in $ROOT"
rm -rf "$ROOT" && mkdir -p "$ROOT/spec"
cp -r "$GRPC_SRC/src/ruby/pb" "$ROOT/"
cp -r "$GRPC_SRC/src/ruby/spec/testdata" "$ROOT/spec/"
for f in "$ROOT/pb/test/client.rb" "$ROOT/pb/test/server.rb"; do
  sed -i "s|^require_relative '../../lib/grpc'|require 'grpc'|" "$f"
  ruby - "$f" <<'RB'
path = ARGV[0]
s = File.read(path)
old = "  files.map { |f| File.open(File.join(data_dir, f)).read }"
new = <<~NEW.chomp
  # grpc-rust: TLS files may be named by the environment.
    env = { 'ca.pem' => 'INTEROP_CA_FILE', 'server1.key' => 'INTEROP_TLS_KEY_FILE',
            'server1.pem' => 'INTEROP_TLS_CERT_FILE' }
    files.map { |f| File.read(ENV[env[f]] || File.join(data_dir, f)) }
NEW
raise "load_test_certs not found in #{path}" unless s.include?(old)
File.write(path, s.sub(old, '  ' + new))
RB
done
ruby -c "$ROOT/pb/test/client.rb" >/dev/null && ruby -c "$ROOT/pb/test/server.rb" >/dev/null
(cd "$ROOT" && timeout 20 ruby pb/test/client.rb --help >/dev/null) || die "ruby interop client does not load"
touch "$STAMP"
log "ruby peers ready in $ROOT"
