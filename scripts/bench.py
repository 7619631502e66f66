#!/usr/bin/env python3
"""Runs grpc-rust's side-by-side benchmarks and writes docs/benchmarks.md + an SVG plot.

Called by scripts/bench.sh (which installs and builds everything first); can be run again
on its own with --peers. Standard library only.

Servers (all pinned to CPU 0 with taskset, each on 127.0.0.1):
  grpc-rust  target/release/benchmark_worker server
  tonic      bench/target/release/tonic-peer server
  grpc-go    grpc-go 1.33's benchmark.StartServer (bench/go-server, no profiling)
  h2-ceiling bench/target/release/h2-echo (bare h2, fixed framed response; unary only)
Load generators (pinned to CPU 1): h2load for unary throughput; grpc-rust's load client
(benchmark_worker client) for latency, streaming, memory; tonic's load client for the client
comparison; qps_json_driver + qps workers for the qps scenario.

Sections (--only): unary, latency, stream, client, memory, qps, channel.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU = "0"
LOAD_CPU = "1"
UNARY_PATH = "/grpc.testing.BenchmarkService/UnaryCall"
SERVERS = ["grpc-rust", "tonic", "grpc-go", "h2-ceiling"]
COLORS = {"grpc-rust": "#d9480f", "tonic": "#1c7ed6", "grpc-go": "#2b8a3e", "h2-ceiling": "#868e96",
          "grpc-c++": "#7048e8", "grpc-rust client": "#d9480f", "tonic client": "#1c7ed6"}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile():
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def pinned(cpu, argv, pin):
    return (["taskset", "-c", cpu] + argv) if pin else argv


class Proc:
    """A background process we started; stopped (by pid) when the block ends."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log = open(log_path, "w")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  preexec_fn=raise_nofile, start_new_session=True)

    def rss_kib(self):
        # taskset execs the program, so the pid is the program's.
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGINT)
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run(argv, timeout):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=raise_nofile)
    return r


