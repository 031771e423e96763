#!/usr/bin/env bash
# Checks that Cargo.toml's rust-version is true for the committed Cargo.lock:
# no locked crate (any platform, dev and build dependencies included) may
# declare a newer rust-version. Only one toolchain is installed where the
# tests run, so the declarations are compared instead of building with the
# older compiler; a crate without a declaration is not checked.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys

def version(text):
    # "1.88" and "1.88.0" are the same version: compare three components.
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
ours = next(p for p in meta["packages"] if p["id"] in meta["workspace_members"])
declared = ours.get("rust_version")
if not declared:
    sys.exit("check_msrv: Cargo.toml declares no rust-version")
newer = sorted(
    (version(p["rust_version"]), p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["rust_version"] and version(p["rust_version"]) > version(declared)
)
if newer:
    for _, name, ver, needs in newer:
        print(f"check_msrv: {name} {ver} needs rust {needs}", file=sys.stderr)
    sys.exit(f"check_msrv: Cargo.toml says rust-version {declared}; the lock needs {newer[-1][3]}")
print(f"rust-version {declared}: every locked crate declares it or older")
'
