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

Soak cases (rpc_soak, channel_soak): every client gets --soak_iterations (from
--soak-iterations), --soak_max_failures=0, a per-iteration latency bound of
SOAK_MAX_LATENCY_MS and --soak_overall_timeout_seconds 10 s below --soak-timeout; a
client that exits 0 passes only if its output shows that many "soak iteration: ...
succeeded" lines. The grpc-go 1.33 and Python 1.51 interop clients lack these cases, so
they run through small drivers on those libraries (scripts/peers/go-soak, built into
$GRPC_RUST_PEERS/go/bin/soak_client; scripts/peers/py-soak/soak_client.py on grpcio).

Every server is started once per security mode on a free 127.0.0.1 port and
serves all its pairs. TLS everywhere uses grpc-rust's test certificates
(conformance/certs): each server serves server1.pem/server1.key, each client
trusts ca.pem and verifies the name foo.test.google.fr.

Cells: pass | FAIL | known[kN] (failure listed in KNOWN_LIMITATIONS with its
cause) | skip[sN] (not run, reason in the notes). Exit status 1 when any FAIL,
0 otherwise.

Channel cases (CHANNEL_CASES; plaintext, selected with --cases like the others): our
interop_client against SEVERAL peer servers at once through one --server_uri target,
which checks the channel's name resolution, load balancing and retries against servers
we did not write. One server per peer in --peers (two grpc-go servers, or two of the
only peer, when fewer than two peers are selected) is started for the whole group.
  round_robin_soak     rpc_soak (1 KiB payloads, 10 ms apart) over ipv4:<every peer
                       server> with round_robin: every iteration succeeds and every server
                       answers at least 60% of its fair share of the iterations (30% each
                       with two servers)
  pick_first_failover  rpc_soak over ipv4:<dead port>,<first peer>,<second peer> with
                       pick_first (the dead port is bound, not listening: refused at once):
                       every iteration succeeds on the first live peer
  retry_attempts       status_code_and_message (a UnaryCall and a FullDuplexCall, each
                       answered UNKNOWN by the server) against each peer server through a
                       TCP proxy that reads the HTTP/2 frame headers: without a policy the
                       peer sees 2 streams (the control); under a retryPolicy (maxAttempts 3,
                       retryable UNKNOWN) the case must still pass and the streams must
                       follow gRFC A6: a call answered Trailers-Only is tried 3 times, a
                       call answered with response headers first is committed (1 attempt).
                       grpc-go and C++ answer Trailers-Only (3+3 attempts); Python sends
                       headers on its unary error (1+3), Ruby on both (1+1). At least one
                       call must have been retried. No peer interop server can fail a call
                       transiently, so this checks attempts, not recovery.
