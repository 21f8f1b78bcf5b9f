"""Which wheels fit which concentrator: the arch table and this box's own arch and Python.

A concentrator runs Raspberry Pi OS (Debian 12 "bookworm": glibc 2.36, CPython 3.11) on a Pi
(`aarch64` 64-bit, `armv7l` 32-bit) or a Debian/Ubuntu x86_64 box. A bundle holds wheels tagged
`any` or manylinux for its arch up to that glibc; `pip download` is told every such tag.
"""

from __future__ import annotations

import platform
import re
import sys

from voltbook_fw.manifest import ARCHES

GLIBC_MAX = 36  # Debian 12, which Raspberry Pi OS bookworm is
GLIBC_MIN = 17  # manylinux2014, the oldest tag any of our wheels carries
DEFAULT_PYTHON = "3.11"


def pip_platforms(arch: str) -> list[str]:
    """The `--platform` tags `pip download` takes for `arch`, best first."""
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}")
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MAX, GLIBC_MIN - 1, -1)]
    return [*tags, f"manylinux2014_{arch}", f"linux_{arch}"]


def python_tag(version: str) -> str:
    """`3.11` → `cp311`."""
    match = re.fullmatch(r"3\.([0-9]{1,2})", version)
    if match is None:
        raise ValueError(f"a Python version is like 3.11, not {version!r}")
    return f"cp3{match.group(1)}"


def running_python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def box_arch() -> str:
    """The arch of the running interpreter. A Pi with a 64-bit kernel and 32-bit Raspberry Pi OS
    says `aarch64` in `platform.machine()`, but needs armv7l wheels (as pip's tags decide)."""
    machine = platform.machine()
    if machine == "aarch64" and sys.maxsize <= 2**32:
        return "armv7l"
    if machine in ("armv7l", "armv8l", "armv6l"):
        return "armv7l"
    return machine


def wheel_fits(filename: str, arch: str, python: str) -> bool:
    """Whether a wheel's file name tags say it installs on `arch` with CPython `python`."""
    parts = filename.removesuffix(".whl").split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        return False
    pythons, abis, plats = (set(p.split(".")) for p in parts[-3:])
    if "any" not in plats and not plats & set(pip_platforms(arch)):
        return False
    if "abi3" in abis:
        return any(
            p.startswith("cp3") and p[3:].isdigit() and int(p[3:]) <= int(python[3:])
            for p in pythons
        )
    if "none" in abis:
        return bool(pythons & {"py3", python, f"py{python[2:]}"})
    return python in abis and python in pythons
