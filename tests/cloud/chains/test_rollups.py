"""The consumption rollup: consume / meter_settle legs folded per account, meter, site day,
tariff period and pocket by the real ingest, on both engines; exact under resent and
overlapping batches. The per-account monthly rollup the report pages read equals the ledger
after any sequence of ingested batches (property test), and so do the report's rows and totals
over a window of whole months and loose days."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.chains.rollups import split_tariff
from cloud.db.rollups import ConsumptionAccountMonthly, ConsumptionDaily, ConsumptionMonthly
from cloud.ingest.handler import Ingest
from cloud.reports import books, queries
from cloud.reports.core import Window, fetch
from cloud.reports.queries import whole_months
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.ids import derive_id
from ledger.transfers import Code, RefValue, TimeSource, Transfer
from ledger.wire import AckStatus
from tests.cloud.conftest import RegisterEdge
from tests.cloud.helpers import open_ack

METER = "000000000001"
SINK = {
    "subsidy": System.SUBSIDY_USED,
    "prepaid": System.ENERGY_SALES,
    "credit": System.ENERGY_SALES,
    "grace": System.GRACE_USED,
}


def leg(
    account: str,
    name: str,
    amount: int,
    when: dt.datetime,
    span: tuple[int, int],
    *,
    energy: int,
    tariff: str | None = None,
    code: Code = Code.CONSUME,
) -> Transfer:
    pocket = Pocket.PREPAID if name in {"prepaid", "credit"} else Pocket(name)
    refs: dict[str, RefValue] = {"meter": METER, "reg_from": span[0], "reg_to": span[1],
                                 "energy_wh": energy}  # fmt: skip
    if tariff is not None:
        refs["tariff"], refs["cost_cum"] = tariff, 1
    if code is Code.METER_SETTLE:
        refs["swap"] = "SW-1"
        transfer_id = derive_id("meter-settle", "SW-1", name)
    else:
        transfer_id = derive_id("consume", METER, span[0], span[1], name)
    return Transfer(
        id=transfer_id,
        debit=pocket_id(account, pocket),
        credit=system_id(SINK[name]),
        amount=amount,
        unit=Unit.FEN if pocket is Pocket.PREPAID else Unit.WH,
        code=code,
        time=when.isoformat(),
        time_source=TimeSource.NTP,
        refs=refs,
    )


SH = dt.timezone(dt.timedelta(hours=8))
LEGS = [
    leg("A0001", "subsidy", 700, dt.datetime(2026, 11, 2, 10, tzinfo=SH), (0, 700), energy=700),
    leg("A0001", "prepaid", 99, dt.datetime(2026, 11, 2, 10, tzinfo=SH), (0, 1500),
        energy=1500, tariff="peak:1000@8365;valley:500@3120"),
    # 23:59 in Shanghai is still the 2nd; 00:30 the 3rd (UTC says otherwise for both).
    leg("A0001", "prepaid", 12, dt.datetime(2026, 11, 2, 23, 59, tzinfo=SH), (1500, 1650),
        energy=150, tariff="valley:150@8000"),
    leg("A0001", "credit", 20, dt.datetime(2026, 11, 3, 0, 30, tzinfo=SH), (1650, 1900),
        energy=250, tariff="flat:250@8000"),
    leg("A0001", "grace", 40, dt.datetime(2026, 11, 3, 0, 30, tzinfo=SH), (1900, 1940),
        energy=40),
    leg("A0001", "prepaid", 5, dt.datetime(2026, 11, 3, 9, tzinfo=SH), (1940, 2000),
        energy=60, tariff="flat:60@8000", code=Code.METER_SETTLE),
]  # fmt: skip
# Worked out by hand from LEGS: (day, period, pocket) → (wh, fen, entries).
EXPECTED = {
    ("2026-11-02", "", "subsidy"): (700, 0, 1),
    ("2026-11-02", "peak", "prepaid"): (1000, 83, 1),  # 99 × 8.365/9.925 = 83.43
    ("2026-11-02", "valley", "prepaid"): (650, 16 + 12, 2),  # 15.56 → 16 (largest remainder)
    ("2026-11-03", "flat", "credit"): (250, 20, 1),
    ("2026-11-03", "", "grace"): (40, 0, 1),
    ("2026-11-03", "flat", "prepaid"): (60, 5, 1),
}


def _rows(session: Session) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    found = session.scalars(select(ConsumptionDaily)).all()
    assert {(r.account, r.meter) for r in found} == {("A0001", METER)}
    return {(r.day.isoformat(), r.period, r.pocket): (r.wh, r.fen, r.entries) for r in found}


def _send(ingest: Ingest, edge: Any, first: int, entries: list[Any]) -> None:
    payload = edge.payload(first, first + len(entries) - 1, entries)
    ack = open_ack(ingest.handle_batch(edge.node, payload), ingest.key)
    assert ack.status is AckStatus.OK, ack


def test_split_tariff_shares_fen_by_exact_cost() -> None:
    assert split_tariff("peak:1000@8365;valley:500@3120", 99) == [
        ("peak", 1000, 83), ("valley", 500, 16)]  # fmt: skip
    assert split_tariff("a:1@1;a:1@1", 3) == [("a", 2, 3)]
    assert split_tariff("a:0@0", 3) == []
    assert split_tariff("garbage", 3) == []
    for fen in range(50):
        parts = split_tariff("p:333@8365;f:333@5000;v:334@2000", fen)
        assert sum(f for _, _, f in parts) == fen


def test_ingest_folds_legs_exactly_once(
    ingest: Ingest, edge_of: RegisterEdge, sessions: sessionmaker[Session]
) -> None:
    edge = edge_of()
    first = edge.book(*LEGS[:3])
    _send(ingest, edge, 1, first)
    _send(ingest, edge, 1, first)  # the same batch again: stores nothing twice
    rest = edge.book(*LEGS[3:])
    _send(ingest, edge, 1, first + rest)  # overlaps the stored prefix
    with sessions() as session:
        assert _rows(session) == EXPECTED
        months = {(r.month.isoformat(), r.period, r.pocket): (r.wh, r.fen, r.entries)
                  for r in session.scalars(select(ConsumptionMonthly))}  # fmt: skip
    by_month: dict[tuple[str, str, str], list[int]] = {}
    for (_, period, pocket), values in EXPECTED.items():
        slot = by_month.setdefault(("2026-11-01", period, pocket), [0, 0, 0])
        for i, value in enumerate(values):
            slot[i] += value
    assert months == {k: tuple(v) for k, v in by_month.items()}
    expected_fen = sum(t.amount for t in LEGS if t.unit is Unit.FEN)
    assert sum(fen for _, fen, _ in EXPECTED.values()) == expected_fen


def test_rollup_matches_the_ledger_per_day(
    ingest: Ingest, edge_of: RegisterEdge, sessions: sessionmaker[Session]
) -> None:
    edge = edge_of()
    _send(ingest, edge, 1, edge.book(*LEGS))
    by_day: Mapping[str, int] = {}
    for t in LEGS:
        day = dt.datetime.fromisoformat(t.time).astimezone(SH).date().isoformat()
        by_day[day] = by_day.get(day, 0) + (t.amount if t.unit is Unit.FEN else 0)  # type: ignore[index]
    with sessions() as session:
        rows = _rows(session)
    assert by_day == {d: sum(v[1] for k, v in rows.items() if k[0] == d) for d in by_day}


def test_books_find_a_rollup_that_differs_from_the_ledger(
    ingest: Ingest, edge_of: RegisterEdge, sessions: sessionmaker[Session]
) -> None:
    edge = edge_of()
    _send(ingest, edge, 1, edge.book(*LEGS))
    with sessions.begin() as session:
        assert books.rollup(session) == []
        row = session.get(ConsumptionAccountMonthly, ("A0001", dt.date(2026, 11, 1)))
        assert row is not None
        row.fen += 1  # one fen the ledger never billed
    with sessions() as session:
        found = books.rollup(session)
    assert len(found) == 1 and found[0].startswith("consumption of A0001 in 2026-11"), found
    billed = sum(t.amount for t in LEGS if t.unit is Unit.FEN)
    assert f"holds {{'wh': 2700, 'subsidy_wh': 700, 'fen': {billed + 1}, 'entries': 7}}" in found[0]
    assert (
        f"the ledger {{'wh': 2700, 'subsidy_wh': 700, 'fen': {billed}, 'entries': 7}}" in found[0]
    )


def test_windows_split_into_whole_months_and_days() -> None:
    d = dt.date
    assert whole_months(Window(d(2026, 11, 1), d(2026, 11, 30))) == ([d(2026, 11, 1)], [])
    assert whole_months(Window(d(2026, 10, 15), d(2027, 1, 3))) == (
        [d(2026, 11, 1), d(2026, 12, 1)],
        [(d(2026, 10, 15), d(2026, 10, 31)), (d(2027, 1, 1), d(2027, 1, 3))],
    )
    assert whole_months(Window(d(2026, 2, 2), d(2026, 2, 28))) == (
        [], [(d(2026, 2, 2), d(2026, 2, 28))])  # fmt: skip


# -- the per-account monthly rollup against the ledger, after any ingest sequence -----------------

_EXAMPLES = itertools.count(1)
START = dt.datetime(2026, 10, 30, tzinfo=SH)  # two loose days, November, December, loose days
DAYS = 70
WINDOW = Window(START.date(), (START + dt.timedelta(days=DAYS - 1)).date())
POCKETS = ("subsidy", "prepaid", "credit", "grace")


@st.composite
def consumption_runs(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, str, int, int, int, str]], list[int]]:
    """Legs (account number, pocket, minute of the span, Wh, fen, tariff) and the cut points
    of the batches they are sent in."""
    drawn = draw(st.lists(st.tuples(
        st.integers(0, 2), st.sampled_from(POCKETS), st.integers(0, DAYS * 24 * 60 - 1),
        st.integers(1, 5_000), st.integers(1, 900),
        st.sampled_from(["", "peak", "peak,valley", "flat,valley,peak"]),
    ), min_size=1, max_size=12))  # fmt: skip
    cuts = draw(st.lists(st.integers(1, len(drawn)), max_size=4))
    return drawn, sorted(set(cuts))


def _tariff(periods: str, energy: int) -> str | None:
    if not periods:
        return None
    names = periods.split(",")
    parts = [energy // len(names)] * len(names)
    parts[0] += energy - sum(parts)
    return ";".join(f"{name}:{wh}@{3000 + 1000 * i}" for i, (name, wh) in
                    enumerate(zip(names, parts, strict=True)))  # fmt: skip


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=consumption_runs())
def test_account_rollup_equals_the_ledger_after_any_ingest(
    ingest: Ingest, edge_of: RegisterEdge, sessions: sessionmaker[Session],
    run: tuple[list[tuple[int, str, int, int, int, str]], list[int]],
) -> None:  # fmt: skip
    drawn, cuts = run
    example = next(_EXAMPLES)
    edge = edge_of(f"edge-p{example:04d}")
    transfers, register = [], 10_000 * example
    expected: dict[tuple[str, dt.date], list[int]] = {}  # (account, month) → wh, subsidy, fen
    for number, pocket, minute, energy, fen, periods in drawn:
        account = f"P{example:04d}-{number}"
        when = START + dt.timedelta(minutes=minute)
        priced = pocket in {"prepaid", "credit"}
        transfers.append(leg(account, pocket, fen if priced else energy, when,
                             (register, register + energy), energy=energy,
                             tariff=_tariff(periods, energy) if priced else None))  # fmt: skip
        register += energy
        slot = expected.setdefault((account, when.date().replace(day=1)), [0, 0, 0])
        slot[0] += energy
        slot[1] += energy if pocket == "subsidy" else 0
        slot[2] += fen if priced else 0
    entries = edge.book(*transfers)
    for start, end in itertools.pairwise([0, *cuts, len(entries)]):
        if start < end:
            _send(ingest, edge, start + 1, entries[start:end])
    _send(ingest, edge, 1, entries[: cuts[0] if cuts else len(entries)])  # resent: no change
    with sessions() as session:
        assert books.rollup(session) == []
        stored = {(r.account, r.month): [r.wh, r.subsidy_wh, r.fen]
                  for r in session.scalars(select(ConsumptionAccountMonthly).where(
                      ConsumptionAccountMonthly.account.like(f"P{example:04d}-%")))}  # fmt: skip
        assert stored == expected
    per_account: dict[str, list[int]] = {}
    for (account, _), values in expected.items():
        slot = per_account.setdefault(account, [0, 0, 0])
        for i, value in enumerate(values):
            slot[i] += value
    with sessions() as session:
        for account, values in per_account.items():
            spec = queries.consumption(queries.Filters(WINDOW, account=account), ("account",))
            page = fetch(session, spec, sort=None, limit=10, offset=0)
            assert [[r["wh"], r["subsidy_wh"], r["fen"]] for r in page.rows] == [values]
            assert (page.total, list(page.totals.values())) == (1, values)
