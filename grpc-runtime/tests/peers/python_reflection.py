"""Python grpcio's reflection client (v1alpha descriptor database) against a server.

Usage: python_reflection.py PORT SERVICE...
Lists the server's services (must be exactly SERVICE...), then resolves each service's
file by symbol and checks the file names the service and its methods. Prints one line
per check; exits non-zero on the first mismatch.
"""
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

port, want = sys.argv[1], sorted(sys.argv[2:])
db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(f"127.0.0.1:{port}"))
got = sorted(db.get_services())
print(f"services: {got}")
if got != want:
    sys.exit(f"FAIL services: got {got}, want {want}")
pool = DescriptorPool(db)
for name in want:
    # file_containing_symbol, then the files it depends on
    fd = db.FindFileContainingSymbol(name)
    svc = pool.FindServiceByName(name)
    methods = [m.name for m in svc.methods]
    print(f"{name}: {fd.name} {methods}")
    if not methods or svc.file.name != fd.name:
        sys.exit(f"FAIL {name}: file {fd.name!r}, methods {methods}")
print("OK")
