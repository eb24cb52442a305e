#!/usr/bin/env python3
"""Checks and unpacks the wheels that libtorch-setup.sh downloads.

    libtorch_wheels.py verify WHEEL SHA256    the file's SHA-256, then every member's path
    libtorch_wheels.py members ZIP            only the members' paths
    libtorch_wheels.py extract TORCH_WHEEL CUDART_WHEEL CUPTI_WHEEL OUT

libtorch-setup.sh runs `verify` on every wheel, downloaded or cached, before it
extracts anything: pip checks the hashes of what it downloads, but a cached
wheel may have been copied from another machine, cut short or replaced. A
failed check prints one message on stderr (the file, what is wrong, what to do)
and exits with status 1. Standard library only, so any python3 runs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import zipfile

PREFIX = "libtorch-setup: error:"


def fail(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr)
    sys.exit(1)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unsafe_member(name: str) -> str | None:
    """Why a member's path could land outside the extraction folder, or None."""
    if name.startswith("/"):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' component"
    return None


def check_members(path: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        fail(f"{path} is not a readable wheel (zip archive): {exc}. "
             f"Delete it and rerun: rm '{path}' && ./libtorch-setup.sh")
    for name in names:
        why = unsafe_member(name)
        if why is not None:
            # A wheel built by setuptools, wheel or pip never holds such a path, so
            # the file is not the one PyPI publishes; nothing is extracted from it.
            fail(f"{path} holds the member {name!r} with {why}, which could be written "
                 f"outside the libtorch folder; nothing was extracted. "
                 f"Delete it and rerun: rm '{path}' && ./libtorch-setup.sh")


def verify(path: str, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        fail(f"the wheel {path} does not match its pinned SHA-256; nothing was extracted.\n"
             f"  expected {expected.lower()}\n"
             f"  actual   {actual}\n"
             f"The file is damaged, cut short or not the one PyPI publishes. "
             f"Delete it and rerun to download it again: rm '{path}' && ./libtorch-setup.sh")
    check_members(path)


def extract(torch_whl: str, cudart_whl: str, cupti_whl: str, out: str) -> None:
    """The CPU part of libtorch: lib/ (four libraries) and include/, plus two CUDA stubs."""
    keep_libs = ("libtorch_cpu.so", "libc10.so", "libtorch.so", "libgomp")

    def copy(zf: zipfile.ZipFile, member: str, target: str) -> None:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    with zipfile.ZipFile(torch_whl) as zf:
        for m in zf.namelist():
            if m.startswith("torch/include/") and not m.endswith("/"):
                copy(zf, m, os.path.join(out, "include", m[len("torch/include/"):]))
            elif m.startswith("torch/lib/") and os.path.basename(m).startswith(keep_libs):
                copy(zf, m, os.path.join(out, "lib", os.path.basename(m)))
    for whl, want in ((cudart_whl, "libcudart.so.13"), (cupti_whl, "libcupti.so.13")):
        with zipfile.ZipFile(whl) as zf:
            hits = [m for m in zf.namelist() if os.path.basename(m) == want]
            if not hits:
                fail(f"{want} not found in {whl}")
            copy(zf, hits[0], os.path.join(out, "lib", want))


def main(argv: list[str]) -> None:
    usage = __doc__.strip().splitlines()[2:5]
    if len(argv) == 3 and argv[0] == "verify":
        verify(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "members":
        check_members(argv[1])
    elif len(argv) == 5 and argv[0] == "extract":
        extract(*argv[1:])
    else:
        print("usage:\n" + "\n".join(usage), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
