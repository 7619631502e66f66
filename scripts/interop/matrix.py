#!/usr/bin/env python3
"""grpc-rust interop matrix: run the official interop test cases between
gRPC implementations and print a case x pair matrix.

Stdlib only. Normally started through scripts/interop.sh, which builds the
peers (scripts/peers/) and our conformance binaries first.

Implementations:
  ours    grpc-rust conformance/ interop_server + interop_client (--ours-bin-dir)
  go      grpc-go 1.33.3 (Debian source package)
  cpp     grpc C++ 1.51.1 (Debian source package + libgrpc++)
  python  grpcio from PyPI running grpc 1.51.1's interop code
  ruby    Debian ruby-grpc 1.51.1 running grpc 1.51.1's interop code (optional)

Every server is started once per security mode on a free 127.0.0.1 port and
serves all its pairs. TLS everywhere uses grpc-rust's test certificates
(conformance/certs): each server serves server1.pem/server1.key, each client
trusts ca.pem and verifies the name foo.test.google.fr.

Cells: pass | FAIL | known[kN] (failure listed in KNOWN_LIMITATIONS with its
cause) | skip[sN] (not run, reason in the notes). Exit status 1 when any FAIL,
0 otherwise.
"""
import argparse
import fnmatch
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PEERS = os.environ.get("GRPC_RUST_PEERS", os.path.expanduser("~/.cache/grpc-rust/peers"))
CERTS = os.path.join(REPO, "conformance", "certs")
CA, CERT, KEY = (os.path.join(CERTS, f) for f in ("ca.pem", "server1.pem", "server1.key"))
HOST_OVERRIDE = "foo.test.google.fr"

# The cases of issue 5, in the order of grpc's interop-test-descriptions.
CASES = [
    "empty_unary", "large_unary", "client_compressed_unary", "server_compressed_unary",
    "client_streaming", "client_compressed_streaming", "server_streaming",
    "server_compressed_streaming", "ping_pong", "empty_stream", "custom_metadata",
    "status_code_and_message", "special_status_message", "unimplemented_method",
    "unimplemented_service", "cancel_after_begin", "cancel_after_first_response",
    "timeout_on_sleeping_server", "very_large_request", "concurrent_large_unary",
    "rpc_soak", "channel_soak",
]
SOAK = {"rpc_soak", "channel_soak"}

# Failures that are the peers' fault, not ours: (client, server, case, security) glob
# patterns -> cause. A matching failure is shown as known[kN] and does not fail the run;
# a matching pass is shown as pass with a note.
KNOWN_LIMITATIONS = []
# Pairs not run at all, with the reason: (client, server, case, security) -> reason.
KNOWN_SKIPS = []

# The grpc-go 1.33, Python 1.51 and Ruby 1.51 interop servers implement no compression
# checks: they ignore expect_compressed (never answer INVALID_ARGUMENT to an
# uncompressed request that claims to be compressed) and response_compressed (never
# compress). Only the C++ server (and ours) can take part in the compression cases.
NO_COMPRESSION_SERVERS = {"go": "grpc-go 1.33", "python": "Python 1.51", "ruby": "Ruby 1.51"}
for _srv, _desc in NO_COMPRESSION_SERVERS.items():
    KNOWN_LIMITATIONS.append(
        ("*", _srv, "*_compressed_*", "*",
         f"peer limitation: the {_desc} interop server implements no compression checks (ignores "
         f"expect_compressed and response_compressed), so the client's compression probe or "
         f"compressed-response check fails"))
    KNOWN_SKIPS.append(
        ("cpp", _srv, "client_compressed_*", "*",
         f"peer limitation, not run: the {_desc} server does not reject the C++ client's "
         f"uncompressed probe (expect_compressed=true); the C++ client then exits 0 without "
         f"testing (unary) or hangs (streaming)"))

# very_large_request sends a 10 MiB request (as grpc-java's interop client does; its
# interop server accepts up to 16 MiB). The peers' interop servers keep grpc's default
# 4 MiB receive limit and answer RESOURCE_EXHAUSTED.
for _srv, _desc in {"go": "grpc-go 1.33", "cpp": "grpc C++ 1.51", "python": "Python 1.51",
                    "ruby": "Ruby 1.51"}.items():
    KNOWN_LIMITATIONS.append(
        ("ours", _srv, "very_large_request", "*",
         f"peer limitation: the {_desc} interop server keeps the default 4 MiB maximum received "
         f"message size, so the 10 MiB request ends with RESOURCE_EXHAUSTED"))

