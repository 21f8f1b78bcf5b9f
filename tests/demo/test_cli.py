"""`voltbook-demo site | sim`, run as a subprocess (the console script's module, this checkout):
the same options and output they had as `voltbook-edge demo-site | sim`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = (sys.executable, "-m", "demo.cli")
EDGE = (sys.executable, "-m", "edge.cli")


def run(command: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
    )


def test_site_writes_a_site_and_says_how_to_run_it(tmp_path: Path) -> None:
    where = tmp_path / "site"
    made = run(DEMO, "site", "--dir", str(where), "--meters", "4", "--tariff", "flat")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out == {
        "site": str(where / "site.toml"),
        "meters": 4,
        "accounts": 4,
        "next": f"voltbook-edge run --config {where / 'site.toml'} --speed 3600",
    }
    assert (where / "sim" / "meters.json").is_file() and (where / "node.key").is_file()


def test_site_refuses_to_overwrite_a_site(tmp_path: Path) -> None:
    where = tmp_path / "site"
    assert run(DEMO, "site", "--dir", str(where), "--meters", "2").returncode == 0
    result = run(DEMO, "site", "--dir", str(where))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.slow  # a simulator subprocess until SIGTERM
def test_sim_command_serves_meters_until_sigterm() -> None:
    sim = subprocess.Popen(
        [*DEMO, "sim", "--bus", "dlt645:2", "--bus", "sdm630:1", "--no-wire-timing", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        buses = [json.loads(sim.stdout.readline()) for _ in range(2)]
        assert [b["protocol"] for b in buses] == ["dlt645", "sdm630"]
        assert len(buses[0]["meters"]) == 2 and buses[1]["meters"] == ["1"]
        assert buses[0]["baudrate"] == 2400 and buses[0]["parity"] == "E"
        assert buses[1]["parity"] == "N" and buses[0]["port"].startswith("/dev/pts/")
        for bus, protocol in zip(buses, ("dlt645", "sdm630"), strict=True):
            address = bus["meters"][0]
            port = bus["port"]
            result = run(EDGE, "read", "--port", port, "--protocol", protocol, "--address", address)
            assert result.returncode == 0, result.stderr
            assert "energy_wh" in result.stdout
    finally:
        sim.send_signal(signal.SIGTERM)
        _, err = sim.communicate(timeout=10)
    assert sim.returncode == 0, err
    assert "requests" in err and "Traceback" not in err


def test_sim_prints_one_line_per_bus_in_text_mode() -> None:
    result = run(DEMO, "sim", "--meters", "2", "--buses", "2", "--duration", "0.2", "--seed", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bus 1: /dev/pts/") and "dlt645 2400 8E1" in lines[0]
    assert len(lines[0].split("meters: ")[1].split()) == 2


@pytest.mark.parametrize("command", ["site", "sim"])
def test_every_command_has_help(command: str) -> None:
    result = run(DEMO, command, "--help")
    assert result.returncode == 0
    assert "usage: voltbook-demo " + command in result.stdout
    assert len(result.stdout) > 400


@pytest.mark.parametrize("command", ["sim", "demo-site"])
def test_the_concentrator_command_line_has_no_simulator_commands(command: str) -> None:
    result = run(EDGE, command, "--help")
    assert result.returncode == 2 and "invalid choice" in result.stderr
