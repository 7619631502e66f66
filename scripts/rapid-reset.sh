#!/usr/bin/env bash
# Rapid reset (CVE-2023-44487) and cancel bursts against our server, measured, not asserted:
# a legitimate load client alone, then the same client while an attacker opens and resets
# streams as fast as it can on N connections. Reports the legitimate client's calls/s and
# p99, the attacker's streams/s and how often the server closed its connection, and the
# server's CPU and RSS. Server on CPU 0; both clients on CPU 1 (a 2-core machine).
#
#   scripts/rapid-reset.sh [--duration S] [--attack-conns N] [--no-build]
#
# Everything listens on 127.0.0.1 and stops by itself. See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=10 CONNS=2 BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DUR=$2; shift;;
    --attack-conns) CONNS=$2; shift;;
    --no-build) BUILD=0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
  shift
done
if [ $BUILD = 1 ]; then
  cargo build --release -j2 -p conformance --bin benchmark_worker
fi
BIN=${BIN:-target/release/benchmark_worker}
exec python3 - "$BIN" "$DUR" "$CONNS" <<'EOF'
import json, os, socket, subprocess, sys, threading, time
bin_, dur, conns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv if os.cpu_count() and os.cpu_count() >= 2 else argv
def start(resets):
    global srv, port
    port = free_port()
    srv = subprocess.Popen(pinned("0", [bin_, "server", f"--port={port}", f"--max_pending_accept_reset_streams={resets}"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); return
        except OSError:
            time.sleep(0.05)
tick = os.sysconf("SC_CLK_TCK")
def cpu_s():
    f = open(f"/proc/{srv.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def rss_kib():
    for l in open(f"/proc/{srv.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
def client(mode, extra, d):
    argv = pinned("1", [bin_, "client", f"--target=http://127.0.0.1:{port}", f"--mode={mode}", f"--duration={d}", "--warmup=1"] + extra)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=d + 60).stdout
    return json.loads(next(l for l in out.splitlines() if l.startswith("{")))
def phase(name, attack):
    peak = [rss_kib()]; stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib()); time.sleep(0.2)
    t = threading.Thread(target=sample); t.start()
    c0, w0 = cpu_s(), time.time()
    res = {}
    if attack:
        a = threading.Thread(target=lambda: res.update(attack=client("rapid-reset", [f"--conns={conns}"], dur + 1)))
        a.start(); time.sleep(0.5)
    legit = client("unary", ["--conns=1", "--concurrency=4"], dur)
    if attack: a.join()
    cpu = (cpu_s() - c0) / (time.time() - w0)
    stop.set(); t.join()
    line = f"{name:<28} legit {legit['qps']:>9,.0f} calls/s  p99 {legit['p99_us']:>7,} us  errors {legit['errors']}  server CPU {cpu*100:5.1f}%  RSS peak {peak[0]:,} KiB"
    if attack:
        at = res.get("attack", {})
        line += f"\n{'':<28} attacker {at.get('per_sec', 0):>9,} streams/s reset, connections closed by the server: {at.get('goaways', '?')}"
    print(line, flush=True)
# Our default limit, a lower one, and h2's own default (20) for comparison (RESETS=a,b,...).
for resets in [int(r) for r in os.environ.get("RESETS", "1024,256,20").split(",")]:
    start(resets)
    try:
        print(f"== server with max_pending_accept_reset_streams={resets}: RSS at start {rss_kib():,} KiB; "
              f"{dur:.0f} s per phase; attacker on {conns} connection(s)")
        phase("baseline (legit client alone)", False)
        phase("under rapid reset", True)
        phase("after the attack", False)
    finally:
        srv.terminate(); srv.wait(timeout=10)
EOF
