"""Packaging: the pinned requirement sets agree with pyproject, and every CLI explains itself."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(name: str) -> dict[str, str]:
    out = {}
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}: {line} is not pinned with =="
            out[req.name.lower()] = spec.version
    return out


@pytest.mark.parametrize(
    ("extra", "file"), [("edge", "requirements-edge.txt"), ("cloud", "requirements-cloud.txt")]
)
def test_requirements_pin_exactly_what_pyproject_asks(extra: str, file: str) -> None:
    project = PYPROJECT["project"]
    wanted = [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]
    ]
    pinned = pins(file)
    assert sorted(pinned) == sorted({r.name.lower() for r in wanted}), (
        f"{file} vs pyproject [{extra}]"
    )
    for req in wanted:
        assert req.specifier.contains(pinned[req.name.lower()]), (
            f"{file}: {req.name} pin outside {req}"
        )


@pytest.mark.parametrize(
    "command", ["voltbook-edge", "voltbook-cloud", "voltbook-fw", "voltbook-demo"]
)
def test_console_scripts_have_help(command: str) -> None:
    script = Path(sys.executable).parent / command
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {command}")
    assert "Voltbook" in result.stdout


def test_edge_cli_errors_are_sentences(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "ledger",
            "verify",
            "--chain",
            str(missing),
            "--key",
            "00" * 32,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read")
    assert "Traceback" not in result.stderr
