"""Python grpcio (C core) as a client with client certificates and per-call tokens against
our server's gRFC A43 authorization policy.

Usage: python_authz_client.py PORT CA_PEM ALLOWED_CERT ALLOWED_KEY OTHER_CERT OTHER_KEY TOKEN
The policy (set by the Rust test) allows grpc.health.v1.Health/Check for the principal
"CN=python-allowed" with "authorization: Bearer TOKEN" and nothing else.
Prints one line per check and "OK" at the end; exits non-zero on the first mismatch.
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

port, ca, allowed_cert, allowed_key, other_cert, other_key, token = sys.argv[1:8]


def read(p):
    with open(p, "rb") as f:
        return f.read()


def channel(cert, key, tok):
    tls = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    creds = grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(tok))
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])


def expect(what, call, want):
    try:
        call()
        got = grpc.StatusCode.OK
    except grpc.RpcError as e:
        got = e.code()
        if got == grpc.StatusCode.PERMISSION_DENIED and e.details() != "unauthorized RPC request rejected":
            sys.exit(f"FAIL {what}: denial leaks detail {e.details()!r}")
    print(f"{what}: {got}")
    if got != want:
        sys.exit(f"FAIL {what}: got {got}, want {want}")


req = health_pb2.HealthCheckRequest(service="")
ok = health_pb2_grpc.HealthStub(channel(allowed_cert, allowed_key, token))
expect("allowed principal, token, path", lambda: ok.Check(req, timeout=10), grpc.StatusCode.OK)
expect("denied by path (List)", lambda: ok.List(health_pb2.HealthListRequest(), timeout=10), grpc.StatusCode.PERMISSION_DENIED)
other = health_pb2_grpc.HealthStub(channel(other_cert, other_key, token))
expect("denied by principal", lambda: other.Check(req, timeout=10), grpc.StatusCode.PERMISSION_DENIED)
wrong = health_pb2_grpc.HealthStub(channel(allowed_cert, allowed_key, "wrong"))
expect("denied by header (token)", lambda: wrong.Check(req, timeout=10), grpc.StatusCode.PERMISSION_DENIED)
print("OK")