class Bench:
    def __init__(self, a):
        self.a = a
        self.peers = a.peers
        self.bins = {
            "worker": os.path.join(ROOT, "target/release/benchmark_worker"),
            "tonic": os.path.join(ROOT, "bench/target/release/tonic-peer"),
            "h2": os.path.join(ROOT, "bench/target/release/h2-echo"),
            "go": os.path.join(self.peers, "go/bin/go_bench_server_noprof"),
            "go_worker": os.path.join(self.peers, "go/bin/bench_worker"),
            "cpp_worker": os.path.join(self.peers, "cpp/qps_worker"),
            "driver": os.path.join(self.peers, "cpp/qps_json_driver"),
        }
        self.tmp = tempfile.mkdtemp(prefix="grpc-rust-bench-")
        self.results = {"meta": {}, "unary": [], "latency": [], "stream": [], "client": [], "memory": [], "qps": [],
                        "channel": []}
        self.logs = os.path.join(self.tmp, "logs")
        os.makedirs(self.logs)

    # ---------- servers ----------
    def server_argv(self, name, port):
        b = self.bins
        return {
            "grpc-rust": [b["worker"], "server", f"--port={port}"],
            "tonic": [b["tonic"], "server", f"--port={port}"],
            "grpc-go": [b["go"], f"-port={port}"],
            "h2-ceiling": [b["h2"], f"--port={port}"],
        }[name]

    def available_servers(self, names):
        out = []
        for n in names:
            exe = self.server_argv(n, 0)[0]
            if os.access(exe, os.X_OK):
                out.append(n)
            else:
                log(f"skipping {n}: {exe} not built")
        return out

    def start_server(self, name):
        port = free_port()
        p = Proc(pinned(SERVER_CPU, self.server_argv(name, port), self.a.pin),
                 os.path.join(self.logs, f"server-{name}-{port}.log"))
        wait_port(port, p.p)
        return p, port

    def point(self, section, tags, procs, server, impl, mode, **kw):
        """One load-client point against `procs[server]`, recorded in `section` with `tags`
        added (returns the result). A failed point (e.g. the server died) is logged and listed
        in the report, the server is restarted, and the run goes on (returns None)."""
        try:
            r = self.client(impl, f"http://127.0.0.1:{procs[server][1]}", mode, **kw)
            r.update(server=server, **tags)
            self.results[section].append(r)
            return r
        except Exception as e:
            log(f"point failed ({server}, {mode}): {e}")
            self.results.setdefault("errors", []).append(f"{server} {mode} {kw}: {e}")
            procs[server][0].stop()
            procs[server] = self.start_server(server)
            return None

    # ---------- load generators ----------
    def client(self, impl, target, mode, conns=1, concurrency=1, duration=None, warmup=None, **kw):
        duration = self.a.duration if duration is None else duration
        warmup = self.a.warmup if warmup is None else warmup
        exe = [self.bins["worker"], "client"] if impl == "grpc-rust" else [self.bins["tonic"], "client"]
        argv = exe + [f"--target={target}", f"--mode={mode}", f"--conns={conns}", f"--concurrency={concurrency}",
                      f"--duration={duration}", f"--warmup={warmup}"] + [f"--{k}={v}" for k, v in kw.items()]
        r = run(pinned(LOAD_CPU, argv, self.a.pin), timeout=duration + warmup + 60)
        line = next((l for l in r.stdout.splitlines() if l.startswith("{")), None)
        if r.returncode != 0 or line is None:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        return json.loads(line)

    def h2load(self, port, conns, streams, body):
        d = self.a.duration
        argv = ["h2load", "-c", str(conns), "-m", str(streams), "-t", "1", "-D", str(int(max(1, d))),
                f"--warm-up-time={int(max(1, self.a.warmup))}",
                "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body,
                f"http://127.0.0.1:{port}{UNARY_PATH}"]
        r = run(pinned(LOAD_CPU, argv, self.a.pin), timeout=d + self.a.warmup + 60)
        out = r.stdout
        m = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
        ok = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
        if not m or not ok:
            raise RuntimeError(f"h2load output not understood:\n{out[-800:]}\n{r.stderr[-400:]}")
        return {"rps": float(m.group(1)), "succeeded": int(ok.group(4)), "failed": int(ok.group(5)),
                "errored": int(ok.group(6)), "mean_latency": lat.group(3) if lat else ""}

    # ---------- sections ----------
    def sec_unary(self):
        servers = self.available_servers(SERVERS)
        body = os.path.join(self.tmp, "simple_request.bin")
        # A gRPC frame holding an empty SimpleRequest (the qps benchmarks' empty messages).
        with open(body, "wb") as f:
            f.write(b"\x00\x00\x00\x00\x00")
        configs = [(c, m) for c in (1, 4) for m in (1, 10, 100)]
        if self.a.quick:
            configs = [(1, 1), (4, 100)]
        procs = {}
        try:
            for s in servers:
                procs[s] = self.start_server(s)
                self.check_grpc_ok(s, procs[s][1], body)
            for run_i in range(self.a.runs):
                for c, m in configs:
                    for s in servers:
                        r = self.h2load(procs[s][1], c, m, body)
                        r.update(server=s, conns=c, streams=m, run=run_i)
                        self.results["unary"].append(r)
                        log(f"unary {s} c={c} m={m} run {run_i}: {r['rps']:.0f} req/s"
                            f" ({r['failed']} failed, {r['errored']} errored)")
        finally:
            for p, _ in procs.values():
                p.stop()

    def check_grpc_ok(self, name, port, body):
        """h2load only sees :status; check once with nghttp that the answer really is grpc-status 0."""
        try:
            r = subprocess.run(["nghttp", "-v", "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
                                f"http://127.0.0.1:{port}{UNARY_PATH}"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"cannot check {name} with nghttp: {e}")
            return
        m = re.search(rb"grpc-status: (\d+)", r.stdout)
        if not m or m.group(1) != b"0":
            msg = f"{name}: the h2load request is not answered with grpc-status 0 ({m and m.group(1)})"
            log(msg)
            self.results.setdefault("errors", []).append(msg)

    def sec_latency(self):
        servers = self.available_servers(SERVERS)
        procs = {}
        try:
            for s in servers:
                procs[s] = self.start_server(s)
            for run_i in range(self.a.runs):
                for mode in ("unary", "pingpong"):
                    for s in servers:
                        if s == "h2-ceiling" and mode != "unary":
                            continue
                        r = self.point("latency", {"run": run_i}, procs, s, "grpc-rust", mode)
                        if r:
                            log(f"latency {mode} {s} run {run_i}: p50 {r['p50_us']} p90 {r['p90_us']} p99 {r['p99_us']} us")
                # Moderate load: 4 connections x 8 outstanding unary calls (closed loop).
                for s in servers:
                    r = self.point("latency", {"run": run_i, "mode": MODERATE}, procs, s, "grpc-rust", "unary",
                                   conns=4, concurrency=8)
                    if r:
                        log(f"latency {MODERATE} {s} run {run_i}: p50 {r['p50_us']} p90 {r['p90_us']} p99 {r['p99_us']} us")
        finally:
            for p, _ in procs.values():
                p.stop()

    def sec_stream(self):
        servers = self.available_servers(["grpc-rust", "tonic", "grpc-go"])
        sizes = [1024, 65536, 1048576]
        procs = {}
        try:
            for s in servers:
                procs[s] = self.start_server(s)
            for run_i in range(self.a.runs):
                for size in sizes:
                    for s in servers:
                        mode = "go-server-stream" if s == "grpc-go" else "server-stream"
                        r = self.point("stream", {"run": run_i, "size": size, "kind": "server-stream"}, procs, s,
                                       "grpc-rust", mode, resp_size=size)
                        if r:
                            log(f"stream {size} B {s} run {run_i}: {r['mbps']:.1f} MB/s, {r['qps']:.0f} msg/s")
                for s in servers:
                    r = self.point("stream", {"run": run_i, "size": 4 * 1024 * 1024, "kind": "unary-4MiB"}, procs, s,
                                   "grpc-rust", "unary", resp_size=4 * 1024 * 1024)
                    if r:
                        log(f"unary 4 MiB {s} run {run_i}: {r['mbps']:.1f} MB/s, {r['qps']:.1f} calls/s")
        finally:
            for p, _ in procs.values():
                p.stop()

    def sec_client(self):
        servers = self.available_servers(["grpc-rust", "grpc-go"])
        cases = [("unary", 1, 1), ("unary", 4, 64), ("pingpong", 1, 1)]
        procs = {}
        try:
            for s in servers:
                procs[s] = self.start_server(s)
            for run_i in range(self.a.runs):
                for mode, conns, conc in cases:
                    for s in servers:
                        for impl in ("grpc-rust", "tonic"):
                            r = self.point("client", {"run": run_i, "client": impl}, procs, s, impl, mode,
                                           conns=conns, concurrency=conc)
                            if r:
                                log(f"client {impl} -> {s} {mode} c={conns} n={conc} run {run_i}: {r['qps']:.0f}/s p99 {r['p99_us']} us")
        finally:
            for p, _ in procs.values():
                p.stop()

    def sec_channel(self):
        """The client channel's cost: grpc-rust's load client through round_robin over two
        grpc-rust servers vs pick_first over one, same outstanding calls (one channel)."""
        cases = [("unary", 1), ("unary", 16), ("unary", 64)]
        (pa, a), (pb, b) = self.start_server("grpc-rust"), self.start_server("grpc-rust")
        try:
            targets = (("pick_first", f"ipv4:127.0.0.1:{a}"), ("round_robin", f"ipv4:127.0.0.1:{a},127.0.0.1:{b}"))
            for run_i in range(self.a.runs):
                for mode, conc in cases:
                    for policy, target in targets:
                        try:
                            r = self.client("grpc-rust", target, mode, conns=1, concurrency=conc, lb_policy=policy)
                        except Exception as e:
                            log(f"channel point failed ({policy}, {mode} n={conc}): {e}")
                            self.results.setdefault("errors", []).append(f"channel {policy} {mode} {conc}: {e}")
                            continue
                        r.update(run=run_i, policy=policy)
                        self.results["channel"].append(r)
                        log(f"channel {policy} {mode} n={conc} run {run_i}: {r['qps']:.0f}/s p99 {r['p99_us']} us")
        finally:
            pa.stop()
            pb.stop()

    def sec_memory(self):
        servers = self.available_servers(["grpc-rust", "tonic", "grpc-go"])
        conns_n, streams_n, stream_conns = (1000, 10000, 100) if not self.a.quick else (100, 1000, 10)
        for run_i in range(self.a.runs):
            for kind in ("idle-conns", "open-streams"):
                for s in servers:
                    p, port = self.start_server(s)
                    try:
                        def probe(conns, streams, hold):
                            return [self.bins["worker"], "client", f"--target=http://127.0.0.1:{port}",
                                    f"--mode={kind}", f"--conns={conns}", f"--streams={streams}", f"--hold={hold}"]
                        # Warm up with one connection doing the same (one call, or one stream)
                        # before the base is read: the code pages its first call faults in and
                        # the runtime's lazily grown tables are paid once, not per connection.
                        run(pinned(LOAD_CPU, probe(1, 1 if kind == "open-streams" else 0, 0), self.a.pin), timeout=30)
                        time.sleep(0.5)
                        base = p.rss_kib()
                        conns = conns_n if kind == "idle-conns" else stream_conns
                        argv = probe(conns, streams_n if kind == "open-streams" else 0, 3)
                        c = subprocess.Popen(pinned(LOAD_CPU, argv, self.a.pin), stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile,
                                             start_new_session=True)
                        try:
                            line = c.stdout.readline()
                            if not line.startswith("{"):
                                raise RuntimeError(f"memory probe failed: {line} {c.stderr.read()[-400:]}")
                            ready = json.loads(line)
                            time.sleep(1.0)
                            rss = p.rss_kib()
                            c.wait(timeout=60)
                        finally:
                            if c.poll() is None:
                                c.kill()
                                c.wait(timeout=5)
                        n = ready["conns"] if kind == "idle-conns" else ready["streams"]
                        r = {"server": s, "kind": kind, "run": run_i, "base_kib": base, "rss_kib": rss, "n": n,
                             "per_item_kib": (rss - base) / n if n and rss and base else None}
                        self.results["memory"].append(r)
                        log(f"memory {kind} {s} run {run_i}: base {base} KiB -> {rss} KiB with {n}"
                            f" ({r['per_item_kib'] and round(r['per_item_kib'], 2)} KiB each)")
                    finally:
                        p.stop()

    def sec_qps(self):
        b = self.bins
        if not (os.access(b["driver"], os.X_OK) and os.access(b["cpp_worker"], os.X_OK)):
            log("skipping qps: qps_json_driver / qps_worker not built (scripts/peers/build-all.sh cpp-qps)")
            return
        scen_files = ["qps_unary_2core.json", "qps_streaming_2core.json"]
        servers = [("grpc-rust", [b["worker"]]), ("grpc-go", [b["go_worker"]]), ("grpc-c++", [b["cpp_worker"]])]
        for run_i in range(self.a.runs):
            for sf in scen_files:
                with open(os.path.join(ROOT, "bench/scenarios", sf)) as f:
                    scen = json.load(f)
                if self.a.quick:
                    for s in scen["scenarios"]:
                        s["warmup_seconds"], s["benchmark_seconds"] = 1, 2
                sp = os.path.join(self.tmp, sf)
                with open(sp, "w") as f:
                    json.dump(scen, f)
                for name, argv in servers:
                    if not os.access(argv[0], os.X_OK):
                        continue
                    dport, cport, sport = free_port(), free_port(), free_port()
                    extra = [f"--server_port={sport}"] if name == "grpc-c++" else []
                    srv = Proc(pinned(SERVER_CPU, argv + [f"--driver_port={dport}"] + extra, self.a.pin),
                               os.path.join(self.logs, f"qps-server-{name}.log"))
                    # The client is always grpc C++'s qps_worker: one neutral load generator.
                    cli = Proc(pinned(LOAD_CPU, [b["cpp_worker"], f"--driver_port={cport}", f"--server_port={free_port()}"], self.a.pin),
                               os.path.join(self.logs, f"qps-client-{name}.log"))
                    try:
                        wait_port(dport, srv.p)
                        wait_port(cport, cli.p)
                        out_json = os.path.join(self.tmp, f"qps-{name}-{sf}")
                        env = dict(os.environ, QPS_WORKERS=f"127.0.0.1:{dport},127.0.0.1:{cport}")
                        tot = sum(s["warmup_seconds"] + s["benchmark_seconds"] for s in scen["scenarios"])
                        r = subprocess.run(pinned(LOAD_CPU, [b["driver"], f"--scenarios_file={sp}", f"--json_file_out={out_json}"], self.a.pin),
                                           env=env, capture_output=True, text=True, timeout=tot + 90)
                        if r.returncode != 0 or not os.path.exists(out_json):
                            raise RuntimeError(f"qps_json_driver failed ({r.returncode}): {r.stderr[-600:]}")
                        # --json_file_out holds only {"qps": X}; the rest is in the driver's log.
                        with open(out_json) as f:
                            qps = json.load(f).get("qps", 0.0)
                        lat = re.search(r"Latencies \(50/90/95/99/99\.9%-ile\): ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) us", r.stderr)
                        cpu = re.search(r"Server CPU usage: ([\d.]+)%", r.stderr)
                        res = {"server": name, "scenario": scen["scenarios"][0]["name"], "run": run_i, "qps": qps,
                               "p50_us": float(lat.group(1)) if lat else None,
                               "p99_us": float(lat.group(4)) if lat else None,
                               "server_cpu": float(cpu.group(1)) if cpu else None}
                        self.results["qps"].append(res)
                        log(f"qps {res['scenario']} server {name} run {run_i}: {res['qps']:.0f} qps, p50 {res['p50_us']} us, p99 {res['p99_us']} us")
                    except Exception as e:  # keep going with the other servers
                        log(f"qps {sf} server {name}: {e}")
                    finally:
                        srv.stop()
                        cli.stop()

    # ---------- meta ----------
    def meta(self):
        def cmd(argv):
            try:
                return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
            except Exception:
                return ""
        cpu = ""
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
        except OSError:
            pass
        tonic_v = ""
        try:
            with open(os.path.join(ROOT, "bench/Cargo.lock")) as f:
                m = re.search(r'name = "tonic"\nversion = "([^"]+)"', f.read())
                tonic_v = m.group(1) if m else ""
        except OSError:
            pass
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "mem": cmd(["sh", "-c", "free -h | awk '/Mem:/{print $2}'"]),
            "rustc": cmd(["rustc", "--version"]), "git": cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
            "tonic": tonic_v, "grpc-go": "1.33.3 (Debian golang-google-grpc)", "grpc-c++": "1.51.1 (Debian grpc)",
            "h2load": cmd(["h2load", "--version"]).splitlines()[0] if cmd(["h2load", "--version"]) else "",
            "go": cmd(["go", "version"]),
            "load_before": os.getloadavg(),
        }

    def settle(self, limit=0.5, wait=120):
        """Waits (up to `wait` s) for the 1-minute load to fall below `limit`, e.g. after the build."""
        t0 = time.time()
        while os.getloadavg()[0] >= limit and time.time() - t0 < wait and not self.a.quick:
            time.sleep(5)
        return time.time() - t0

    def go(self):
        waited = self.settle()
        log(f"waited {waited:.0f} s for the load to settle: {os.getloadavg()[0]:.2f}")
        self.results["meta"] = self.meta()
        self.results["meta"]["args"] = vars(self.a)
        for sec in self.a.only:
            log(f"section {sec}")
            try:
                getattr(self, f"sec_{sec}")()
            except Exception as e:
                log(f"section {sec} failed: {e}")
                self.results.setdefault("errors", []).append(f"{sec}: {e}")
        self.results["meta"]["load_after"] = os.getloadavg()
        os.makedirs(os.path.dirname(os.path.abspath(self.a.out)), exist_ok=True)
        with open(self.a.json, "w") as f:
            json.dump(self.results, f, indent=1)
        report(self.results, self.a)
        log(f"wrote {self.a.out}, {self.a.svg}, {self.a.json} (logs in {self.logs})")


