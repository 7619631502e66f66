#!/usr/bin/env python3
"""Check that grpc-rust's shipped .proto files are wire compatible with upstream.

Compiles our protos (protos/) and the canonical ones (the Debian `grpc` 1.51.1
source package for grpc.*, examples; googleapis-common-protos from PyPI for
google.rpc) to descriptor sets with grpcio-tools' protoc, then compares every
message, field, enum, enum value, service and method by fully qualified name:
names, numbers, types, labels, oneof membership, proto3 `optional`, map
entries, streaming flags. Comments, file names, import paths, json_name and
language options (go_package, java_*) are ignored: they do not reach the wire.

Differences are errors, except entries of ALLOWED_EXTRAS (things we add on
purpose, such as the quick start's SayHelloAgain). Also an error: an element of
ours (message, field, oneof, enum, value, service, method) without a leading
comment, since comments become doc comments in generated code. Exit 0 when
compatible and documented.

Usage: check-protos.py --grpc-src DIR --googleapis DIR [--ours protos] [-v]
Normally run through scripts/check-protos.sh, which fetches both sources.
"""
import argparse
import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

# (ours, canonical, include root of canonical) -- canonical paths are relative to the root.
PAIRS = [
    ("grpc/testing/empty.proto", "src/proto/grpc/testing/empty.proto", "grpc"),
    ("grpc/testing/messages.proto", "src/proto/grpc/testing/messages.proto", "grpc"),
    ("grpc/testing/test.proto", "src/proto/grpc/testing/test.proto", "grpc"),
    ("grpc/testing/benchmark_service.proto", "src/proto/grpc/testing/benchmark_service.proto", "grpc"),
    ("grpc/testing/control.proto", "src/proto/grpc/testing/control.proto", "grpc"),
    ("grpc/testing/payloads.proto", "src/proto/grpc/testing/payloads.proto", "grpc"),
    ("grpc/testing/stats.proto", "src/proto/grpc/testing/stats.proto", "grpc"),
    ("grpc/testing/worker_service.proto", "src/proto/grpc/testing/worker_service.proto", "grpc"),
    ("grpc/health/v1/health.proto", "src/proto/grpc/health/v1/health.proto", "grpc"),
    ("grpc/reflection/v1/reflection.proto", "src/proto/grpc/reflection/v1/reflection.proto", "grpc"),
    ("grpc/reflection/v1alpha/reflection.proto", "src/proto/grpc/reflection/v1alpha/reflection.proto", "grpc"),
    ("examples/helloworld/helloworld.proto", "examples/protos/helloworld.proto", "grpc"),
    ("examples/routeguide/route_guide.proto", "examples/protos/route_guide.proto", "grpc"),
    ("google/rpc/status.proto", "google/rpc/status.proto", "googleapis"),
    ("google/rpc/code.proto", "google/rpc/code.proto", "googleapis"),
    ("google/rpc/error_details.proto", "google/rpc/error_details.proto", "googleapis"),
]

# Symbols present only in ours, on purpose.
ALLOWED_EXTRAS = {
    # grpc.io quick start, "update the service" step; grpc 1.51's example file predates it.
    "method .helloworld.Greeter.SayHelloAgain",
    # Health.List (grpc-proto added it in 2024, after grpc 1.51); same names and numbers as upstream.
    "message .grpc.health.v1.HealthListRequest",
    "message .grpc.health.v1.HealthListResponse",
    "field .grpc.health.v1.HealthListResponse.statuses",
    "message .grpc.health.v1.HealthListResponse.StatusesEntry",
    "field .grpc.health.v1.HealthListResponse.StatusesEntry.key",
    "field .grpc.health.v1.HealthListResponse.StatusesEntry.value",
    "method .grpc.health.v1.Health.List",
}

FDP = descriptor_pb2.FieldDescriptorProto


def protoc(includes, files, out):
    from grpc_tools import protoc as p  # noqa: import here so --help works without grpcio-tools
    import importlib.resources as r
    wkt = str(r.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{wkt}"] + [f"-I{i}" for i in includes] + [
        "--include_imports", "--include_source_info", f"--descriptor_set_out={out}"] + files
    rc = p.main(args)
    if rc != 0:
        sys.exit(f"protoc failed ({rc}): {' '.join(args)}")
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    return fds


