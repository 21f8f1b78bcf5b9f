"""Crash safety: `voltbook-edge run` killed with SIGKILL at random moments, 200+ times.

Several simulated sites run side by side (one runtime each, `--speed 36000`: a 15-minute poll
every 25 ms, ten hours of site time a second, so the kills cross month boundaries and land in
every phase: boot, integrity check, seed booking, polling, the commit, relay commands, saving
the simulated meters). Each runtime is restarted at once after each kill. Some kills come at
a random moment after the start, most a random moment after the runtime says it is running.

Afterwards one clean run lets every meter be read once more, and then, per site:
- `ledger verify --config` passes (store integrity, chain, signatures, ledger invariants);
- no transfer id twice, no subsidy twice for an account and period, each seed recharge once;
- per meter, billed energy + unbilled energy (the rule state) = the simulated register now −
  the register of the meter's first stored reading, and the ledger never billed beyond the
  simulated meter's register (registers never jump back);
- every simulated relay stands where the rules want it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from demo.sim.persist import SimulatedBuilding
from edge.rules.tariffs import energy_of
from edge.runtime.codec import decode
from edge.runtime.state import MeterRuntime, meter_key
from edge.site import load_site
from edge.store import Store
from ledger.transfers import Code
from tests.edge.runtime.conftest import ROOT, ZONE, cli, cli_command, demo, wait_running

SITES = 3
KILLS_PER_SITE = 70  # 210 in all
SPEED = "36000"
NEAR_MONTH_END = dt.datetime(2026, 11, 29, 12, 0, tzinfo=ZONE)  # the kills cross 1 December


def _spawn(site_toml: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen(
        cli_command("run", "--config", str(site_toml), "--speed", SPEED),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


def _torture(site_toml: Path, kills: int, seed: int) -> list[str]:
    """Kill and restart one site's runtime `kills` times; returns what went wrong."""
    rng = random.Random(seed)
    problems: list[str] = []
    done = 0
    while done < kills:
        proc = _spawn(site_toml)
        try:
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 0.45))  # anywhere in boot
            elif wait_running(proc, 10.0):
                time.sleep(rng.uniform(0.0, 0.3))  # anywhere in the cycles
            if proc.poll() is not None:
                assert proc.stderr is not None
                problems.append(f"exited {proc.returncode}: {proc.stderr.read()[-800:]!r}")
                break
            proc.send_signal(signal.SIGKILL)
            done += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
    return problems


def _check_site(site_toml: Path) -> None:
    site = load_site(site_toml)
    assert site.simulation is not None
    building = SimulatedBuilding.open(site.simulation.state_dir, ZONE)
    registers = building.registers_wh()
    with Store.open(site.settings.store_path, read_only=True) as store:
        entries = list(store.entries())
        transfers = [e.transfer for e in entries]
        ids = Counter(t.id for t in transfers)
        assert max(ids.values()) == 1, "a transfer was booked twice"
        subsidies = Counter(
            (t.credit, t.refs["period"]) for t in transfers if t.code is Code.SUBSIDY_ISSUE
        )
        assert subsidies and max(subsidies.values()) == 1
        assert len({p[1] for p in subsidies}) >= 2, "the run should cross a month boundary"
        payments = Counter(t.refs["payment"] for t in transfers if t.code is Code.RECHARGE)
        assert set(payments) == {f"seed-{a}" for a in site.accounts}
        assert max(payments.values()) == 1
        billed: dict[str, int] = defaultdict(int)
        for t in transfers:
            if t.code is Code.CONSUME:
                billed[str(t.refs["meter"])] += int(t.refs["energy_wh"])
                # Never billed beyond what the (simulated) meter has counted.
                assert int(t.refs["reg_to"]) <= registers[str(t.refs["meter"])]
        for meter in site.meters:
            state = decode(MeterRuntime, store.get_state(meter_key(meter.address)))
            first = store.readings(meter.address, limit=1)[0].reading.energy_wh
            assert state.billing is not None and state.first_reg_wh == first
            assert state.billing.reg_wh == registers[meter.address], "the last read is current"
            unbilled = energy_of(state.billing.unbilled)
            assert billed[meter.address] + unbilled == registers[meter.address] - first
            closed = building.meters[meter.address].state.relay_closed
            assert closed is not bool(state.relay.held), f"meter {meter.address}'s relay"


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~50 s on two cores; headroom for a slower CI runner
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    sites = [
        demo(tmp_path / f"s{n}", 6, tariff="tou" if n % 2 else "flat", seed=n, start=NEAR_MONTH_END)
        for n in range(SITES)
    ]
    with ThreadPoolExecutor(max_workers=SITES) as pool:
        jobs = [
            pool.submit(_torture, s.site_toml, KILLS_PER_SITE, seed=n) for n, s in enumerate(sites)
        ]
        problems = [p for job in jobs for p in job.result()]
    assert problems == []
    for s in sites:
        # One clean run: every meter read once more, relays settled, then a clean shutdown.
        finished = cli("run", "--config", str(s.site_toml), "--speed", SPEED, "--cycles", "2")
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert json.loads(finished.stdout)["cycles"] == 2
        verified = cli("ledger", "verify", "--config", str(s.site_toml))
        assert verified.returncode == 0, verified.stderr
        summary = json.loads(verified.stdout)
        assert summary["ok"] and summary["signed_through"] == summary["last_seq"]
        _check_site(s.site_toml)