# ---------------------------------------------------------------- report

MODERATE = "unary 4x8"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_median(rows, key, match, num, den):
    """Median over runs of num/den (per-run ratio), rows grouped by `match` fields."""
    by_run = {}
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            by_run.setdefault(r["run"], {})[r.get("server") if "client" not in r else r["client"]] = r[key]
    ratios = [d[num] / d[den] for d in by_run.values() if d.get(num) and d.get(den)]
    return med(ratios)


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    if nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


def fr(x):
    return "n/a" if x is None else f"{x:.2f}x"


def targets(res):
    """Issue 7's targets, each a median of per-point ratios (themselves medians of per-run ratios)."""
    rows = []

    def over_points(section, key, points, num, den):
        return med([ratio_median(res[section], key, pt, num, den) for pt in points])

    U = res["unary"]
    if U:
        pts = [{"conns": c, "streams": m} for c, m in sorted({(r["conns"], r["streams"]) for r in U})]
        for den, goal, label in (("tonic", 1.3, "unary server throughput vs tonic"),
                                 ("grpc-go", 1.05, "unary server throughput vs grpc-go"),
                                 ("h2-ceiling", 0.85, "unary server throughput vs the bare h2 ceiling")):
            v = over_points("unary", "rps", pts, "grpc-rust", den)
            rows.append((label, f">= {goal:.2f}x", v, v is not None and v >= goal))
    S = [r for r in res["stream"] if r.get("kind") == "server-stream"]
    if S:
        pts = [{"kind": "server-stream", "size": z} for z in sorted({r["size"] for r in S})]
        v = over_points("stream", "qps", pts, "grpc-rust", "tonic")
        rows.append(("streaming msgs/s vs tonic (1 KiB, 64 KiB, 1 MiB)", ">= 1.30x", v, v is not None and v >= 1.3))
    LA = [r for r in res["latency"] if r["mode"] == MODERATE]
    if LA:
        p99 = {s: med([r["p99_us"] for r in LA if r["server"] == s]) for s in ("grpc-rust", "tonic", "grpc-go")}
        for other in ("tonic", "grpc-go"):
            if p99["grpc-rust"] is not None and p99[other]:
                v = p99["grpc-rust"] / p99[other]
                rows.append((f"p99 at moderate load ({MODERATE}) vs {other}", "<= 1.00x", v, v <= 1.0))
    M = res["memory"]
    if M:
        for kind, label in (("idle-conns", "memory per idle connection vs tonic"), ("open-streams", "memory per open stream vs tonic")):
            r_ = med([r["per_item_kib"] for r in M if r["kind"] == kind and r["server"] == "grpc-rust"])
            t_ = med([r["per_item_kib"] for r in M if r["kind"] == kind and r["server"] == "tonic"])
            if r_ and t_:
                rows.append((label, "<= 1.00x", r_ / t_, r_ <= t_))
    if not rows:
        return []
    out = ["## Targets (issue 7)\n",
           "Medians over the points of each section of the per-point ratios below (grpc-rust / peer).\n",
           "| target | goal | measured | met |", "|---|---|---|---|"]
    for label, goal, v, ok in rows:
        out.append(f"| {label} | {goal} | {fr(v)} | {'yes' if ok else '**no**'} |")
    out.append("")
    return out


