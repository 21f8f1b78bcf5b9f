"""Property tests of the takeover's pure rules (`ledger.takeover`): for any acknowledged chain
and any cut, the cloud's closings and the new box's openings conserve every pocket and every
unit, the baselines are where billing stopped, and by the settlement rule every meter's energy
is in the books exactly once (the old chain up to the baseline, the new box after it), whatever
the unsent tail held."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import takeover
from ledger.accounts import Pocket, System, pocket_id, system_id, unit_of
from ledger.book import replay
from ledger.invariants import check_balances_sum_to_zero, check_energy_matches_registers
from ledger.transfers import Code, Kind, TimeSource, Transfer

ACCOUNTS = ("A0001", "A0002")
METERS = {"M1": "A0001", "M2": "A0002"}
TIME = "2026-11-02T09:00:00+08:00"


def _t(ident: int, debit: str, credit: str, amount: int, code: Code, **refs: object) -> Transfer:
    return Transfer(
        id=ident, debit=debit, credit=credit, amount=amount, unit=unit_of(debit),  # type: ignore[arg-type]
        code=code, time=TIME, time_source=TimeSource.NTP, refs=refs,  # type: ignore[arg-type]
    )  # fmt: skip


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[Transfer], dict[str, int]]:
    """A chain of recharges, subsidies and consumption (paid, or booked as debt) with
    contiguous registers per meter; and each meter's first register."""
    regs = {m: draw(st.integers(0, 10**6)) for m in METERS}
    first = dict(regs)
    out: list[Transfer] = []
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from(["recharge", "subsidy", "consume", "debt"]),
                      st.sampled_from(sorted(METERS)), st.integers(1, 5_000)),
            max_size=25,
        )
    )  # fmt: skip
    periods: set[tuple[str, str]] = set()
    for n, (kind, meter, amount) in enumerate(steps, 1):
        owner = METERS[meter]
        if kind == "recharge":
            out.append(_t(n, system_id(System.CASH_IN_TRANSIT), pocket_id(owner, Pocket.PREPAID),
                          amount, Code.RECHARGE, payment=f"P{n}"))  # fmt: skip
        elif kind == "subsidy":
            period = f"2026-{10 + len(periods) % 3:02d}"
            if (owner, period) in periods:
                continue
            periods.add((owner, period))
            out.append(_t(n, system_id(System.SUBSIDY_ISSUED), pocket_id(owner, Pocket.SUBSIDY),
                          amount, Code.SUBSIDY_ISSUE, period=period))  # fmt: skip
        else:
            lo, hi = regs[meter], regs[meter] + amount
            regs[meter] = hi
            pocket = Pocket.SUBSIDY if kind == "consume" else Pocket.DEBT
            sink = System.SUBSIDY_USED if kind == "consume" else System.ENERGY_SALES
            debit = pocket_id(owner, pocket)
            refs: dict[str, object] = {"meter": meter, "reg_from": lo, "reg_to": hi,
                                       "energy_wh": amount}  # fmt: skip
            booked = amount
            if kind == "debt":
                refs["cost_cum"] = 0
                booked = max(1, amount // 10)  # fen
            out.append(_t(n, debit, system_id(sink), booked, Code.CONSUME, **refs))
    return out, first


@pytest.mark.slow  # about a second
@settings(max_examples=150, deadline=None)
@given(chains(), st.data())
def test_closings_and_openings_conserve_every_pocket_and_unit(
    chain: tuple[list[Transfer], dict[str, int]], data: st.DataObject
) -> None:
    transfers, first = chain
    cut = data.draw(st.integers(0, len(transfers)))
    acked = transfers[:cut]
    started = {m: (r, TIME) for m, r in first.items()}
    plan = takeover.plan(ACCOUNTS, METERS, acked, started)
    old = replay(acked)
    closings = takeover.closings("T", plan.openings, old_node="a", to_node="b", time=TIME)
    openings = takeover.openings("T", plan.openings, from_node="a", time=TIME,
                                 source=TimeSource.NTP)  # fmt: skip
    new_book = replay(openings)
    union = replay([*acked, *closings, *openings])
    assert check_balances_sum_to_zero(union.balances()) == []
    for account in ACCOUNTS:
        for pocket in Pocket:
            pid = pocket_id(account, pocket)
            held = old.balance(pid).posted
            assert new_book.balance(pid).posted == held  # the new box holds what was acked
            assert union.balance(pid).posted == held  # and the union counts it once
    for unit_account in takeover.TAKEOVER_ACCOUNT.values():
        assert union.balance(unit_account).posted == 0
    last = dict(first)
    for t in acked:
        if t.code is Code.CONSUME:
            last[str(t.refs["meter"])] = int(t.refs["reg_to"])
    assert {m.meter: m.reg for m in plan.meters} == last


@pytest.mark.slow  # about a second
@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_by_the_registers_every_meter_is_billed_once(
    first: int, acked: int, tail: int, new: int
) -> None:
    baseline = first + acked
    tail_span = takeover.MeterSpan("M1", baseline, baseline + tail, tail) if tail else None
    new_span = takeover.MeterSpan("M1", baseline, baseline + new, new) if new else None
    settled = takeover.settle_meter(baseline, tail_span, new_span)
    old_legs = [_t(1, pocket_id("A0001", Pocket.DEBT), system_id(System.ENERGY_SALES), 1,
                   Code.CONSUME, meter="M1", reg_from=first, reg_to=baseline,
                   energy_wh=acked, cost_cum=0)] if acked else []  # fmt: skip
    new_legs = [_t(2, pocket_id("A0001", Pocket.DEBT), system_id(System.ENERGY_SALES), 1,
                   Code.CONSUME, meter="M1", reg_from=baseline, reg_to=baseline + new,
                   energy_wh=new, cost_cum=0)] if new else []  # fmt: skip
    books = [*old_legs, *new_legs]
    assert check_energy_matches_registers(books) == []  # contiguous, no overlap
    billed = sum(int(t.refs["energy_wh"]) for t in books)
    assert billed == (baseline + new) - first == acked + settled.books_wh  # last − first
    assert settled.tail_wh == tail  # the tail is superseded, never in the books
    assert settled.uncovered_wh == max(0, tail - new)  # what the next reading still bills
    assert (
        settled.books_wh + settled.uncovered_wh >= settled.tail_wh
    )  # nothing the tail saw is lost


def test_a_span_that_does_not_start_at_the_baseline_is_refused() -> None:
    wrong = takeover.MeterSpan("M1", 5, 10, 5)
    try:
        takeover.settle_meter(4, wrong, None)
    except takeover.TakeoverRefused as exc:
        assert "not from the acknowledged register 4" in str(exc)
    else:
        raise AssertionError("a tail starting past the baseline was accepted")


def test_an_open_pending_blocks_the_plan() -> None:
    pending = Transfer(
        id=9, debit=pocket_id("A0001", Pocket.PREPAID), credit=system_id(System.REFUNDS_PAYABLE),
        amount=5, unit=unit_of(pocket_id("A0001", Pocket.PREPAID)), code=Code.REFUND, time=TIME,
        time_source=TimeSource.NTP, kind=Kind.PENDING,
    )  # fmt: skip
    recharge = _t(8, system_id(System.CASH_IN_TRANSIT), pocket_id("A0001", Pocket.PREPAID), 10,
                  Code.RECHARGE, payment="P")  # fmt: skip
    started = {m: (0, TIME) for m in METERS}
    try:
        takeover.plan(ACCOUNTS, METERS, [recharge, pending], started)
    except takeover.TakeoverRefused as exc:
        assert "unresolved" in str(exc)
    else:
        raise AssertionError("an unresolved pending was taken over")
