"""Fixtures for the store tests: every store lives in a real file under `tmp_path`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.drivers.reading import Reading, RelayState, ValveState
from edge.store import Store, TimedReading
from edge.store.integrity import format_head
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.chain import Chain
from ledger.encoding import body_version, decode_transfer, encode_body
from ledger.ids import derive_id
from ledger.transfers import Code, Kind, RefValue, Transfer
from ledger.units import Wh
from tests.ledger.factories import transfer

NODE = "edge-0001"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=SHANGHAI)
CASH = system_id(System.CASH_IN_TRANSIT)
REFUNDS = system_id(System.REFUNDS_PAYABLE)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store.open(db_path, node=NODE)
    yield opened
    opened.close()


def with_amount(body: bytes, amount: int) -> bytes:
    """The stored `body` with another amount, canonical in its own format: what a forger who
    knows the encoding writes."""
    changed = dataclasses.replace(decode_transfer(body), amount=amount)
    return encode_body(changed, body_version(body))


def version_1_store(path: Path, transfers: list[Transfer], node: str = NODE) -> None:
    """A store as an edge before body format version 2 left it: entries in version 1, each
    with its outbox row."""
    Store.open(path, node=node).close()
    chain = Chain(node)
    with sqlite3.connect(path) as conn:
        for t in transfers:
            e = chain.append(t)
            conn.execute(
                "INSERT INTO ledger (seq, transfer_id, body, prev_hash, hash) VALUES (?,?,?,?,?)",
                (e.seq, t.id.to_bytes(16, "big"), encode_body(t, 1), e.prev_hash, e.hash),
            )
            conn.execute(
                "INSERT INTO outbox (kind, ref, payload, created) VALUES ('entry', ?, NULL, ?)",
                (e.seq, t.time),
            )
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('head', ?)",
            (format_head(chain.seq, chain.head),),
        )
    conn.close()


def recharge(
    key: str | int, owner: str = "A0001", amount: int = 1000, **refs: RefValue
) -> Transfer:
    """A recharge with a deterministic id derived from `key`."""
    return transfer(
        derive_id("recharge", key),
        CASH,
        pocket_id(owner, Pocket.PREPAID),
        amount,
        Code.RECHARGE,
        refs=dict(refs),
    )


def refund(key: str | int, owner: str = "A0001", amount: int = 100, **refs: RefValue) -> Transfer:
    return transfer(
        derive_id("refund", key),
        pocket_id(owner, Pocket.PREPAID),
        REFUNDS,
        amount,
        Code.REFUND,
        kind=Kind.SINGLE,
        refs=dict(refs),
    )


def reading(meter: str, minute: int, energy_wh: int = 1000) -> TimedReading:
    return TimedReading(
        T0 + dt.timedelta(minutes=minute),
        Reading(
            meter,
            energy_wh=Wh(energy_wh),
            energy_by_tariff_wh=(Wh(10), Wh(20), Wh(30), Wh(energy_wh - 60)),
            voltage_v=229.5,
            current_a=1.25,
            power_w=286.9,
            power_factor=0.98,
            relay=RelayState.CLOSED,
        ),
    )


def table_dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read through a separate connection (what is committed)."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        conn.close()


# A reading with every rare field (`extra`), one of them not ASCII.
RICH = TimedReading(
    T0,
    Reading(
        "m9",
        energy_wh=Wh(5000),
        energy_by_tariff_wh=(Wh(1), Wh(2), Wh(3), Wh(4994)),
        energy_error_wh=Wh(9),
        voltage_v=231.0,
        frequency_hz=49.98,
        relay=RelayState.OPEN,
        valve=ValveState.CLOSED,
        status_words=(0x0001, 0x8000),
        event_flags=frozenset({"cover_open", "磁场"}),
        counters=(("overload_trips", 3),),
        meter_time=dt.datetime(2026, 11, 1, 7, 59, 58),
    ),
)
