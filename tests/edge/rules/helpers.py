"""Shared builders for rule tests: the site zone, a real book, and posting decisions to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from edge.drivers.reading import Reading
from ledger.book import Book, Outcome, linked_batches
from ledger.invariants import ledger_violations
from ledger.transfers import TimeSource, Transfer
from ledger.units import Wh
from tests.ledger.factories import accounts

TZ = ZoneInfo("Asia/Shanghai")
SOURCE = TimeSource.SIMULATED


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ)


def reading(energy_wh: int, *, address: str = "M1", **fields: Any) -> Reading:
    return Reading(address=address, energy_wh=Wh(energy_wh), **fields)


class Ledger:
    """A real book plus the list of transfers it accepted, checked against the invariants."""

    def __init__(self, *owners: str, credit_limit: int = 0) -> None:
        self.book = Book(accounts(*owners, credit_limit=credit_limit))
        self.history: list[Transfer] = []

    def post(self, transfers: Iterable[Transfer]) -> list[Outcome]:
        """Submit each linked chain as one batch; every transfer must be accepted."""
        outcomes: list[Outcome] = []
        for batch in linked_batches(transfers):
            result = self.book.submit(batch)
            assert all(o.accepted for o in result), (result, batch)
            self.history += [t for t, o in zip(batch, result, strict=True) if o is Outcome.OK]
            outcomes += result
        return outcomes

    def violations(self) -> list[str]:
        return ledger_violations(self.history, self.book.balances())

    def assert_sound(self) -> None:
        assert self.violations() == []