def report(res, a):
    m = res["meta"]
    L = []
    L.append("# Benchmarks\n")
    L.append("Side-by-side measurements of grpc-rust against tonic and grpc-go (and grpc C++ in the qps "
             "scenario), with a bare h2 server as the ceiling. Produced by `scripts/bench.sh`; "
             "every number is the median of the runs, ratios are medians of per-run ratios. "
             "Benchmarks are never timed assertions in tests.\n")
    if a.quick or m["load_before"][0] >= 1.0:
        L.append("> **Not meaningful:** " + ("a `--quick` smoke run (seconds-long, one run each). " if a.quick else "")
                 + (f"1-minute load average {m['load_before'][0]:.2f} when the run started, on a 2-core machine "
                    "shared with other work. " if m["load_before"][0] >= 1.0 else "")
                 + "Re-run `scripts/bench.sh` on a quiet machine for real numbers.\n")
    L.append("## How to run\n")
    L.append("```sh\n"
             "scripts/bench.sh                       # everything: 3 runs x 10 s per point, about 45 minutes\n"
             "scripts/bench.sh --quick               # smoke run, about 3 minutes; numbers not meaningful\n"
             "scripts/bench.sh --only unary,latency --runs 5   # a subset (unary,latency,stream,client,memory,qps)\n"
             "scripts/bench-workers.sh               # qps_json_driver over every grpc-rust/grpc-go/grpc-C++ worker pairing\n"
             "```\n")
    L.append("Run it on an otherwise idle machine with at least 2 cores; the load average is recorded below "
             "and the report flags runs that started with a 1-minute load of 1.0 or more. Build in a target "
             "directory no other checkout or git worktree shares: cargo can reuse another checkout's artifact "
             "of a path dependency (it once put an h2 one patch behind into the benchmark binary; "
             "`scripts/built-here.py`, which bench.sh runs, catches that).\n")
    L.append("## Machine and versions\n")
    L.append(f"- date: {m['date']}; CPU: {m['cpu']} x {m['cores']} cores; RAM {m['mem']}; Linux {m['kernel']}")
    L.append(f"- load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in m['load_before'])}, "
             f"after {'/'.join(f'{x:.2f}' for x in m['load_after'])} (the run's own servers and load generators "
             "raise the later figure; the run waits up to 2 minutes for the load to fall below 0.5 before it starts)")
    L.append(f"- grpc-rust {m['git']} ({m['rustc']}); tonic {m['tonic']}; grpc-go {m['grpc-go']} ({m['go']}); "
             f"grpc C++ {m['grpc-c++']}; {m['h2load']}")
    L.append(f"- pinning: servers on CPU {SERVER_CPU}, load generators on CPU {LOAD_CPU} (taskset"
             f"{'' if a.pin else ', DISABLED by --no-pin'}); each server's runtime sees 1 core "
             "(tokio and Go size themselves from the affinity mask)")
    L.append(f"- runs per point: {a.runs}; duration {a.duration} s after {a.warmup} s warm-up\n")
    L.append("Command: `scripts/bench.sh" + (" --quick" if a.quick else "") + f" --runs {a.runs}`"
             + (f" --only {','.join(a.only)}" if a.only != ALL_SECTIONS else "") + "\n")

    L += targets(res)

    U = res["unary"]
    if U:
        L.append("## 1. Unary throughput (h2load, req/s)\n")
        L.append("`h2load -c CONNS -m STREAMS -t 1 -D DUR --warm-up-time=W -H 'content-type: application/grpc' "
                 "-H 'te: trailers' -d simple_request.bin http://127.0.0.1:PORT/grpc.testing.BenchmarkService/UnaryCall` "
                 "(the body is one gRPC frame holding an empty SimpleRequest; the answer is an empty SimpleResponse).\n")
        servers = [s for s in SERVERS if any(r["server"] == s for r in U)]
        L.append("| conns x streams/conn | " + " | ".join(servers) + " | rust/tonic | rust/go | rust/ceiling |")
        L.append("|---" * (len(servers) + 4) + "|")
        for c, mm in sorted({(r["conns"], r["streams"]) for r in U}):
            row = [f"{c} x {mm}"]
            for s in servers:
                row.append(fmt(med([r["rps"] for r in U if r["server"] == s and r["conns"] == c and r["streams"] == mm])))
            mt = {"conns": c, "streams": mm}
            row += [fr(ratio_median(U, "rps", mt, "grpc-rust", "tonic")), fr(ratio_median(U, "rps", mt, "grpc-rust", "grpc-go")),
                    fr(ratio_median(U, "rps", mt, "grpc-rust", "h2-ceiling"))]
            L.append("| " + " | ".join(row) + " |")
        bad = [r for r in U if r["failed"] or r["errored"]]
        if bad:
            L.append(f"\n{len(bad)} h2load runs had failed/errored requests (see the JSON).")
        L.append("")

    LA = res["latency"]
    if LA:
        L.append("## 2. Latency (grpc-rust load client, microseconds)\n")
        L.append("Contentionless: `benchmark_worker client --mode=unary|pingpong --conns=1 --concurrency=1`; "
                 f"moderate load (`{MODERATE}`): `--mode=unary --conns=4 --concurrency=8`.\n")
        L.append("| call | server | p50 | p90 | p99 | calls/s |")
        L.append("|---|---|---|---|---|---|")
        for mode in ("unary", "pingpong", MODERATE):
            for s in SERVERS:
                rows = [r for r in LA if r["mode"] == mode and r["server"] == s]
                if rows:
                    L.append(f"| {mode} | {s} | {fmt(med([r['p50_us'] for r in rows]))} | {fmt(med([r['p90_us'] for r in rows]))}"
                             f" | {fmt(med([r['p99_us'] for r in rows]))} | {fmt(med([r['qps'] for r in rows]))} |")
        L.append("")

    Q = res["qps"]
    if Q:
        L.append("## 3. QPS scenario (qps_json_driver, client: grpc C++ qps_worker)\n")
        L.append("Scenarios bench/scenarios/qps_unary_2core.json and qps_streaming_2core.json: the official "
                 "async qps-unconstrained shape (closed loop, empty messages, many channels x many outstanding "
                 "calls) scaled to 2 cores: 16 channels x 50 outstanding calls. The server worker is pinned to "
                 "CPU 0, the client worker and driver to CPU 1.\n")
        L.append("| scenario | server | QPS | p50 us | p99 us |")
        L.append("|---|---|---|---|---|")
        for sc in sorted({r["scenario"] for r in Q}):
            for s in ("grpc-rust", "grpc-go", "grpc-c++"):
                rows = [r for r in Q if r["scenario"] == sc and r["server"] == s]
                if rows:
                    L.append(f"| {sc} | {s} | {fmt(med([r['qps'] for r in rows]))} | {fmt(med([r['p50_us'] for r in rows]))}"
                             f" | {fmt(med([r['p99_us'] for r in rows]))} |")
        L.append("")

    S = res["stream"]
    if S:
        L.append("## 4. Server streaming and a large unary (grpc-rust load client, MB/s)\n")
        L.append("`benchmark_worker client --mode=server-stream --resp_size=N` (StreamingFromServer; for grpc-go 1.33, "
                 "which has no StreamingFromServer, `--mode=go-server-stream` = UnconstrainedStreamingCall, the "
                 "same server-side loop), and `--mode=unary --resp_size=4194304`.\n")
        L.append("| what | grpc-rust | tonic | grpc-go | rust/tonic | rust/go |")
        L.append("|---|---|---|---|---|---|")
        for kind, size in sorted({(r["kind"], r["size"]) for r in S}, key=lambda k: (k[0] != "server-stream", k[1])):
            rows = [r for r in S if r["kind"] == kind and r["size"] == size]
            label = f"stream {size // 1024} KiB msgs" if kind == "server-stream" else "unary 4 MiB response"
            vals = [fmt(med([r["mbps"] for r in rows if r["server"] == s]), 1) for s in ("grpc-rust", "tonic", "grpc-go")]
            mt = {"kind": kind, "size": size}
            L.append(f"| {label} | " + " | ".join(vals) + f" | {fr(ratio_median(S, 'mbps', mt, 'grpc-rust', 'tonic'))}"
                     f" | {fr(ratio_median(S, 'mbps', mt, 'grpc-rust', 'grpc-go'))} |")
        L.append("")

    C = res["client"]
    if C:
        L.append("## 5. Client side: grpc-rust's client vs tonic's, same server\n")
        L.append("`benchmark_worker client ...` vs `tonic-peer client ...` with the same flags; client on CPU 1.\n")
        L.append("| server | call | conns x outstanding | grpc-rust calls/s | tonic calls/s | rust/tonic | grpc-rust p99 us | tonic p99 us |")
        L.append("|---|---|---|---|---|---|---|---|")
        for s in ("grpc-rust", "grpc-go"):
            for mode, conns, conc in sorted({(r["mode"], r["conns"], r["concurrency"]) for r in C}):
                rows = [r for r in C if r["server"] == s and r["mode"] == mode and r["conns"] == conns and r["concurrency"] == conc]
                if not rows:
                    continue
                g = lambda impl, k: med([r[k] for r in rows if r["client"] == impl])
                by_run = {}
                for r in rows:
                    by_run.setdefault(r["run"], {})[r["client"]] = r["qps"]
                rt = med([d["grpc-rust"] / d["tonic"] for d in by_run.values() if d.get("grpc-rust") and d.get("tonic")])
                L.append(f"| {s} | {mode} | {conns} x {conc} | {fmt(g('grpc-rust', 'qps'))} | {fmt(g('tonic', 'qps'))} | {fr(rt)}"
                         f" | {fmt(g('grpc-rust', 'p99_us'))} | {fmt(g('tonic', 'p99_us'))} |")
        L.append("")

    M = res["memory"]
    if M:
        L.append("## 6. Memory (server RSS)\n")
        L.append("A fresh server per point; RSS from /proc/PID/status after one warm-up connection (its first call "
                 "faults in code pages and grows runtime tables once; that is not a per-connection cost) and while "
                 "the grpc-rust load client "
                 "holds N idle connections (each made one unary call) or N open StreamingCall streams (one "
                 "exchange each, spread over 100 connections; 10 in --quick).\n")
        L.append("| what | server | RSS before (KiB) | RSS held (KiB) | KiB per item |")
        L.append("|---|---|---|---|---|")
        for kind in ("idle-conns", "open-streams"):
            for s in ("grpc-rust", "tonic", "grpc-go"):
                rows = [r for r in M if r["kind"] == kind and r["server"] == s]
                if rows:
                    L.append(f"| {max(r['n'] for r in rows)} {'idle connections' if kind == 'idle-conns' else 'open streams'} | {s}"
                             f" | {fmt(med([r['base_kib'] for r in rows]))} | {fmt(med([r['rss_kib'] for r in rows]))}"
                             f" | {fmt(med([r['per_item_kib'] for r in rows]), 2)} |")
        L.append("")

    CH = res.get("channel") or []
    if CH:
        L.append("## 7. Client channel: round_robin over 2 servers vs pick_first over 1\n")
        L.append("`benchmark_worker client --target=ipv4:A[,B] --lb_policy=...` (one channel; round_robin spreads its "
                 "calls over two grpc-rust servers, both on CPU 0); client on CPU 1.\n")
        L.append("| call | outstanding | pick_first calls/s | round_robin calls/s | rr/pf | pick_first p99 us | round_robin p99 us |")
        L.append("|---|---|---|---|---|---|---|")
        for mode, conc in sorted({(r["mode"], r["concurrency"]) for r in CH}):
            rows = [r for r in CH if r["mode"] == mode and r["concurrency"] == conc]
            g = lambda pol, k: med([r[k] for r in rows if r["policy"] == pol])
            by_run = {}
            for r in rows:
                by_run.setdefault(r["run"], {})[r["policy"]] = r["qps"]
            rt = med([d["round_robin"] / d["pick_first"] for d in by_run.values()
                      if d.get("round_robin") and d.get("pick_first")])
            L.append(f"| {mode} | {conc} | {fmt(g('pick_first', 'qps'))} | {fmt(g('round_robin', 'qps'))} | {fr(rt)}"
                     f" | {fmt(g('pick_first', 'p99_us'))} | {fmt(g('round_robin', 'p99_us'))} |")
        L.append("")

    if res.get("errors"):
        L.append("## Errors during the run\n")
        for e in res["errors"]:
            L.append(f"- {e}")
        L.append("")
    L.append(f"Plot: [{os.path.basename(a.svg)}]({os.path.basename(a.svg)}). Raw numbers: "
             f"[{os.path.basename(a.json)}]({os.path.basename(a.json)}).\n")
    L.append("## Optimisation log\n")
    L.append("Every optimisation records its before/after here (same machine, same command).\n")
    L.append("| change | metric | before | after |")
    L.append("|---|---|---|---|")
    L.append("| (none yet) | | | |\n")
    text = "\n".join(L)
    # Keep a hand-written optimisation log if the file already has one below the marker.
    if os.path.exists(a.out):
        old = open(a.out).read()
        mk = "## Optimisation log\n"
        if mk in old and "(none yet)" not in old.split(mk, 1)[1]:
            text = text.split(mk, 1)[0] + mk + old.split(mk, 1)[1]
    with open(a.out, "w") as f:
        f.write(text)
    write_svg(res, a)


