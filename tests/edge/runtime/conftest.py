"""Shared helpers for the runtime tests: demo sites on disk, the CLI as a subprocess, the store.

Everything is real: sites written by `write_demo_site`, the SQLite store, the simulated DL/T 645
meters answering real frames (in-process `DirectBus`, or a pty for the CLI at speed 1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from demo.site import DemoSite, write_demo_site
from edge.runtime.boot import Booted, boot
from edge.runtime.clock import ManualClock
from edge.site import Site, load_site
from edge.store import Store
from ledger.transfers import Transfer

ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 11, 1, 0, 0, tzinfo=ZONE)
ROOT = Path(__file__).resolve().parents[3]


def cli_command(*args: str, module: str = "edge.cli") -> list[str]:
    """`voltbook-edge ARGS` as a command line (the console script's module, this checkout);
    `module="demo.cli"`: `voltbook-demo ARGS`."""
    return [sys.executable, "-m", module, *args]


RUNNING = b"running site"  # what `voltbook-edge run` logs once it has booted


def wait_running(proc: subprocess.Popen[bytes], limit: float) -> bool:
    """Read the runtime's log until it says it runs (or it dies, or `limit` passes)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + limit
    seen = b""
    fd = proc.stderr.fileno()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return False  # it exited
        seen = seen[-200:] + chunk
        if RUNNING in seen:
            return True
    return False


def cli(
    *args: str, timeout: float = 60, module: str = "edge.cli"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        cli_command(*args, module=module),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )


def demo_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`voltbook-demo ARGS` (writes the simulated sites the concentrator's CLI runs on)."""
    return cli(*args, timeout=timeout, module="demo.cli")


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` and a hash of its bytes (to prove nothing was touched)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def demo(tmp_path: Path, meters: int = 8, **kwargs: object) -> DemoSite:
    return write_demo_site(tmp_path / "site", meters, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def small_site(tmp_path: Path) -> DemoSite:
    return demo(tmp_path, 8, tariff="flat")


def booted_at(site: Site, start: dt.datetime = START) -> tuple[Booted, ManualClock]:
    clock = ManualClock(start)
    return boot(site, clock=clock), clock


@pytest.fixture
def running(small_site: DemoSite) -> Iterator[tuple[Booted, ManualClock]]:
    booted, clock = booted_at(load_site(small_site.site_toml))
    try:
        yield booted, clock
    finally:
        booted.close()


def transfers_of(store: Store) -> list[Transfer]:
    return [e.transfer for e in store.entries()]


def cycles(booted: Booted, clock: ManualClock, count: int, every: dt.timedelta) -> None:
    for _ in range(count):
        booted.runtime.run_cycle()
        clock.advance(every)
