"""`voltbook-edge --version`: the package version, and the bundle's beside the virtualenv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.version import bundle_version


def test_the_bundle_version_is_read_beside_the_venv(tmp_path: Path) -> None:
    venv = tmp_path / "versions/7/venv"
    venv.mkdir(parents=True)
    assert bundle_version(venv) is None
    (venv.parent / "manifest.json").write_text('{"version":7,"arch":"aarch64"}')
    assert bundle_version(venv) == 7


@pytest.mark.parametrize("text", ["", "[]", '{"version":"7"}', '{"version":true}', "{"])
def test_a_manifest_without_an_integer_version_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    assert bundle_version(tmp_path / "venv") is None


def test_version_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("voltbook-edge 0.1.0")