# ---------------------------------------------------------------- svg

def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bar_panel(y0, title, unit, groups, series, value, width=900, height=230, note=""):
    """One grouped bar chart; returns (svg elements, height used)."""
    out = [f'<text x="20" y="{y0 + 22}" font-size="16" font-weight="bold">{esc(title)}</text>']
    if note:
        out.append(f'<text x="20" y="{y0 + 40}" font-size="11" fill="#555">{esc(note)}</text>')
    top, left, plot_h = y0 + 55, 70, height - 100
    plot_w = width - left - 20
    vals = [value(g, s) for g in groups for s in series]
    vmax = max([v for v in vals if v] or [1.0])
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>')
    for i in range(5):
        v = vmax * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{esc(short(v))}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2:.0f}" font-size="11" transform="rotate(-90 14 {top + plot_h / 2:.0f})" '
               f'text-anchor="middle">{esc(unit)}</text>')
    gw = plot_w / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = value(g, s)
            x = gx + si * bw
            if v is None:
                out.append(f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - 3}" font-size="9" text-anchor="middle" fill="#999">n/a</text>')
                continue
            h = plot_h * v / vmax
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                       f'fill="{COLORS.get(s, "#444")}"><title>{esc(s)} {esc(g)}: {v:,.1f} {esc(unit)}</title></rect>')
            if bw > 26:
                out.append(f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - h - 3:.1f}" font-size="9" text-anchor="middle">{esc(short(v))}</text>')
        out.append(f'<text x="{gx + gw * 0.4:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle">{esc(g)}</text>')
    lx = left
    for s in series:
        out.append(f'<rect x="{lx}" y="{top + plot_h + 28}" width="12" height="12" fill="{COLORS.get(s, "#444")}"/>')
        out.append(f'<text x="{lx + 16}" y="{top + plot_h + 38}" font-size="11">{esc(s)}</text>')
        lx += 30 + 7 * len(s)
    return out, height


