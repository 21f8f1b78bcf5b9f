"""Child process for the crash tests: writes in a loop until it is killed.

    python -m tests.edge.store.crash_writer store PATH   # poll cycles into the SQLite store
    python -m tests.edge.store.crash_writer config PATH  # whole-configuration pushes into tinydb

After each commit it prints the number of the cycle (or configuration version) it completed, so
the parent knows a lower bound of what must have survived.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edge.store import Store
from edge.store.config_db import ConfigDB, ConfigKind
from ledger.transfers import Transfer
from tests.edge.store.conftest import NODE, reading, recharge

TRANSFERS_PER_CYCLE = 3
READINGS_PER_CYCLE = 20
METERS_PER_CONFIG = 300


def cycle_transfers(cycle: int) -> list[Transfer]:
    return [
        recharge(f"{cycle}/{j}", owner=f"A000{j}", amount=j + 1, cycle=cycle)
        for j in range(TRANSFERS_PER_CYCLE)
    ]


def write_store(path: Path) -> None:
    store = Store.open(path, node=NODE)
    cycle = int(store.get_state("cycle", 0))
    print("ready", flush=True)
    while True:
        cycle += 1
        with store.transaction() as tx:
            tx.append_transfers(cycle_transfers(cycle))
            tx.insert_readings(
                [reading(f"m{m}", cycle, energy_wh=cycle * 10) for m in range(READINGS_PER_CYCLE)]
            )
            tx.set_state("cycle", cycle)
        print(cycle, flush=True)


def config_version(version: int) -> list[dict[str, object]]:
    return [
        {"id": f"{m:012d}", "version": version, "bus": f"rs485-{m % 4}", "note": "x" * 64}
        for m in range(METERS_PER_CONFIG)
    ]


def write_config(path: Path) -> None:
    config = ConfigDB.open(path)
    print("ready", flush=True)
    version = 0
    while True:
        version += 1
        config.replace_all({ConfigKind.METERS: config_version(version)})
        print(version, flush=True)


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    (write_store if mode == "store" else write_config)(target)
