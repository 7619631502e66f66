#!/usr/bin/env python3
"""Checks that a release binary was built from this checkout's sources only.

    scripts/built-here.py EXE [ROOT]     (ROOT: this checkout, by default the script's parent)

Exit 0 if every grpc-rust checkout named in EXE's embedded source paths is ROOT; exit 1,
naming the others, if not. Why: cargo decides whether an artifact is fresh from the
package's path relative to its workspace and the sources' mtimes, so two checkouts (git
worktrees, say) that share one target directory can reuse each other's artifacts of a
path dependency. That once put an h2 built from an older worktree's third_party/h2 (one
patch behind) into a benchmark binary, which then wrote one 16 KiB DATA frame per
syscall and looked like a 12-20% streaming regression (docs/benchmarks.md, issue 19).
The binary keeps the source paths of its panic locations and debug info; a path in a
directory that holds third_party/h2 names the checkout it was compiled from.
"""
import os
import re
import sys


def checkout_of(path, cache):
    """The grpc-rust checkout (a directory holding third_party/h2) that `path` lies in, or None."""
    d = path
    seen = []
    found = None
    while d not in ("", "/"):
        if d in cache:
            found = cache[d]
            break
        seen.append(d)
        if os.path.isdir(os.path.join(d, "third_party", "h2")):
            found = d
            break
        d = os.path.dirname(d)
    for s in seen:
        cache[s] = found
    return found


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    exe = sys.argv[1]
    root = os.path.realpath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), ".."))
    with open(exe, "rb") as f:
        data = f.read()
    paths = {m.group().decode() for m in re.finditer(rb"/[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)+", data)}
    skip = ("/rustc/", "/rust/deps/", "/usr/", "/proc/", "/sys/", "/dev/", "/etc/")
    cache = {}
    others = {}
    for p in paths:
        if p.startswith(skip):
            continue
        c = checkout_of(p, cache)
        if c is not None and os.path.realpath(c) != root:
            others.setdefault(c, p)
    if others:
        print(f"{exe} holds code compiled from another checkout than {root}:", file=sys.stderr)
        for c, p in sorted(others.items()):
            print(f"  {c} (for instance {p})", file=sys.stderr)
        print("A target directory shared with that checkout let cargo reuse its artifacts. Build in a "
              "target directory of this checkout's own, or `cargo clean --release -p h2` (and any other "
              "crate named above) and build again.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