def short(v):
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2f}"


def write_svg(res, a):
    panels = []
    U = res["unary"]
    if U:
        servers = [s for s in SERVERS if any(r["server"] == s for r in U)]
        groups = [f"{c}x{m}" for c, m in sorted({(r["conns"], r["streams"]) for r in U})]
        def v(g, s):
            c, m = map(int, g.split("x"))
            return med([r["rps"] for r in U if r["server"] == s and r["conns"] == c and r["streams"] == m])
        panels.append(("Unary throughput, h2load (higher is better)", "req/s", groups, servers, v,
                       "groups: connections x concurrent streams per connection"))
    LA = res["latency"]
    if LA:
        servers = [s for s in SERVERS if any(r["server"] == s for r in LA)]
        groups = [f"{mode} p{p}" for mode in ("unary", "pingpong") for p in (50, 99)]
        def v(g, s):
            mode, p = g.split(" p")
            return med([r[f"p{p}_us"] for r in LA if r["server"] == s and r["mode"] == mode])
        panels.append(("Contentionless latency (lower is better)", "microseconds", groups, servers, v, "1 outstanding call"))
    S = res["stream"]
    if S:
        servers = [s for s in ("grpc-rust", "tonic", "grpc-go") if any(r["server"] == s for r in S)]
        keys = sorted({(r["kind"], r["size"]) for r in S}, key=lambda k: (k[0] != "server-stream", k[1]))
        groups = [f"stream {sz // 1024} KiB" if k == "server-stream" else "unary 4 MiB" for k, sz in keys]
        def v(g, s):
            k, sz = keys[groups.index(g)]
            return med([r["mbps"] for r in S if r["server"] == s and r["kind"] == k and r["size"] == sz])
        panels.append(("Large messages (higher is better)", "MB/s", groups, servers, v, "server streaming and 4 MiB unary"))
    C = res["client"]
    if C:
        groups = sorted({f"{r['server']} {r['mode']} {r['conns']}x{r['concurrency']}" for r in C})
        def v(g, s):
            srv, mode, cc = g.split(" ")
            c, n = map(int, cc.split("x"))
            return med([r["qps"] for r in C if r["server"] == srv and r["mode"] == mode and r["conns"] == c
                        and r["concurrency"] == n and r["client"] + " client" == s])
        panels.append(("Clients against the same server (higher is better)", "calls/s", groups,
                       ["grpc-rust client", "tonic client"], v, "group: server, call, connections x outstanding"))
    M = res["memory"]
    if M:
        servers = [s for s in ("grpc-rust", "tonic", "grpc-go") if any(r["server"] == s for r in M)]
        groups = ["per idle conn", "per open stream"]
        def v(g, s):
            k = "idle-conns" if "conn" in g else "open-streams"
            return med([r["per_item_kib"] for r in M if r["server"] == s and r["kind"] == k])
        panels.append(("Server memory (lower is better)", "KiB RSS", groups, servers, v, "RSS growth / items held"))
    Q = res["qps"]
    if Q:
        groups = sorted({r["scenario"] for r in Q})
        servers = [s for s in ("grpc-rust", "grpc-go", "grpc-c++") if any(r["server"] == s for r in Q)]
        def v(g, s):
            return med([r["qps"] for r in Q if r["scenario"] == g and r["server"] == s])
        panels.append(("qps_json_driver scenarios (higher is better)", "QPS", groups, servers, v, "client: grpc C++ qps_worker"))
    y = 40
    body = []
    m = res["meta"]
    title = f"grpc-rust benchmarks - {m['date']} - {m['cpu']} x{m['cores']} - load {m['load_before'][0]:.2f}->{m['load_after'][0]:.2f}"
    if a.quick or m["load_before"][0] >= 1.0:
        title += " - NOT MEANINGFUL (smoke run / loaded machine)"
    body.append(f'<text x="20" y="25" font-size="13" fill="#a00">{esc(title)}</text>')
    for p in panels:
        title, unit, groups, series, value, note = p
        els, h = bar_panel(y, title, unit, groups, series, value, note=note)
        body += els
        y += h
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{y + 10}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n")
    with open(a.svg, "w") as f:
        f.write(svg)


