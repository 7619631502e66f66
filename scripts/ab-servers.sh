#!/usr/bin/env bash
# A/B of two benchmark_worker builds as servers, with one client build, alternating rounds
# (for a regression that bench.sh's noise on a shared VM hides; see docs/benchmarks.md).
#
#   scripts/ab-servers.sh SERVER_A SERVER_B CLIENT [ROUNDS]
#   SIZES="1048576 65536" DUR=5 scripts/ab-servers.sh ...   (defaults shown)
#
# Both servers run pinned to CPU 0, the client to CPU 1; each round measures every size
# against A, then B (`client --mode=server-stream --resp_size=N`), and prints MB/s.
# Release builds: `cargo build --release -p conformance --bin benchmark_worker`, each commit in a
# target directory of its own checkout (check with scripts/built-here.py BIN CHECKOUT: a shared
# target dir once made a build reuse another worktree's older h2).
set -u
A=$1 B=$2 CLIENT=$3 ROUNDS=${4:-4}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(port); pb=$(port)
taskset -c 0 "$A" server --port=$pa >/dev/null 2>&1 & sa=$!
taskset -c 0 "$B" server --port=$pb >/dev/null 2>&1 & sb=$!
trap 'kill $sa $sb 2>/dev/null' EXIT
sleep 1
for r in $(seq "$ROUNDS"); do
  for size in ${SIZES:-1048576 65536}; do
    for which in A B; do
      p=$pa; [ $which = B ] && p=$pb
      out=$(taskset -c 1 "$CLIENT" client --target=http://127.0.0.1:$p --mode=server-stream --resp_size=$size \
        --conns=1 --concurrency=1 --duration=${DUR:-5} --warmup=1 2>/dev/null | grep '^{')
      echo "round $r size $size $which $(echo "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(round(d.get("mbps", 0), 1))')"
    done
  done
done
