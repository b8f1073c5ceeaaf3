#!/usr/bin/env python3
"""Checks that each publishable crate's declared `rust-version` is true: the newest
`rust-version` among the dependencies it builds with (normal and build dependencies, every
feature of the crate on, as Cargo.lock resolves them), or 1.85 for edition 2024, whichever is
newer. A crate that declares less cannot build with the declared toolchain; one that declares
more turns away users it would serve.

Without old toolchains to build with (rustup cannot download here), this and clippy's
`incompatible_msrv` lint (on in `cargo clippy`, it flags standard library items newer than
the declared version in our own code) are the check. It cannot see language features newer
than the declared version in our own code; `cargo +1.85 check` would.

Usage: scripts/msrv.py   (exit 1 on a mismatch; prints each crate's finding)
"""
import json
import subprocess
import sys

EDITION_FLOOR = {"2015": (1, 0), "2018": (1, 31), "2021": (1, 56), "2024": (1, 85)}


def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))[:3]


def shown(parts):
    return ".".join(str(part) for part in parts[:2]) + ("" if parts[2] == 0 else f".{parts[2]}")


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"], check=True, capture_output=True, text=True
        ).stdout
    )
    by_name_version = {(package["name"], package["version"]): package for package in metadata["packages"]}
    members = [package for package in metadata["packages"] if package["id"] in metadata["workspace_members"]]
    failed = False
    for member in members:
        if member.get("publish") == []:
            continue
        tree = subprocess.run(
            ["cargo", "tree", "--locked", "-p", member["name"], "--all-features", "-e", "normal,build",
             "--prefix", "none", "--format", "{p}"],
            check=True, capture_output=True, text=True,
        ).stdout
        needed, culprit = version("1.0"), "nothing"
        floor = EDITION_FLOOR.get(member["edition"], (1, 0))
        needed, culprit = version(".".join(map(str, floor))), f"edition {member['edition']}"
        for line in tree.splitlines():
            fields = line.split()
            if len(fields) < 2 or not fields[1].startswith("v"):
                continue
            name, number = fields[0], fields[1][1:]
            if name == member["name"]:
                continue
            package = by_name_version.get((name, number))
            if package and package.get("rust_version") and version(package["rust_version"]) > needed:
                needed, culprit = version(package["rust_version"]), f"{name} {number}"
        declared = member.get("rust_version")
        if declared is None:
            print(f"{member['name']}: no rust-version declared; it needs {shown(needed)} ({culprit})")
            failed = True
        elif version(declared) != needed:
            print(f"{member['name']}: declares rust-version {declared}, but needs {shown(needed)} ({culprit})")
            failed = True
        else:
            print(f"{member['name']}: rust-version {declared} ({culprit})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
