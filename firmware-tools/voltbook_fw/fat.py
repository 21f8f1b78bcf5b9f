"""Read and write files in a FAT partition inside a disk image, without root: GNU mtools.

`mcopy -i IMAGE@@OFFSET` reaches a FAT file system that starts OFFSET bytes into a file, so the
image is never mounted (no root, no loop device) and works the same on Linux and macOS
(`apt install mtools`, `brew install mtools`). Why not a Python library: pyfatfs needs
PyFilesystem2 (`fs`), which imports `pkg_resources`, gone from setuptools since 81.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from voltbook_fw.errors import ImageError

TIMEOUT_S = 120
NOT_FOUND = "not found"


class FatPartition:
    """The FAT file system `offset` bytes into `image`; names are like `voltbook/bundle.tar`."""

    def __init__(self, image: Path, offset: int) -> None:
        if "@@" in str(image):
            raise ImageError(f"{image}: mtools cannot take a path with '@@' in it; rename it")
        self.drive = f"{image}@@{offset}"

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        return _mtools(["mcopy", "-i", self.drive, f"::/{name}", "-"], missing_ok=True)

    def write(self, name: str, data: bytes) -> None:
        """Create or replace the file (its folder must exist)."""
        with tempfile.TemporaryDirectory(prefix="voltbook-fat-") as work:
            source = Path(work) / "file"
            source.write_bytes(data)
            _mtools(["mcopy", "-i", self.drive, "-D", "o", str(source), f"::/{name}"])

    def mkdir(self, name: str) -> None:
        _mtools(["mmd", "-i", self.drive, "-D", "s", f"::/{name}"])


def _mtools(command: list[str], *, missing_ok: bool = False) -> bytes | None:
    if shutil.which(command[0]) is None:
        raise ImageError(
            f"{command[0]} is missing: install mtools (Debian/Ubuntu: apt install mtools; "
            "macOS: brew install mtools)"
        )
    # No geometry checks: a partition inside an image file has no drive geometry to match.
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    try:
        result = subprocess.run(
            command, capture_output=True, env=env, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"{command[0]} failed: {exc}") from exc
    if result.returncode != 0:
        said = result.stderr.decode("utf-8", "replace").strip()
        if missing_ok and NOT_FOUND in said:
            return None
        raise ImageError(f"{command[0]} failed on {command[-1]}: {said or result.returncode}")
    return result.stdout
