#!/usr/bin/env bash
# Instructions per unary call under callgrind, for comparing two builds of the hot path
# when wall-clock benchmarks on this VM are too noisy (see docs/benchmarks.md).
#
#   scripts/callgrind-calls.sh OLD_BENCHMARK_WORKER NEW_BENCHMARK_WORKER [SECONDS]
#
# For each build: its own server, its load client (benchmark_worker client --mode=unary
# --conns=1) under callgrind at 1 and 16 outstanding calls, reporting the call path's
# instructions per call (--toggle-collect='*unary_call*': the generated client's future
# and everything it polls) and the whole client process's, no warm-up (so all calls made
# are counted); then the server under
# callgrind with a native client, reporting the server process's instructions per call.
# Release builds: `cargo build --release -p conformance --bin benchmark_worker`.
set -euo pipefail
old=$1 new=$2 secs=${3:-3}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
calls_of() { python3 -c 'import json,sys; print(json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])["calls"])' "$1"; }
total_ir() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done=1}'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

for label in old new; do
  bin=$old; [ $label = new ] && bin=$new
  p=$(port); "$bin" server --port=$p >/dev/null 2>&1 & srv=$!; wait_port $p
  for c in 1 16; do
    for what in path process; do
      out=$tmp/$label-$c-$what
      # No warm-up: every call made is a call counted (the connection's setup is
      # amortised over the run).
      toggle=(); warm=0
      if [ $what = path ]; then toggle=(--toggle-collect='*unary_call*'); fi
      valgrind --tool=callgrind "${toggle[@]}" --callgrind-out-file=$out.cg "$bin" client --target=http://127.0.0.1:$p \
        --mode=unary --conns=1 --concurrency=$c --duration=$secs --warmup=$warm >$out.json 2>/dev/null
      n=$(calls_of $out.json); ir=$(total_ir $out.cg)
      echo "$label client $what concurrency=$c: $((ir / n)) instructions/call ($n calls)"
    done
  done
  kill $srv; wait $srv 2>/dev/null || true
  p=$(port); valgrind --tool=callgrind --callgrind-out-file=$tmp/$label-server.cg "$bin" server --port=$p >/dev/null 2>&1 & srv=$!
  wait_port $p; sleep 1
  "$bin" client --target=http://127.0.0.1:$p --mode=unary --conns=1 --concurrency=1 --duration=$secs --warmup=0 >$tmp/$label-s.json 2>/dev/null
  n=$(calls_of $tmp/$label-s.json)
  kill -INT $srv; wait $srv 2>/dev/null || true
  ir=$(total_ir $tmp/$label-server.cg)
  echo "$label server process concurrency=1: $((ir / n)) instructions/call ($n calls, startup included)"
done
