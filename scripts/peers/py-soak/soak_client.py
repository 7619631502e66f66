"""rpc_soak and channel_soak on Python grpcio (grpc C core).

The Python interop client (grpc 1.51's tests/interop/client.py) implements no soak
cases, so this small driver runs them with grpcio's own channel, following grpc's
interop-test-descriptions and the grpc C++ 1.51 interop client (PerformSoakTest): each
iteration is a large_unary (271828-byte request, 314159-byte response) without a
deadline, its latency checked against --soak_per_iteration_max_acceptable_latency_ms;
channel_soak creates a new channel per iteration (creation counted in the latency,
close not). Each iteration is logged as grpc-go's DoSoakTest logs it:

    soak iteration: N elapsed_ms: N peer: unknown server_uri: TARGET succeeded|failed: ...

(grpcio's client API does not expose the peer address of a call, hence "unknown".)
Run from the Python interop tree ($GRPC_RUST_PEERS/py/interop) so that
src.proto.grpc.testing imports. Exit status 1 when the soak fails.
"""
import argparse
import sys
import time

import grpc

from src.proto.grpc.testing import messages_pb2
from src.proto.grpc.testing import test_pb2_grpc

LARGE_REQ, LARGE_RESP = 271828, 314159


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server_host", default="localhost")
    ap.add_argument("--server_port", type=int, default=10000)
    ap.add_argument("--test_case", default="rpc_soak", choices=["rpc_soak", "channel_soak"])
    ap.add_argument("--use_tls", default="false")
    ap.add_argument("--ca_file", default="")
    ap.add_argument("--server_host_override", default="")
    ap.add_argument("--soak_iterations", type=int, default=10)
    ap.add_argument("--soak_max_failures", type=int, default=0)
    ap.add_argument("--soak_per_iteration_max_acceptable_latency_ms", type=int, default=1000)
    ap.add_argument("--soak_min_time_ms_between_rpcs", type=int, default=0)
    ap.add_argument("--soak_overall_timeout_seconds", type=int, default=10)
    return ap.parse_args()


def make_channel(args, target):
    if args.use_tls.lower() != "true":
        return grpc.insecure_channel(target)
    with open(args.ca_file, "rb") as f:
        creds = grpc.ssl_channel_credentials(f.read())
    opts = ()
    if args.server_host_override:
        opts = (("grpc.ssl_target_name_override", args.server_host_override),)
    return grpc.secure_channel(target, creds, opts)


def one(args, target, shared, deadline):
    """One iteration: (latency seconds, error text or None)."""
    start = time.monotonic()
    channel = None
    try:
        stub = shared
        if stub is None:
            channel = make_channel(args, target)
            stub = test_pb2_grpc.TestServiceStub(channel)
        req = messages_pb2.SimpleRequest(
            response_type=messages_pb2.COMPRESSABLE, response_size=LARGE_RESP,
            payload=messages_pb2.Payload(body=b"\0" * LARGE_REQ))
        # No per-RPC deadline (the description asks for none) beyond the overall one.
        try:
            resp = stub.UnaryCall(req, timeout=max(0.001, deadline - time.monotonic()))
        except grpc.RpcError as e:
            return time.monotonic() - start, f"/TestService/UnaryCall RPC failed: {e.code()} {e.details()}"
        latency = time.monotonic() - start
        if resp.payload.type != messages_pb2.COMPRESSABLE or len(resp.payload.body) != LARGE_RESP:
            return latency, f"got a reply with type {resp.payload.type} len {len(resp.payload.body)}"
        return latency, None
    finally:
        if channel is not None:
            channel.close()  # after the latency is taken: teardown is not counted


def main():
    args = parse_args()
    target = f"{args.server_host}:{args.server_port}"
    shared, shared_channel = None, None
    if args.test_case == "rpc_soak":
        shared_channel = make_channel(args, target)
        shared = test_pb2_grpc.TestServiceStub(shared_channel)
    start = time.monotonic()
    deadline = start + args.soak_overall_timeout_seconds
    max_latency = args.soak_per_iteration_max_acceptable_latency_ms / 1000
    latencies, done, failures = [], 0, 0
    for i in range(args.soak_iterations):
        if time.monotonic() >= deadline:
            break
        nxt = time.monotonic() + args.soak_min_time_ms_between_rpcs / 1000
        latency, err = one(args, target, shared, deadline)
        done += 1
        latencies.append(latency)
        head = f"soak iteration: {i} elapsed_ms: {int(latency * 1000)} peer: unknown server_uri: {target}"
        if err is not None:
            failures += 1
            print(f"{head} failed: {err}", flush=True)
        elif latency > max_latency:
            failures += 1
            print(f"{head} exceeds max acceptable latency: {args.soak_per_iteration_max_acceptable_latency_ms}",
                  flush=True)
        else:
            print(f"{head} succeeded", flush=True)
        time.sleep(max(0.0, nxt - time.monotonic()))
    if shared_channel is not None:
        shared_channel.close()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) * p // 100, len(latencies) - 1)] * 1000 if latencies else 0.0
    print(f"(server_uri: {target}) soak test ran: {done} / {args.soak_iterations} iterations. total failures: "
          f"{failures}. max failures threshold: {args.soak_max_failures}. latencies in milliseconds: "
          f"p50 {pct(50):.3f} p90 {pct(90):.3f} max {pct(100):.3f}. took {time.monotonic() - start:.1f} s", flush=True)
    if done < args.soak_iterations:
        print(f"soak test consumed all {args.soak_overall_timeout_seconds} seconds and quit early: "
              f"{done} of {args.soak_iterations} iterations", file=sys.stderr)
        return 1
    if failures > args.soak_max_failures:
        print(f"soak test total failures {failures} exceed the threshold {args.soak_max_failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