# concurrent_large_unary (experimental in grpc's interop descriptions) runs 1000 large
# unary calls on one channel, 100 in flight at a time. Ruby's interop server
# (src/ruby/pb/test/server.rb) uses GRPC::RpcServer.new with its defaults: a fixed thread
# pool (DEFAULT_POOL_SIZE = 30 workers, DEFAULT_MAX_WAITING_REQUESTS = 20), and
# RpcServer#available? answers every call beyond that with RESOURCE_EXHAUSTED
# "No free threads in thread pool" (grpc 1.51 src/ruby/lib/grpc/generic/rpc_server.rb).
KNOWN_LIMITATIONS.append(
    ("ours", "ruby", "concurrent_large_unary", "*",
     "peer limitation: Ruby's interop server uses RpcServer's default thread pool (30 workers, "
     "20 waiting requests) and answers RESOURCE_EXHAUSTED \"No free threads in thread pool\" "
     "once ~100 calls are in flight (cause: Ruby's thread-pool server, rpc_server.rb available?)"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Impl:
    """One implementation: how to run its server and client, and what its client supports."""

    name = "?"
    client_cases = None  # None: every case; else the set the client implements
    client_lacks_reason = "client does not implement this case"

    def available(self):
        """(True, '') or (False, reason)."""
        return True, ""

    def server(self, port, tls):
        """(argv, env, cwd) of the server."""
        raise NotImplementedError

    def client(self, port, case, tls, soak_iterations):
        """(argv, env, cwd) of the client for one case."""
        raise NotImplementedError


def need(paths, hint):
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        return False, f"not built: {missing[0]} missing ({hint})"
    return True, ""


class Ours(Impl):
    name = "ours"

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.srv = os.path.join(bin_dir, "interop_server")
        self.cli = os.path.join(bin_dir, "interop_client")

    def available(self):
        return need([self.srv, self.cli],
                    "cargo build --release -p conformance --bin interop_server --bin interop_client")

    def server(self, port, tls):
        argv = [self.srv, f"--port={port}"]
        if tls:
            argv += ["--use_tls=true", f"--tls_cert_file={CERT}", f"--tls_key_file={KEY}"]
        return argv, {}, REPO

    def client(self, port, case, tls, soak_iterations):
        argv = [self.cli, "--server_host=127.0.0.1", f"--server_port={port}", f"--test_case={case}"]
        if tls:
            argv += ["--use_tls=true", "--use_test_ca=true", f"--ca_file={CA}",
                     f"--server_host_override={HOST_OVERRIDE}"]
        if case in SOAK:
            argv += soak_flags(soak_iterations)
        return argv, {}, REPO


def soak_flags(n):
    return [f"--soak_iterations={n}", "--soak_max_failures=0",
            "--soak_per_iteration_max_acceptable_latency_ms=5000",
            "--soak_overall_timeout_seconds=60"]


class Go(Impl):
    name = "go"
    client_cases = {
        "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong",
        "empty_stream", "timeout_on_sleeping_server", "cancel_after_begin",
        "cancel_after_first_response", "status_code_and_message", "special_status_message",
        "custom_metadata", "unimplemented_method", "unimplemented_service",
    }
    client_lacks_reason = "the grpc-go 1.33 interop client does not implement this case"

    def __init__(self):
        self.bin = os.path.join(PEERS, "go", "bin")

    def available(self):
        return need([os.path.join(self.bin, b) for b in ("interop_server", "interop_client")],
                    "scripts/peers/build-go.sh")

    def server(self, port, tls):
        argv = [os.path.join(self.bin, "interop_server"), f"--port={port}"]
        if tls:
            argv += ["--use_tls", f"--tls_cert_file={CERT}", f"--tls_key_file={KEY}"]
        return argv, {}, None

    def client(self, port, case, tls, soak_iterations):
        argv = [os.path.join(self.bin, "interop_client"), "--server_host=127.0.0.1",
                f"--server_port={port}", f"--test_case={case}"]
        if tls:
            argv += ["--use_tls", "--use_test_ca", f"--ca_file={CA}",
                     f"--server_host_override={HOST_OVERRIDE}"]
        return argv, {}, None


class Cpp(Impl):
    name = "cpp"
    client_cases = set(CASES) - {"very_large_request", "concurrent_large_unary"}
    client_lacks_reason = "the grpc C++ 1.51 interop client does not implement this case"

    def __init__(self):
        self.dir = os.path.join(PEERS, "cpp")

    def available(self):
        return need([os.path.join(self.dir, b) for b in ("interop_server", "interop_client")],
                    "scripts/peers/build-cpp.sh")

    def server(self, port, tls):
        argv = [os.path.join(self.dir, "interop_server"), f"--port={port}"]
        if tls:
            argv += ["--use_tls=true", f"--tls_cert_file={CERT}", f"--tls_key_file={KEY}"]
        return argv, {}, None

    def client(self, port, case, tls, soak_iterations):
        argv = [os.path.join(self.dir, "interop_client"), "--server_host=127.0.0.1",
                f"--server_port={port}", f"--test_case={case}"]
        env = {}
        if tls:
            # --use_test_ca=true would pin grpc's embedded test CA; with false the client
            # loads its roots from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH and honours the override.
            argv += ["--use_tls=true", "--use_test_ca=false", f"--server_host_override={HOST_OVERRIDE}"]
            env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = CA
        if case in SOAK:
            argv += soak_flags(soak_iterations)
        return argv, env, None


class Python(Impl):
    name = "python"
    client_cases = {
        "empty_unary", "large_unary", "server_streaming", "client_streaming", "ping_pong",
        "cancel_after_begin", "cancel_after_first_response", "empty_stream",
        "status_code_and_message", "unimplemented_method", "unimplemented_service",
        "custom_metadata", "timeout_on_sleeping_server", "special_status_message",
    }
    client_lacks_reason = "the Python (grpc 1.51) interop client does not implement this case"

    def __init__(self):
        self.py = os.path.join(PEERS, "py", "venv", "bin", "python")
        self.tree = os.path.join(PEERS, "py", "interop")

    def available(self):
        return need([self.py, os.path.join(self.tree, "tests", "interop", "client.py"),
                     os.path.join(self.tree, f".complete-1.51.1")], "scripts/peers/setup-python.sh")

    def server(self, port, tls):
        argv = [self.py, "-m", "tests.interop.server", f"--port={port}"]
        env = {}
        if tls:
            argv += ["--use_tls=true"]
            env = {"INTEROP_TLS_CERT_FILE": CERT, "INTEROP_TLS_KEY_FILE": KEY}
        return argv, env, self.tree

    def client(self, port, case, tls, soak_iterations):
        argv = [self.py, "-m", "tests.interop.client", "--server_host=127.0.0.1",
                f"--server_port={port}", f"--test_case={case}"]
        env = {}
        if tls:
            argv += ["--use_tls=true", "--use_test_ca=true", f"--server_host_override={HOST_OVERRIDE}"]
            env["INTEROP_CA_FILE"] = CA  # read by our patched tests/interop/resources.py
        return argv, env, self.tree


class Ruby(Impl):
    name = "ruby"
    client_cases = {
        "empty_unary", "large_unary", "client_compressed_unary", "client_streaming",
        "client_compressed_streaming", "server_streaming", "ping_pong", "timeout_on_sleeping_server",
        "empty_stream", "cancel_after_begin", "cancel_after_first_response", "unimplemented_method",
        "unimplemented_service", "status_code_and_message", "custom_metadata",
    }
    client_lacks_reason = "the Ruby (grpc 1.51) interop client does not implement this case"

    def __init__(self):
        self.tree = os.path.join(PEERS, "ruby")

    def available(self):
        ok, why = need([os.path.join(self.tree, ".complete-1.51.1")], "scripts/peers/setup-ruby.sh")
        if ok and not shutil.which("ruby"):
            return False, "ruby is not installed (scripts/peers/setup-ruby.sh)"
        return ok, why

    def server(self, port, tls):
        argv = ["ruby", os.path.join(self.tree, "pb", "test", "server.rb"), f"--port={port}"]
        env = {}
        if tls:
            argv += ["--use_tls=true"]
            env = {"INTEROP_TLS_CERT_FILE": CERT, "INTEROP_TLS_KEY_FILE": KEY}
        return argv, env, self.tree

    def client(self, port, case, tls, soak_iterations):
        argv = ["ruby", os.path.join(self.tree, "pb", "test", "client.rb"), "--server_host=127.0.0.1",
                f"--server_port={port}", f"--test_case={case}"]
        env = {}
        if tls:
            # --use_test_ca=false: default roots, which grpc core reads from this file.
            argv += ["--use_tls=true", "--use_test_ca=false", f"--server_host_override={HOST_OVERRIDE}"]
            env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = CA
        return argv, env, self.tree


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class Server:
    """A running server process (own process group, killed as a whole)."""

    def __init__(self, impl, tls, log_dir):
        self.impl, self.tls = impl, tls
        self.port = free_port()
        argv, env, cwd = impl.server(self.port, tls)
        self.log_path = os.path.join(log_dir, f"server-{impl.name}-{'tls' if tls else 'plain'}.log")
        self.log = open(self.log_path, "wb")
        self.log.write((" ".join(argv) + "\n").encode())
        self.log.flush()
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.error = self._wait_ready(30)

    def _wait_ready(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                return f"server exited with {self.proc.returncode} before listening (see {self.log_path})"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return None
            except OSError:
                time.sleep(0.1)
        return f"server not listening on port {self.port} after {timeout}s (see {self.log_path})"

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        kill_group(self.proc)
        self.log.close()


def run_client(impl, port, case, tls, args, log_dir, label):
    argv, env, cwd = impl.client(port, case, tls, args.soak_iterations)
    timeout = args.soak_timeout if case in SOAK else args.timeout
    t0 = time.time()
    p = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
        why = None if rc == 0 else f"exit status {rc}"
    except subprocess.TimeoutExpired:
        kill_group(p)
        out = p.stdout.read() if p.stdout else b""
        rc, why = None, f"timed out after {timeout}s"
    dt = time.time() - t0
    with open(os.path.join(log_dir, f"{label}-{case}.log"), "wb") as f:
        f.write((" ".join(argv) + "\n").encode() + (out or b""))
    return why, (out or b"").decode("utf-8", "replace"), dt


def known_skip(client, server, case, tls):
    sec = "tls" if tls else "plaintext"
    for (c, s, k, m, why) in KNOWN_SKIPS:
        if (fnmatch.fnmatch(client, c) and fnmatch.fnmatch(server, s)
                and fnmatch.fnmatch(case, k) and fnmatch.fnmatch(sec, m)):
            return why
    return None


def known_cause(client, server, case, tls):
    sec = "tls" if tls else "plaintext"
    for i, (c, s, k, m, cause) in enumerate(KNOWN_LIMITATIONS, 1):
        if (fnmatch.fnmatch(client, c) and fnmatch.fnmatch(server, s)
                and fnmatch.fnmatch(case, k) and fnmatch.fnmatch(sec, m)):
            return f"k{i}", cause
    return None, None


def main():
    ap = argparse.ArgumentParser(description="grpc-rust interop matrix runner",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--peers", default="go,cpp,python,ruby",
                    help="peer implementations (default go,cpp,python,ruby)")
    ap.add_argument("--pairs", default="ours-both-ways",
                    help="comma list of CLIENT:SERVER pairs, or 'ours-both-ways' (ours:P and P:ours for every "
                         "peer P; the default), or 'peer-vs-peer' (every P1:P2 among the peers)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of test cases (default: all)")
    ap.add_argument("--security", default="plaintext,tls", help="plaintext,tls (default both)")
    ap.add_argument("--ours-bin-dir", default=os.environ.get("OURS_BIN_DIR", os.path.join(REPO, "target", "release")))
    ap.add_argument("--timeout", type=int, default=30, help="seconds per client run (default 30)")
    ap.add_argument("--soak-timeout", type=int, default=120, help="seconds per soak client run (default 120)")
    ap.add_argument("--soak-iterations", type=int, default=10, help="soak iterations (default 10)")
    ap.add_argument("--markdown", help="also write the matrix as markdown to this file")
    ap.add_argument("--log-dir", default=os.path.join(REPO, "target", "interop-logs"))
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first unexpected failure")
    ap.add_argument("--require-all", action="store_true",
                    help="fail (exit 1) when an implementation in the pairs is not available, instead of "
                         "skipping its pairs (for CI)")
    args = ap.parse_args()

    impls = {"ours": Ours(args.ours_bin_dir), "go": Go(), "cpp": Cpp(), "python": Python(), "ruby": Ruby()}
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in impls or p == "ours":
            ap.error(f"unknown peer {p!r}")
    pairs = []
    for spec in [s.strip() for s in args.pairs.split(",") if s.strip()]:
        if spec == "ours-both-ways":
            for p in peers:
                pairs += [("ours", p), (p, "ours")]
        elif spec == "peer-vs-peer":
            pairs += [(a, b) for a in peers for b in peers]
        else:
            c, sep, s = spec.partition(":")
            if not sep or c not in impls or s not in impls:
                ap.error(f"bad pair {spec!r} (want CLIENT:SERVER with {', '.join(impls)})")
            pairs.append((c, s))
    pairs = list(dict.fromkeys(pairs))
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}")
    modes = []
    for m in args.security.split(","):
        m = m.strip()
        if m not in ("plaintext", "tls"):
            ap.error(f"bad security mode {m!r}")
        modes.append(m == "tls")
    os.makedirs(args.log_dir, exist_ok=True)
    if any(modes) and not all(os.path.exists(f) for f in (CA, CERT, KEY)):
        sys.exit(f"TLS certificates missing in {CERTS} (run scripts/gen-test-certs.sh)")

    avail = {n: impls[n].available() for n in {x for pr in pairs for x in pr}}
    for n, (ok, why) in sorted(avail.items()):
        print(f"{n:7} {'available' if ok else 'UNAVAILABLE: ' + why}", flush=True)
    missing = [n for n, (ok, _) in avail.items() if not ok]
    if args.require_all and missing:
        print(f"--require-all: unavailable: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1

    columns = [(c, s, tls) for tls in modes for (c, s) in pairs]
    results = {}  # (col, case) -> (kind, note_key_or_None, detail)
    notes = {}    # key -> text
    note_ids = {}

    def note(prefix, text):
        if (prefix, text) not in note_ids:
            note_ids[(prefix, text)] = f"{prefix}{sum(1 for k in note_ids if k[0] == prefix) + 1}"
            notes[note_ids[(prefix, text)]] = text
        return note_ids[(prefix, text)]

    start = time.time()
    unexpected = 0
    stop = False
    for tls in modes:
        for server_name in dict.fromkeys(s for (c, s) in pairs):
            if stop:
                break
            my_cols = [(c, s, t) for (c, s, t) in columns if s == server_name and t == tls]
            server = None
            srv_ok, srv_why = avail[server_name]
            runnable = [col for col in my_cols if avail[col[0]][0]] if srv_ok else []
            if runnable:
                server = Server(impls[server_name], tls, args.log_dir)
                if server.error:
                    srv_ok, srv_why = False, server.error
            for col in my_cols:
                client_name = col[0]
                label = f"{client_name}-to-{server_name}-{'tls' if tls else 'plain'}"
                for case in cases:
                    key = (col, case)
                    cli = impls[client_name]
                    if not avail[client_name][0]:
                        results[key] = ("skip", note("s", f"{client_name} {avail[client_name][1]}"), "")
                        continue
                    if not avail[server_name][0]:
                        results[key] = ("skip", note("s", f"{server_name} {avail[server_name][1]}"), "")
                        continue
                    if cli.client_cases is not None and case not in cli.client_cases:
                        results[key] = ("skip", note("s", cli.client_lacks_reason), "")
                        continue
                    skip_why = known_skip(client_name, server_name, case, tls)
                    if skip_why:
                        results[key] = ("skip", note("s", skip_why), "")
                        continue
                    if stop:
                        results[key] = ("skip", note("s", "not run: --fail-fast stopped the run"), "")
                        continue
                    if not srv_ok:
                        why, out = srv_why, ""
                    else:
                        if not server.alive():
                            server.stop()
                            server = Server(impls[server_name], tls, args.log_dir)
                            if server.error:
                                srv_ok, srv_why = False, server.error
                                why, out = srv_why, ""
                        if srv_ok:
                            why, out, dt = run_client(cli, server.port, case, tls, args, args.log_dir, label)
                    if why is None:
                        results[key] = ("pass", None, "")
                        kid, cause = known_cause(client_name, server_name, case, tls)
                        if kid:
                            notes[kid] = cause
                            results[key] = ("pass", note("n", f"known limitation {kid} did not reproduce"), "")
                        status = "pass"
                    else:
                        kid, cause = known_cause(client_name, server_name, case, tls)
                        tail = "\n".join(out.strip().splitlines()[-12:])
                        if kid:
                            notes[kid] = cause
                            results[key] = ("known", kid, f"{why}\n{tail}")
                            status = f"known ({kid})"
                        else:
                            results[key] = ("FAIL", None, f"{why}\n{tail}")
                            status = f"FAIL: {why}"
                            unexpected += 1
                            if args.fail_fast:
                                stop = True
                    print(f"  {label:28} {case:30} {status}", flush=True)
            if server:
                server.stop()

    elapsed = time.time() - start
    render(columns, cases, results, notes, elapsed, unexpected, args)
    return 1 if unexpected else 0


def col_name(col):
    c, s, tls = col
    return f"{c}>{s} {'tls' if tls else 'plain'}"


def cell(r):
    kind, key, _ = r
    if kind == "pass":
        return "pass" if not key else f"pass[{key}]"
    if kind == "FAIL":
        return "FAIL"
    return f"{kind}[{key}]"


def render(columns, cases, results, notes, elapsed, unexpected, args):
    counts = {}
    for r in results.values():
        counts[r[0]] = counts.get(r[0], 0) + 1
    summary = (f"{counts.get('pass', 0)} pass, {counts.get('FAIL', 0)} FAIL, "
               f"{counts.get('known', 0)} known peer limitation, {counts.get('skip', 0)} skip "
               f"in {elapsed:.0f} s")
    failures = [(col, case, r[2]) for (col, case), r in results.items() if r[0] == "FAIL"]
    # Plain-text matrix: one column per pair and security mode.
    names = [col_name(c) for c in columns]
    w0 = max(len(c) for c in cases + ["case"])
    widths = [max(len(n), 9) for n in names]
    lines = ["", "case".ljust(w0) + "  " + "  ".join(n.ljust(w) for n, w in zip(names, widths))]
    for case in cases:
        lines.append(case.ljust(w0) + "  " + "  ".join(
            cell(results[(col, case)]).ljust(w) for col, w in zip(columns, widths)))
    lines.append("")
    for k in sorted(notes, key=lambda k: (k[0], int(k[1:]))):
        lines.append(f"[{k}] {notes[k]}")
    for col, case, detail in failures:
        lines.append(f"\nFAIL {col_name(col)} {case}:\n  " + detail.replace("\n", "\n  "))
    lines.append(f"\n{summary}")
    print("\n".join(lines))
    if args.markdown:
        md = ["| case | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for case in cases:
            md.append(f"| {case} | " + " | ".join(cell(results[(col, case)]) for col in columns) + " |")
        md.append("")
        md.append("Columns are `client>server security`. pass; FAIL; known[kN]: a failure caused by the "
                  "peer, listed with its cause; skip[sN]: not run, for the reason given.")
        md.append("")
        for k in sorted(notes, key=lambda k: (k[0], int(k[1:]))):
            md.append(f"- **{k}**: {notes[k]}")
        if failures:
            md.append("")
            md.append("Failures:")
            for col, case, detail in failures:
                lines_ = [l.strip() for l in detail.splitlines() if l.strip()]
                last = f" ({lines_[-1][:200]})" if len(lines_) > 1 else ""
                md.append(f"- `{col_name(col)}` `{case}`: {lines_[0] if lines_ else 'failed'}{last}")
        md.append("")
        md.append(summary + ".")
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"markdown written to {args.markdown}")


if __name__ == "__main__":
    sys.exit(main())