ALL_SECTIONS = ["unary", "latency", "stream", "client", "memory", "qps", "channel"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (1 run, 2 s, smaller memory probes)")
    ap.add_argument("--runs", type=int, default=None, help="runs per point (default 3; 1 with --quick)")
    ap.add_argument("--duration", type=float, default=None, help="seconds measured per point (default 10; 2 with --quick)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds per point (default 2; 1 with --quick)")
    ap.add_argument("--only", default=",".join(ALL_SECTIONS), help="comma-separated sections: " + ",".join(ALL_SECTIONS))
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not taskset (machines with < 2 cores)")
    ap.add_argument("--no-cpp", action="store_true", help="(bench.sh) do not build grpc C++; qps is skipped if absent")
    ap.add_argument("--peers", default=os.path.expanduser("~/.cache/grpc-rust/peers"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks.md"))
    ap.add_argument("--svg", default=None)
    ap.add_argument("--from-json", default=None, help="only rewrite the report and plot from a results JSON")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    a.runs = a.runs or (1 if a.quick else 3)
    a.duration = a.duration or (2.0 if a.quick else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.quick else 2.0)
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    for s in a.only:
        if s not in ALL_SECTIONS:
            ap.error(f"unknown section {s}")
    base = os.path.splitext(a.out)[0]
    a.svg = a.svg or base + ".svg"
    a.json = a.json or base + "-results.json"
    if a.pin and (os.cpu_count() or 1) < 2:
        log("fewer than 2 cores: not pinning")
        a.pin = False
    if a.from_json:
        with open(a.from_json) as f:
            res = json.load(f)
        for k in ("quick", "runs", "duration", "warmup", "only", "pin"):
            setattr(a, k, res["meta"]["args"].get(k, getattr(a, k)))
        report(res, a)
        log(f"wrote {a.out}, {a.svg} from {a.from_json}")
        return
    raise_nofile()
    Bench(a).go()


if __name__ == "__main__":
    main()