def flatten(fds, wanted_files):
    """Map 'kind .full.name' -> comparable tuple, for the files in wanted_files."""
    out = {}
    for fd in fds.file:
        if fd.name not in wanted_files:
            continue
        pkg = "." + fd.package if fd.package else ""
        out[f"file-syntax {fd.package}"] = fd.syntax or "proto2"

        def msg(m, prefix):
            name = f"{prefix}.{m.name}"
            is_map = m.options.map_entry
            out[f"message {name}"] = ("map_entry" if is_map else "message",)
            oneofs = [o.name for o in m.oneof_decl]
            for f in m.field:
                oneof = None
                if f.HasField("oneof_index"):
                    # Synthetic oneofs of proto3 `optional` carry no wire meaning; keep the flag instead.
                    oneof = None if f.proto3_optional else oneofs[f.oneof_index]
                packed = f.options.packed if f.options.HasField("packed") else None
                out[f"field {name}.{f.name}"] = (
                    f.number, FDP.Label.Name(f.label), FDP.Type.Name(f.type), f.type_name,
                    oneof, bool(f.proto3_optional), packed, f.default_value or None,
                    f.options.deprecated)
            for n in m.nested_type:
                msg(n, name)
            for e in m.enum_type:
                enum(e, name)

        def enum(e, prefix):
            name = f"{prefix}.{e.name}"
            out[f"enum {name}"] = ("enum", e.options.allow_alias)
            for v in e.value:
                out[f"enum-value {name}.{v.name}"] = v.number

        for m in fd.message_type:
            msg(m, pkg)
        for e in fd.enum_type:
            enum(e, pkg)
        for s in fd.service:
            sname = f"{pkg}.{s.name}"
            out[f"service {sname}"] = ("service",)
            for mt in s.method:
                out[f"method {sname}.{mt.name}"] = (
                    mt.input_type, mt.output_type, mt.client_streaming, mt.server_streaming)
    return out


def undocumented(fds, files):
    """Names of messages, fields, oneofs, enums, values, services and methods in `files`
    without a leading comment (they become doc comments in generated code)."""
    missing = []
    for fd in fds.file:
        if fd.name not in files:
            continue
        documented = {tuple(loc.path) for loc in fd.source_code_info.location
                      if loc.leading_comments.strip()}

        def chk(path, name):
            if tuple(path) not in documented:
                missing.append(f"{fd.name}: {name}")

        def msg(m, path, prefix):
            name = f"{prefix}.{m.name}"
            chk(path, name)
            for i, f in enumerate(m.field):
                chk(path + [2, i], f"{name}.{f.name}")
            for i, o in enumerate(m.oneof_decl):
                if not any(f.proto3_optional for f in m.field if f.HasField("oneof_index") and f.oneof_index == i):
                    chk(path + [8, i], f"{name}.{o.name} (oneof)")
            for i, n in enumerate(m.nested_type):
                if not n.options.map_entry:
                    msg(n, path + [3, i], name)
            for i, e in enumerate(m.enum_type):
                enum(e, path + [4, i], name)

        def enum(e, path, prefix):
            name = f"{prefix}.{e.name}"
            chk(path, name)
            for i, v in enumerate(e.value):
                chk(path + [2, i], f"{name}.{v.name}")

        for i, m in enumerate(fd.message_type):
            msg(m, [4, i], fd.package)
        for i, e in enumerate(fd.enum_type):
            enum(e, [5, i], fd.package)
        for i, sv in enumerate(fd.service):
            chk([6, i], f"{fd.package}.{sv.name}")
            for j, mt in enumerate(sv.method):
                chk([6, i, 2, j], f"{fd.package}.{sv.name}.{mt.name}")
    return missing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grpc-src", required=True, help="unpacked grpc 1.51.1 source tree")
    ap.add_argument("--googleapis", required=True, help="dir holding google/rpc/*.proto (googleapis-common-protos)")
    ap.add_argument("--ours", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "protos"))
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    roots = {"grpc": a.grpc_src, "googleapis": a.googleapis}
    for k, v in roots.items():
        if not os.path.isdir(v):
            sys.exit(f"{k} source dir {v} missing")

    with tempfile.TemporaryDirectory() as tmp:
        ours = protoc([a.ours], [p[0] for p in PAIRS], os.path.join(tmp, "ours.pb"))
        canon = {}
        for root in ("grpc", "googleapis"):
            files = [p[1] for p in PAIRS if p[2] == root]
            canon[root] = protoc([roots[root]], files, os.path.join(tmp, f"{root}.pb"))

    errors, checked = [], 0
    for our_file, canon_file, root in PAIRS:
        o = flatten(ours, {our_file})
        c = flatten(canon[root], {canon_file})
        for key in sorted(set(o) | set(c)):
            checked += 1
            if key not in c:
                if key in ALLOWED_EXTRAS:
                    print(f"  note  {our_file}: extra {key} (allowed: intentional addition)")
                else:
                    errors.append(f"{our_file}: {key} exists only in ours: {o[key]}")
            elif key not in o:
                errors.append(f"{our_file}: {key} missing from ours (canonical {canon_file}: {c[key]})")
            elif o[key] != c[key]:
                errors.append(f"{our_file}: {key} differs: ours {o[key]} vs canonical {c[key]}")
            elif a.verbose:
                print(f"  ok    {key}")
        print(f"{'FAIL' if any(e.startswith(our_file + ':') for e in errors) else 'ok  '} {our_file}  ==  {root}:{canon_file}")

    print(f"{checked} symbols compared across {len(PAIRS)} files")
    for name in undocumented(ours, {p[0] for p in PAIRS}):
        errors.append(f"undocumented (every element needs a leading comment): {name}")
    if errors:
        print("\nPROBLEMS:")
        for e in errors:
            print("  " + e)
        return 1
    print("all shipped protos are wire compatible with the canonical definitions and fully documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
