"""Python grpcio (C core) as a peer for our health, reflection and TLS server.

Usage: python_services.py PLAIN_PORT TLS_PORT CA_PEM MTLS_PORT CLIENT_CERT CLIENT_KEY
Prints one line per check; exits non-zero on the first mismatch.
"""
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

S = health_pb2.HealthCheckResponse.ServingStatus


def expect(what, got, want):
    print(f"{what}: {got!r}")
    if got != want:
        sys.exit(f"FAIL {what}: got {got!r}, want {want!r}")


def run(ch, label):
    h = health_pb2_grpc.HealthStub(ch)
    expect(f"{label} check ''", S.Name(h.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status), "SERVING")
    try:
        h.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        sys.exit(f"FAIL {label}: Check(nope) succeeded")
    except grpc.RpcError as e:
        expect(f"{label} check nope", e.code(), grpc.StatusCode.NOT_FOUND)
    statuses = {k: S.Name(v.status) for k, v in h.List(health_pb2.HealthListRequest(), timeout=10).statuses.items()}
    expect(f"{label} list", statuses, {"": "SERVING", "test.Echo": "SERVING"})
    db = ProtoReflectionDescriptorDatabase(ch)
    expect(f"{label} services", sorted(db.get_services()), [
        "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
    svc = DescriptorPool(db).FindServiceByName("grpc.health.v1.Health")
    expect(f"{label} methods", [m.name for m in svc.methods], ["Check", "List", "Watch"])
    w = h.Watch(health_pb2.HealthCheckRequest(service="unknown.Svc"), timeout=10)
    expect(f"{label} watch unknown", S.Name(next(w).status), "SERVICE_UNKNOWN")
    w.cancel()


plain_port, tls_port, ca = sys.argv[1], sys.argv[2], sys.argv[3]
run(grpc.insecure_channel(f"127.0.0.1:{plain_port}"), "plain")
creds = grpc.ssl_channel_credentials(open(ca, "rb").read())
run(grpc.secure_channel(f"127.0.0.1:{tls_port}", creds, options=(("grpc.ssl_target_name_override", "localhost"),)), "tls")

# Mutual TLS: a client certificate from our CA is accepted, no certificate is refused.
mtls_port, cert, key = sys.argv[4], sys.argv[5], sys.argv[6]
opts = (("grpc.ssl_target_name_override", "localhost"),)
with_cert = grpc.ssl_channel_credentials(open(ca, "rb").read(), open(key, "rb").read(), open(cert, "rb").read())
h = health_pb2_grpc.HealthStub(grpc.secure_channel(f"127.0.0.1:{mtls_port}", with_cert, options=opts))
expect("mtls check ''", S.Name(h.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status), "SERVING")
h = health_pb2_grpc.HealthStub(grpc.secure_channel(f"127.0.0.1:{mtls_port}", creds, options=opts))
try:
    h.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    sys.exit("FAIL mtls without a client certificate succeeded")
except grpc.RpcError as e:
    expect("mtls without client cert", e.code(), grpc.StatusCode.UNAVAILABLE)
print("OK")
