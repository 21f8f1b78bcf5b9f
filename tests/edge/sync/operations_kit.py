"""Helpers for the operations-command tests: a demo site's real runtime (simulated DL/T 645
meters on the in-process bus, real store, real config documents), a `CloudDesk` that signs
commands with the test cloud key and hands them to the real `CommandDesk`, and snapshots that
prove a refused command changed nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from demo.site import DEFAULT_START, write_demo_site
from edge.runtime.boot import Booted, boot
from edge.runtime.clock import ManualClock
from edge.runtime.cycle import Runtime
from edge.site import load_site
from edge.store import CommandStatus, Store
from edge.store.config_db import ConfigDB, ConfigKind
from edge.sync.commands import CommandDesk, Handled
from ledger.accounts import AccountId, Pocket, pocket_id
from ledger.book import Balance
from ledger.chain import NodeKey
from ledger.signed import Command, CommandKind, trusted
from ledger.transfers import Transfer

ZONE = ZoneInfo("Asia/Shanghai")
MORNING = dt.datetime(2026, 11, 2, 9, 0, tzinfo=ZONE)  # a Monday, outside friendly hours
QUARTER = dt.timedelta(minutes=15)
CLOUD_KEY = NodeKey.from_seed(bytes(range(32)))
_ids = itertools.count(1)


def write_site(
    directory: Path, meters: int = 4, *, subsidy: bool = False, start: dt.datetime | None = None
) -> Path:
    """A demo site of steady shops (no malicious-looking loads); without subsidy unless asked,
    so prepaid and grace are what pays; its simulated meters start at `start` (default: the
    demo's). Returns its site.toml."""
    site = write_demo_site(
        directory, meters, tariff="flat", profiles=("steady_shop",), start=start or DEFAULT_START
    )
    if not subsidy:
        with ConfigDB.open(site.directory / "config.json") as config:
            rule = config.get(ConfigKind.RULES, "subsidy")
            assert rule is not None
            config.put(ConfigKind.RULES, {**rule, "by_type": {}, "by_category": {}})
    return site.site_toml


@dataclass
class Node:
    """One concentrator: its booted runtime, its manual clock and the desk a cloud talks to."""

    booted: Booted
    clock: ManualClock
    desk: CommandDesk
    seq: int = 0

    @classmethod
    def boot(cls, site_toml: Path, start: dt.datetime = MORNING) -> Node:
        clock = ManualClock(start)
        booted = boot(load_site(site_toml), clock=clock)
        return cls(booted, clock, CommandDesk(booted.runtime, trusted(CLOUD_KEY.public_key)))

    @property
    def runtime(self) -> Runtime:
        return self.booted.runtime

    @property
    def store(self) -> Store:
        return self.booted.runtime.store

    def close(self) -> None:
        self.booted.close()

    def cycles(self, count: int, every: dt.timedelta = QUARTER) -> None:
        for _ in range(count):
            self.runtime.run_cycle()
            self.clock.advance(every)

    def command(self, kind: CommandKind, args: dict[str, Any]) -> bytes:
        self.seq += 1
        now = self.clock.true_now()
        return Command(
            id=f"{next(_ids):032x}",
            seq=self.seq,
            target=self.store.node,
            kind=kind,
            issued=now,
            expires=now + dt.timedelta(days=3),
            args=args,
        ).sign(CLOUD_KEY)

    def send(self, kind: CommandKind, args: dict[str, Any]) -> Handled:
        return self.desk.handle(self.command(kind, args))

    # -- what the tests look at ------------------------------------------------------------
    def balance(self, owner: str, pocket: Pocket) -> Balance:
        return self.store.book.balance(pocket_id(owner, pocket))

    def transfers(self) -> list[Transfer]:
        return [e.transfer for e in self.store.entries()]

    def config_bytes(self) -> bytes:
        return self.runtime.site.settings.config_path.read_bytes()

    def snapshot(self) -> dict[str, Any]:
        """Everything a refused command must leave as it was (the inbox row aside)."""
        return {
            "balances": self.store.book.balances(),
            "seq": self.store.chain.seq,
            "config": hashlib.sha256(self.config_bytes()).hexdigest(),
            "meters": dict(self.runtime.meters),
            "accounts": dict(self.runtime.accounts),
            "site": [dataclasses.astuple(m) for m in self.runtime.site.meters],
            "sync_config": self.store.get_state("sync:config"),
        }


def applied(handled: Handled) -> Handled:
    assert handled.result is not None, handled.message
    assert handled.result.status is CommandStatus.APPLIED, handled.message
    return handled


def refused(handled: Handled, *words: str) -> str:
    assert handled.outcome == "refused", handled.message
    assert handled.result is not None
    for word in words:
        assert word in handled.result.reason, handled.result.reason
    return handled.result.reason


def by_id(transfers: list[Transfer]) -> dict[int, Transfer]:
    return {t.id: t for t in transfers}


def per_meter_energy(transfers: list[Transfer]) -> Iterator[tuple[str, int, int, int]]:
    """Per meter: (meter, first register billed from, last register billed to, energy billed)."""
    spans: dict[str, list[tuple[int, int, int]]] = {}
    for t in transfers:
        if "meter" in t.refs and "reg_from" in t.refs:
            spans.setdefault(str(t.refs["meter"]), []).append(
                (int(t.refs["reg_from"]), int(t.refs["reg_to"]), int(t.refs["energy_wh"]))
            )
    for meter, rows in spans.items():
        yield (
            meter,
            min(r[0] for r in rows),
            max(r[1] for r in rows),
            sum(r[2] for r in rows),
        )


def pocket(owner: str, which: Pocket) -> AccountId:
    return pocket_id(owner, which)
