"""SIGKILL in the middle of writing: every committed transaction survives whole, nothing else.

A child process (`tests.edge.store.crash_writer`) writes poll cycles (or configuration pushes) in a
loop and prints each one it completed; the parent kills it at random moments — some while it is
still opening or migrating the store, most in the middle of a burst of commits — then reopens
the store (which runs the full integrity check) and checks that every cycle up to the last one
committed is complete and that no cycle is partial.

This kills the process, not the machine: data the kernel already holds survives. Losing power
is what `synchronous=FULL` and the fsyncs are for, and is not simulated here.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from edge.store import Store
from edge.store.config_db import ConfigDB, ConfigKind
from ledger.accounts import Pocket, pocket_id
from tests.edge.store.crash_writer import METERS_PER_CONFIG, READINGS_PER_CYCLE, TRANSFERS_PER_CYCLE

ROOT = Path(__file__).resolve().parents[3]
STORE_KILLS = 20
CONFIG_KILLS = 10


def _run_and_kill(mode: str, path: Path, rng: random.Random) -> list[int]:
    """Start a writer, kill it at a random moment, return the numbers it reported done."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.store.crash_writer", mode, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 0.4))  # often during start-up, open or migration
        else:
            ready = child.stdout.readline() if child.stdout else ""
            assert ready == "ready\n", child.stderr.read() if child.stderr else ready
            # In the middle of a burst of commits: after a random number of them (counted, so a
            # loaded machine lands the kills at moments as varied as an idle one), then a moment.
            seen = [child.stdout.readline() for _ in range(rng.randint(0, 4))]
            time.sleep(rng.uniform(0.0, 0.02))
    finally:
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, err
    return [int(line) for line in "".join(seen).split() + out.split() if line.isdigit()]


@pytest.mark.slow
def test_killed_store_writer_keeps_every_committed_cycle_whole(tmp_path: Path) -> None:
    rng = random.Random(20261101)
    path = tmp_path / "edge.db"
    done = 0
    cycles_seen = []
    for _ in range(STORE_KILLS):
        reported = _run_and_kill("store", path, rng)
        if not path.exists():
            continue  # killed before the file was created
        with Store.open(path, node="edge-0001") as store:  # integrity check: hashes, links
            cycle = int(store.get_state("cycle", 0))
            last = reported[-1] if reported else done
            # Committed then killed before printing: one cycle more than reported, never less.
            assert cycle in (last, last + 1), (cycle, reported)
            per_cycle = Counter(int(e.transfer.refs["cycle"]) for e in store.entries())
            assert per_cycle == dict.fromkeys(range(1, cycle + 1), TRANSFERS_PER_CYCLE)
            assert store.chain.seq == cycle * TRANSFERS_PER_CYCLE
            assert len(store.readings()) == cycle * READINGS_PER_CYCLE
            for j in range(TRANSFERS_PER_CYCLE):
                account = pocket_id(f"A000{j}", Pocket.PREPAID)
                assert store.book.balance(account).posted == cycle * (j + 1)
            assert store.outbox_size() == cycle * (TRANSFERS_PER_CYCLE + 1)
        done = cycle
        cycles_seen.append(cycle)
    assert done > 0, "the writer never committed: the kills came too early"
    assert len(set(cycles_seen)) > STORE_KILLS // 2, "kills should land at varied moments"


@pytest.mark.slow
def test_killed_config_writer_leaves_old_or_new_never_a_mix(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "site.json"
    previous = 0
    for _ in range(CONFIG_KILLS):
        reported = _run_and_kill("config", path, rng)
        if not path.exists():
            continue
        config = ConfigDB.open(path)  # refuses a torn file; removes leftover temporaries
        meters = config.documents(ConfigKind.METERS)
        versions = {m["version"] for m in meters}
        assert len(meters) == METERS_PER_CONFIG and len(versions) == 1, "a mixed file"
        (version,) = versions
        allowed = {reported[-1], reported[-1] + 1} if reported else {previous, 1}
        assert version in allowed, (version, reported, previous)
        assert [p.name for p in tmp_path.iterdir()] == ["site.json"]
        config.close()
        previous = version