"""
import argparse
import atexit
import fnmatch
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
# Our client against several peer servers at once (see the module docstring).
CHANNEL_CASES = ["round_robin_soak", "pick_first_failover", "retry_attempts"]
ROUND_ROBIN = '{"loadBalancingConfig":[{"round_robin":{}}]}'
PICK_FIRST = '{"loadBalancingConfig":[{"pick_first":{}}]}'
RETRY_ATTEMPTS = 3
RETRY_UNKNOWN = ('{"methodConfig":[{"name":[{"service":"grpc.testing.TestService"}],"retryPolicy":'
                 '{"maxAttempts":%d,"initialBackoff":"0.05s","maxBackoff":"0.2s","backoffMultiplier":2,'
                 '"retryableStatusCodes":["UNKNOWN"]}}]}' % RETRY_ATTEMPTS)

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

    def client(self, port, case, tls, soak):
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

    def client(self, port, case, tls, soak):
        argv = [self.cli, "--server_host=127.0.0.1", f"--server_port={port}", f"--test_case={case}"]
        if tls:
            argv += ["--use_tls=true", "--use_test_ca=true", f"--ca_file={CA}",
                     f"--server_host_override={HOST_OVERRIDE}"]
        if case in SOAK:
            argv += soak_flags(soak)
        return argv, {}, REPO


class Soak:
    """The soak cases' settings for every client: --soak-iterations RPCs, each within
    SOAK_MAX_LATENCY_MS, no failure tolerated, all within the client's own overall
    timeout, which ends 10 s before the matrix kills it (--soak-timeout) so that a slow
    soak reports how far it got."""

    def __init__(self, iterations, run_timeout_s):
        self.iterations = iterations
        self.overall_s = max(5, run_timeout_s - 10)


# Per-iteration latency bound: generous, as CI runs debug builds on 2 shared cores (a
# 270 KB request and 300 KB response take a few ms there; see docs/reliability.md "Soak").
SOAK_MAX_LATENCY_MS = 5000


def soak_flags(soak):
    """The interop client flags of the soak cases (grpc's interop-test-descriptions)."""
    return [f"--soak_iterations={soak.iterations}", "--soak_max_failures=0",
            f"--soak_per_iteration_max_acceptable_latency_ms={SOAK_MAX_LATENCY_MS}",
            f"--soak_overall_timeout_seconds={soak.overall_s}"]


class Go(Impl):
    name = "go"
    client_cases = {
        "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong",
        "empty_stream", "timeout_on_sleeping_server", "cancel_after_begin",
        "cancel_after_first_response", "status_code_and_message", "special_status_message",
        "custom_metadata", "unimplemented_method", "unimplemented_service",
    } | SOAK  # the soak cases through soak_client (scripts/peers/go-soak), on grpc-go 1.33
    client_lacks_reason = "the grpc-go 1.33 interop client does not implement this case"

    def __init__(self):
        self.bin = os.path.join(PEERS, "go", "bin")

    def available(self):
        return need([os.path.join(self.bin, b) for b in ("interop_server", "interop_client", "soak_client")],
                    "scripts/peers/build-go.sh")

    def server(self, port, tls):
        argv = [os.path.join(self.bin, "interop_server"), f"--port={port}"]
        if tls:
            argv += ["--use_tls", f"--tls_cert_file={CERT}", f"--tls_key_file={KEY}"]
        return argv, {}, None

    def client(self, port, case, tls, soak):
        # grpc-go 1.33's interop client lacks the soak cases: soak_client runs them.
        cli = "soak_client" if case in SOAK else "interop_client"
        argv = [os.path.join(self.bin, cli), "--server_host=127.0.0.1",
                f"--server_port={port}", f"--test_case={case}"]
        if tls:
            argv += ["--use_tls", f"--ca_file={CA}", f"--server_host_override={HOST_OVERRIDE}"]
            if case not in SOAK:
                argv += ["--use_test_ca"]
        if case in SOAK:
            argv += soak_flags(soak)
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

    def client(self, port, case, tls, soak):
        argv = [os.path.join(self.dir, "interop_client"), "--server_host=127.0.0.1",
                f"--server_port={port}", f"--test_case={case}"]
        env = {}
        if tls:
            # --use_test_ca=true would pin grpc's embedded test CA; with false the client
            # loads its roots from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH and honours the override.
            argv += ["--use_tls=true", "--use_test_ca=false", f"--server_host_override={HOST_OVERRIDE}"]
            env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = CA
        if case in SOAK:
            argv += soak_flags(soak)
            env["GRPC_VERBOSITY"] = "debug"  # its "soak iteration: ..." lines are GPR_DEBUG
        return argv, env, None


class Python(Impl):
    name = "python"
    client_cases = {
        "empty_unary", "large_unary", "server_streaming", "client_streaming", "ping_pong",
        "cancel_after_begin", "cancel_after_first_response", "empty_stream",
        "status_code_and_message", "unimplemented_method", "unimplemented_service",
        "custom_metadata", "timeout_on_sleeping_server", "special_status_message",
    } | SOAK  # the soak cases through scripts/peers/py-soak/soak_client.py, on grpcio
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

    def client(self, port, case, tls, soak):
        if case in SOAK:
            # The Python interop client lacks the soak cases: our driver on grpcio runs them.
            argv = [self.py, os.path.join(REPO, "scripts", "peers", "py-soak", "soak_client.py"),
                    "--server_host=127.0.0.1", f"--server_port={port}", f"--test_case={case}"]
            if tls:
                argv += ["--use_tls=true", f"--ca_file={CA}", f"--server_host_override={HOST_OVERRIDE}"]
            return argv + soak_flags(soak), {"PYTHONPATH": self.tree}, self.tree
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

    def client(self, port, case, tls, soak):
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


LIVE_SERVERS = set()  # every started, not yet stopped Server: killed at exit, whatever the exit


def stop_live_servers():
    for srv in list(LIVE_SERVERS):
        srv.stop()


atexit.register(stop_live_servers)


class Server:
    """A running server process (own process group, killed as a whole). tag tells apart
    the log files of several servers of one implementation; wait=False returns at once
    (call wait_ready() later), so several servers can start together."""

    def __init__(self, impl, tls, log_dir, tag="", wait=True):
        self.impl, self.tls = impl, tls
        self.port = free_port()
        argv, env, cwd = impl.server(self.port, tls)
        self.log_path = os.path.join(log_dir, f"server-{impl.name}{tag}-{'tls' if tls else 'plain'}.log")
        self.log = open(self.log_path, "wb")
        self.log.write((" ".join(argv) + "\n").encode())
        self.log.flush()
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        LIVE_SERVERS.add(self)
        self.error = self.wait_ready(30) if wait else None

    def wait_ready(self, timeout):
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
        LIVE_SERVERS.discard(self)


def run_argv(argv, env, cwd, timeout, log_path):
    """Run one client process, bounded in time: (None or why it failed, output, seconds)."""
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
    except BaseException:  # SIGTERM / Ctrl-C: the client goes too
        kill_group(p)
        raise
    dt = time.time() - t0
    with open(log_path, "wb") as f:
        f.write((" ".join(argv) + "\n").encode() + (out or b""))
    return why, (out or b"").decode("utf-8", "replace"), dt


def run_client(impl, port, case, tls, args, log_dir, label):
    argv, env, cwd = impl.client(port, case, tls, Soak(args.soak_iterations, args.soak_timeout))
    timeout = args.soak_timeout if case in SOAK else args.timeout
    why, out, dt = run_argv(argv, env, cwd, timeout, os.path.join(log_dir, f"{label}-{case}.log"))
    if case in SOAK and why is None:
        why = soak_log_problem(out, args.soak_iterations)
    return why, out, dt


def soak_log_problem(out, n):
    """A soak client that exited 0 must also have logged n iterations, all succeeded
    (the exit status alone would pass a client that ignored --soak_iterations)."""
    its = [line for line in out.splitlines() if "soak iteration: " in line]
    ok = sum(1 for line in its if line.rstrip().endswith(" succeeded"))
    if len(its) != n or ok != n:
        return f"exit status 0 but {ok} of {len(its)} logged soak iterations succeeded, want {n} of {n}"
    return None


class StreamCounter:
    """A TCP proxy on a free 127.0.0.1 port in front of a plaintext HTTP/2 server. It
    forwards bytes both ways unchanged, and reads the frame headers (never the HPACK
    blocks) to record, in order, each stream the client opens (the RPC attempts that
    reached the server) and how the server answered it: "trailers-only" (its first
    HEADERS frame ends the stream), "headers" (response headers first), "-" (none seen)."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.streams = {}  # stream id -> how the server answered, in the order opened
        self.socks = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
            # Per connection: stream ids are per connection, keyed by the client socket.
            threading.Thread(target=self._pump, args=(u, c, self._frames(c, False)), daemon=True).start()
            threading.Thread(target=self._pump, args=(c, u, self._frames(c, True)), daemon=True).start()

    def _frames(self, conn, from_client):
        """A parser of one direction's bytes: the client's 24-byte preface, then frames."""
        buf, state = bytearray(), {"preface": 24 if from_client else 0}

        def feed(data):
            buf.extend(data)
            if state["preface"]:
                n = min(state["preface"], len(buf))
                del buf[:n]
                state["preface"] -= n
            while len(buf) >= 9:
                length = int.from_bytes(buf[0:3], "big")
                if len(buf) < 9 + length:
                    break
                ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                if ftype == 1:  # HEADERS
                    key = (id(conn), sid)
                    with self.lock:
                        if from_client and key not in self.streams:
                            self.streams[key] = "-"
                        elif not from_client and self.streams.get(key) == "-":
                            self.streams[key] = "trailers-only" if flags & 1 else "headers"
                del buf[:9 + length]
        return feed

    def _pump(self, src, dst, feed):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if feed:
                    feed(data)  # before forwarding: counted before the server can answer
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def answers(self):
        """How the server answered each stream opened so far, in order."""
        with self.lock:
            return list(self.streams.values())

    def close(self):
        for x in [self.lsock] + self.socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()


def channel_pool(peers):
    """(label, impl name) of the peer servers the channel cases share: one per selected
    peer, in --peers order; two of the first (grpc-go by default) when only one is selected."""
    if len(peers) == 1:
        return [(f"{peers[0]}#1", peers[0]), (f"{peers[0]}#2", peers[0])]
    return [(p, p) for p in peers]


def soak_iterations(out):
    """The `soak iteration: N elapsed_ms: N peer: ADDR server_uri: T RESULT` lines: (N, ADDR, RESULT)."""
    its = []
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("soak iteration: ") and len(parts) >= 10 and parts[5] == "peer:":
            its.append((parts[2], parts[6], " ".join(parts[9:])))
    return its


def check_soak(why, out, n, by_addr, want):
    """Problems with a soak run (empty when it passed) and its per-server counts.
    want(counts) adds the case's own distribution checks."""
    its = soak_iterations(out)
    counts = {label: 0 for label in by_addr.values()}
    problems = [f"interop_client: {why}"] if why else []
    if len(its) != n:
        problems.append(f"{len(its)} of {n} soak iterations logged")
    bad = [it for it in its if it[2] != "succeeded"]
    if bad:
        problems.append(f"{len(bad)} iterations did not succeed, first: #{bad[0][0]} peer {bad[0][1]} {bad[0][2]}")
    for _, addr, _ in its:
        label = by_addr.get(addr, f"unexpected peer {addr}")
        counts[label] = counts.get(label, 0) + 1
    problems += [f"answered by {k} ({v}x)" for k, v in counts.items() if k.startswith("unexpected")]
    problems += want(counts)
    ok = len(its) - len(bad)
    return problems, f"{ok}/{n} ok: " + ", ".join(f"{k} {v}" for k, v in counts.items())


def channel_soak_argv(ours, target, config, n, args, gap_ms=0):
    return [ours.cli, f"--server_uri={target}", f"--service_config_json={config}", "--test_case=rpc_soak",
            f"--soak_iterations={n}", "--soak_max_failures=0", "--soak_request_size=1024",
            "--soak_response_size=1024", "--soak_per_iteration_max_acceptable_latency_ms=5000",
            f"--soak_min_time_ms_between_rpcs={gap_ms}",
            f"--soak_overall_timeout_seconds={max(1, args.timeout - 5)}"]


def addr(port):
    return f"127.0.0.1:{port}"


def case_round_robin_soak(ours, servers, args):
    n = args.channel_soak_iterations
    by_addr = {addr(srv.port): label for label, srv in servers}
    target = "ipv4:" + ",".join(by_addr)
    floor = -(-6 * n // (10 * len(servers)))  # ceil(60% of the fair share)
    # round_robin picks only READY servers: the first picks can come before the last
    # server's connection is up. 10 ms between RPCs leaves a late server ~8 rounds' slack.

    def want(counts):
        return [f"{k} answered {v} of {n} iterations (want >= {floor}: 60% of a fair share)"
                for k, v in counts.items() if not k.startswith("unexpected") and v < floor]
    why, out, _ = run_argv(channel_soak_argv(ours, target, ROUND_ROBIN, n, args, gap_ms=10), {}, REPO, args.timeout,
                           os.path.join(args.log_dir, "channel-round_robin_soak.log"))
    problems, detail = check_soak(why, out, n, by_addr, want)
    return problems, detail, out, ", ".join(label for label, _ in servers)


def case_pick_first_failover(ours, servers, args):
    n = args.channel_soak_iterations
    # Bound but not listening: connecting is refused at once, and no one else gets the port.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    try:
        live = servers[:2]
        by_addr = {addr(srv.port): label for label, srv in live}
        target = "ipv4:" + ",".join([addr(dead.getsockname()[1])] + list(by_addr))
        first = live[0][0]

        def want(counts):
            return [f"{k} answered {v} iterations (pick_first must stay on {first})"
                    for k, v in counts.items() if k != first and v]
        why, out, _ = run_argv(channel_soak_argv(ours, target, PICK_FIRST, n, args), {}, REPO, args.timeout,
                               os.path.join(args.log_dir, "channel-pick_first_failover.log"))
    finally:
        dead.close()
    problems, detail = check_soak(why, out, n, by_addr, want)
    return problems, detail, out, "dead port, " + ", ".join(label for label, _ in live)


def attempts_per_call(answers, max_attempts):
    """Group a sequential client's streams into calls by gRFC A6's rule: an attempt
    answered Trailers-Only with a retryable status is retried up to max_attempts; response
    headers commit the call (no retry). [(attempts, last answer)] per call, or None when
    the sequence breaks that rule."""
    calls, i = [], 0
    while i < len(answers):
        n = 1
        while answers[i] == "trailers-only" and n < max_attempts and i + 1 < len(answers):
            i, n = i + 1, n + 1
        if answers[i] == "trailers-only" and n < max_attempts:
            return None  # the last call ended after a retryable Trailers-Only attempt
        calls.append((n, answers[i]))
        i += 1
    return calls


def case_retry_attempts(ours, servers, args):
    """status_code_and_message (a UnaryCall, then a FullDuplexCall, each answered UNKNOWN
    by the server) through a StreamCounter, without and then with a retryPolicy on UNKNOWN."""
    problems, details, outs = [], [], []
    retried_somewhere = False
    base = [ours.cli, "--test_case=status_code_and_message"]
    for label, srv in servers:
        proxy = StreamCounter(srv.port)
        try:
            runs = []
            for name, extra in (("no-retry", []), ("retry", [f"--service_config_json={RETRY_UNKNOWN}"])):
                before = len(proxy.answers())
                why, out, _ = run_argv(base + [f"--server_uri=ipv4:{addr(proxy.port)}"] + extra, {}, REPO,
                                       args.timeout,
                                       os.path.join(args.log_dir, f"channel-retry_attempts-{label}-{name}.log"))
                runs.append(proxy.answers()[before:])
                outs.append(f"[{label} {name}] " + out)
                if why:
                    problems.append(f"{label} {name}: interop_client: {why}")
        finally:
            proxy.close()
        plain, retried = runs
        if len(plain) != 2:
            problems.append(f"{label}: {len(plain)} streams without a retryPolicy, want 2 "
                            f"(UnaryCall, FullDuplexCall)")
        calls = attempts_per_call(retried, RETRY_ATTEMPTS)
        if calls is None or len(calls) != 2:
            problems.append(f"{label}: with maxAttempts {RETRY_ATTEMPTS} the server saw {len(retried)} streams "
                            f"answered {retried}: not 2 calls retried by gRFC A6's rule")
            details.append(f"{label} ?")
            continue
        retried_somewhere |= max(n for n, _ in calls) > 1
        committed = [what for what, (_, ans) in zip(("unary", "full-duplex"), calls) if ans == "headers"]
        details.append(f"{label} {calls[0][0]}+{calls[1][0]}"
                       + (f" ({'+'.join(committed)} committed: response headers)" if committed else ""))
    if not problems and not retried_somewhere:
        problems.append("no peer answered Trailers-Only, so nothing was retried")
    return (problems, "attempts per call (unary+full-duplex): " + ", ".join(details), "\n".join(outs),
            ", ".join(label for label, _ in servers))


CHANNEL_CASE_FNS = {"round_robin_soak": case_round_robin_soak, "pick_first_failover": case_pick_first_failover,
                    "retry_attempts": case_retry_attempts}


def run_channel_cases(ccases, pool, impls, avail, args, note, stop):
    """Run the channel cases against one shared set of peer servers (plaintext), stopped
    when done whatever happens. Returns {case: (kind, note_key, detail, servers, seconds)}."""
    results = {}
    missing = [n for n in dict.fromkeys(["ours"] + [i for _, i in pool]) if not avail[n][0]]
    if stop or missing:
        why = ("not run: --fail-fast stopped the run" if stop
               else f"{missing[0]} {avail[missing[0]][1]}")
        for case in ccases:
            results[case] = ("skip", note("s", why), "", ", ".join(label for label, _ in pool), 0.0)
        return results, 0
    servers = []
    unexpected = 0
    try:
        t0 = time.time()
        for label, name in pool:
            tag = "-channel" + (label[len(name):].replace("#", "-") if label != name else "")
            servers.append((label, Server(impls[name], False, args.log_dir, tag=tag, wait=False)))
        errors = [f"{label}: {err}" for label, srv in servers if (err := srv.wait_ready(30))]
        print(f"  channel: {len(servers)} peer servers up in {time.time() - t0:.1f} s "
              f"({', '.join(f'{label}:{srv.port}' for label, srv in servers)})", flush=True)
        for case in ccases:
            t1 = time.time()
            if errors:
                problems, detail, out, desc = errors, "", "", ", ".join(label for label, _ in servers)
            else:
                problems, detail, out, desc = CHANNEL_CASE_FNS[case](impls["ours"], servers, args)
            dt = time.time() - t1
            if problems:
                tail = "\n".join(out.strip().splitlines()[-8:])
                results[case] = ("FAIL", None, "; ".join(problems) + (f" [{detail}]" if detail else "")
                                 + ("\n" + tail if tail else ""), desc, dt)
                unexpected += 1
                status = "FAIL: " + "; ".join(problems)
            else:
                results[case] = ("pass", None, detail, desc, dt)
                status = f"pass ({detail})"
            print(f"  {'ours-to-' + desc.replace(', ', '+'):28} {case:30} {status} [{dt:.1f} s]", flush=True)
            if problems and args.fail_fast:
                for rest in ccases[ccases.index(case) + 1:]:
                    results[rest] = ("skip", note("s", "not run: --fail-fast stopped the run"), "", desc, 0.0)
                break
    finally:
        for _, srv in servers:
            srv.stop()
    return results, unexpected


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
    ap.add_argument("--cases", default=",".join(CASES + CHANNEL_CASES),
                    help="comma list of test cases, per-pair cases and channel cases (%s) alike "
                         "(default: all)" % ", ".join(CHANNEL_CASES))
    ap.add_argument("--security", default="plaintext,tls", help="plaintext,tls (default both)")
    ap.add_argument("--ours-bin-dir", default=os.environ.get("OURS_BIN_DIR", os.path.join(REPO, "target", "release")))
    ap.add_argument("--timeout", type=int, default=30, help="seconds per client run (default 30)")
    ap.add_argument("--soak-timeout", type=int, default=120, help="seconds per soak client run (default 120)")
    ap.add_argument("--soak-iterations", type=int, default=10, help="soak iterations (default 10)")
    ap.add_argument("--channel-soak-iterations", type=int, default=20,
                    help="iterations of the channel cases' rpc_soak (default 20)")
    ap.add_argument("--markdown", help="also write the matrix as markdown to this file")
    ap.add_argument("--log-dir", default=os.path.join(REPO, "target", "interop-logs"))
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first unexpected failure")
    ap.add_argument("--require-all", action="store_true",
                    help="fail (exit 1) when an implementation in the pairs is not available, instead of "
                         "skipping its pairs (for CI)")
    args = ap.parse_args()
    # SIGTERM (CI's timeout) exits through finally blocks and atexit: no server outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

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
        if c not in CASES and c not in CHANNEL_CASES:
            ap.error(f"unknown case {c!r}")
    ccases = [c for c in CHANNEL_CASES if c in cases]
    cases = [c for c in cases if c in CASES]
    modes = []
    for m in args.security.split(","):
        m = m.strip()
        if m not in ("plaintext", "tls"):
            ap.error(f"bad security mode {m!r}")
        modes.append(m == "tls")
    if ccases and False in modes and peers:
        pool = channel_pool(peers)
    else:
        if ccases:
            print("channel cases not run: they need plaintext in --security and a peer in --peers")
        ccases, pool = [], []
    os.makedirs(args.log_dir, exist_ok=True)
    if any(modes) and not all(os.path.exists(f) for f in (CA, CERT, KEY)):
        sys.exit(f"TLS certificates missing in {CERTS} (run scripts/gen-test-certs.sh)")

    used = {x for pr in pairs for x in pr} if cases else set()
    if ccases:
        used |= {"ours"} | {name for _, name in pool}
    avail = {n: impls[n].available() for n in used}
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
            if runnable and cases:
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

    channel = {}
    if ccases:
        t0 = time.time()
        print(f"channel cases (ours -> several peer servers, plaintext): {', '.join(ccases)}", flush=True)
        channel, bad = run_channel_cases(ccases, pool, impls, avail, args, note, stop)
        unexpected += bad
        print(f"  channel cases took {time.time() - t0:.1f} s", flush=True)
    elapsed = time.time() - start
    render(columns, cases, results, notes, elapsed, unexpected, args, channel)
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


CHANNEL_TITLE = "channel (ours -> several peer servers, plaintext)"


def render(columns, cases, results, notes, elapsed, unexpected, args, channel=None):
    channel = channel or {}
    counts = {}
    for r in list(results.values()) + list(channel.values()):
        counts[r[0]] = counts.get(r[0], 0) + 1
    summary = (f"{counts.get('pass', 0)} pass, {counts.get('FAIL', 0)} FAIL, "
               f"{counts.get('known', 0)} known peer limitation, {counts.get('skip', 0)} skip "
               f"in {elapsed:.0f} s")
    if channel:
        cpass = sum(1 for r in channel.values() if r[0] == "pass")
        summary += f" (channel cases: {cpass} of {len(channel)} pass)"
    failures = [(col_name(col), case, r[2]) for (col, case), r in results.items() if r[0] == "FAIL"]
    failures += [(f"channel ours>{r[3].replace(', ', '+')} plain", case, r[2])
                 for case, r in channel.items() if r[0] == "FAIL"]
    # Plain-text matrix: one column per pair and security mode.
    names = [col_name(c) for c in columns]
    lines = [""]
    if cases and columns:
        w0 = max(len(c) for c in cases + ["case"])
        widths = [max(len(n), 9) for n in names]
        lines.append("case".ljust(w0) + "  " + "  ".join(n.ljust(w) for n, w in zip(names, widths)))
        for case in cases:
            lines.append(case.ljust(w0) + "  " + "  ".join(
                cell(results[(col, case)]).ljust(w) for col, w in zip(columns, widths)))
        lines.append("")
    # The channel cases: one row each, with the servers and what the iterations showed.
    crow = [(case, r[3], cell(r[:3]), r[2] if r[0] == "pass" else r[2].split("\n")[0])
            for case, r in channel.items()]
    if crow:
        hdr = ("case", "servers", "result", "detail")
        ws = [max(len(x[i]) for x in crow + [hdr]) for i in range(3)]
        lines.append(CHANNEL_TITLE)
        for row in [hdr] + crow:
            lines.append("  ".join(v.ljust(w) for v, w in zip(row[:3], ws)) + "  " + row[3])
        lines.append("")
    for k in sorted(notes, key=lambda k: (k[0], int(k[1:]))):
        lines.append(f"[{k}] {notes[k]}")
    for col, case, detail in failures:
        lines.append(f"\nFAIL {col} {case}:\n  " + detail.replace("\n", "\n  "))
    lines.append(f"\n{summary}")
    print("\n".join(lines))
    if args.markdown:
        md = []
        if cases and columns:
            md = ["| case | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for case in cases:
                md.append(f"| {case} | " + " | ".join(cell(results[(col, case)]) for col in columns) + " |")
            md.append("")
            md.append("Columns are `client>server security`. pass; FAIL; known[kN]: a failure caused by the "
                      "peer, listed with its cause; skip[sN]: not run, for the reason given.")
            md.append("")
        if crow:
            md.append(f"**{CHANNEL_TITLE}**: our interop_client with one `--server_uri=ipv4:...` target "
                      f"over several peer servers at once.")
            md.append("")
            md.append("| case | servers | result | detail |")
            md.append("|---|---|---|---|")
            for case, desc, c, detail in crow:
                md.append(f"| {case} | {desc} | {c} | {detail.replace('|', '/')} |")
            md.append("")
        for k in sorted(notes, key=lambda k: (k[0], int(k[1:]))):
            md.append(f"- **{k}**: {notes[k]}")
        if failures:
            md.append("")
            md.append("Failures:")
            for col, case, detail in failures:
                lines_ = [l.strip() for l in detail.splitlines() if l.strip()]
                last = f" ({lines_[-1][:200]})" if len(lines_) > 1 else ""
                md.append(f"- `{col}` `{case}`: {lines_[0] if lines_ else 'failed'}{last}")
        md.append("")
        md.append(summary + ".")
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"markdown written to {args.markdown}")


if __name__ == "__main__":
    sys.exit(main())
