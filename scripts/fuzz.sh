#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ once and runs each for a bounded time on the committed
# seed corpus (fuzz/corpus/<target>/), failing on any crash, hang or leak.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]      (default: 20 s, every target)
#
# Needs only a Rust toolchain and a C++ compiler (libFuzzer): installs cargo-fuzz if
# missing, and builds with RUSTC_BOOTSTRAP=1 so the flags cargo-fuzz passes
# (-Zsanitizer=address, sanitizer coverage) work on a stable rustc. Artifacts go to
# $FUZZ_TARGET_DIR (default target/fuzz); new corpus entries found during the run go to
# a scratch directory, so the committed corpus is left as it is (docs/fuzzing.md says how
# to grow and minimise it).
#
# FUZZ_QUICK_BUILD=1 (CI's setting): `--dev --sanitizer none`, i.e. fuzz/Cargo.toml's dev
# profile (opt-level 1) without the address sanitizer, with debug assertions and overflow
# checks. It builds in about half the CPU time of cargo-fuzz's default (opt-level 3 +
# ASan), which is what the long runs in docs/fuzzing.md used; our code is safe Rust, so
# the short CI run loses little by it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
target_dir=${FUZZ_TARGET_DIR:-$root/target/fuzz}
jobs=${FUZZ_BUILD_JOBS:-2}
# `build` and `run` must get the same flags, or `run` rebuilds.
flags=(--fuzz-dir fuzz --target-dir "$target_dir")
if [ "${FUZZ_QUICK_BUILD:-0}" = 1 ]; then
  flags+=(--dev --sanitizer none)
  build_kind="dev profile (opt-level 1), no sanitizer, debug assertions"
else
  flags+=(--debug-assertions)
  build_kind="release, address sanitizer, debug assertions"
fi
start=$(date +%s)
stamp() { echo "== fuzz [$(( $(date +%s) - start ))s] $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  stamp "installing cargo-fuzz"
  # --locked: the versions cargo-fuzz was released with (a reproducible, cacheable build)
  cargo install --locked cargo-fuzz --version 0.13.2 -j "$jobs"
fi
stamp "$(cargo fuzz --version), $(rustc --version)"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

stamp "build every target ($build_kind)"
# The vendored h2 (third_party/h2) is a path dependency, so cargo does not cap its lints
# as it does for crates.io ones; under --cfg fuzzing it compiles its own fuzz_bridge
# module, which its #![deny(missing_docs)] rejects. Cap lints for this build (cargo-fuzz
# appends its flags to RUSTFLAGS).
export RUSTFLAGS="${RUSTFLAGS:-} --cap-lints warn"
CARGO_BUILD_JOBS=$jobs cargo fuzz build "${flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  stamp "run $t for ${secs}s"
  mkdir -p "$scratch/corpus/$t" "$scratch/artifacts/$t" "fuzz/corpus/$t"
  # The scratch dir comes first: libFuzzer writes new inputs there, and reads both.
  if ! CARGO_BUILD_JOBS=$jobs cargo fuzz run "${flags[@]}" "$t" \
      "$scratch/corpus/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 \
      -artifact_prefix="$scratch/artifacts/$t/" 2>"$scratch/$t.log"; then
    failed+=("$t")
    tail -n 60 "$scratch/$t.log"
    mkdir -p "$target_dir/artifacts/$t"
    cp -r "$scratch/artifacts/$t/." "$target_dir/artifacts/$t/" || true
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $t $target_dir/artifacts/$t/<file>"
  else
    # libFuzzer's summary: executions, speed, coverage, corpus.
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+ +DONE' \
      "$scratch/$t.log" | tr '\n' ' '
    echo
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  stamp "FAILED: ${failed[*]} (artifacts under $target_dir/artifacts)"
  exit 1
fi
stamp "done: ${#targets[@]} targets, ${secs}s each, no crashes"
