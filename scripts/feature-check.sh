#!/usr/bin/env bash
# grpc-runtime's cargo features: `cargo check` with no default features, with each
# feature alone and with all of them must build without a warning (a feature that only
# builds next to another, or leaves dead code behind, fails here). The workspace tests
# run with every feature on; this covers the combinations they do not.
#
#   scripts/feature-check.sh
#
# Exits non-zero on the first error or warning. About 1.5 CPU-minutes warm.
set -euo pipefail
cd "$(dirname "$0")/.."
FEATURES=$(sed -n '/^\[features\]/,/^\[/p' grpc-runtime/Cargo.toml \
  | sed -n 's/^\([a-z0-9-]*\) = .*/\1/p' | grep -v '^default$')
check() {
  local label=$1; shift
  local out
  if ! out=$(cargo check -j2 -q -p grpc-runtime --lib "$@" --message-format short 2>&1); then
    echo "FAIL $label"; echo "$out"; exit 1
  fi
  if grep -q 'warning' <<<"$out"; then
    echo "FAIL $label (warnings)"; echo "$out"; exit 1
  fi
  echo "ok   $label"
}
check "no default features" --no-default-features
for f in $FEATURES; do
  check "only $f" --no-default-features --features "$f"
done
check "default features"
check "all features" --all-features
echo "feature check: all passed ($(wc -w <<<"$FEATURES") features)"
