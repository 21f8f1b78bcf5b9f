"""The cloud's money commands (correction, refund, settle, move out / in) through the real
`CommandDesk` on a real runtime with simulated meters: exact entries, exactly once, refusals
that change nothing, a refund's grace that keeps power on and then runs out, a move across two
concentrators that sums to zero.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.drivers.reading import RelayState
from edge.rules.decisions import RelayCause
from edge.rules.pockets import Pockets
from edge.runtime.reconfigure import read_documents
from edge.store import CommandStatus
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.ids import derive_id
from ledger.invariants import ledger_violations
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind, Transfer
from tests.edge.sync.operations_kit import (
    Node,
    applied,
    by_id,
    refused,
    write_site,
)

HEX0 = "0" * 31 + "1"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    running = Node.boot(write_site(tmp_path / "a"))
    try:
        running.cycles(1)
        yield running
    finally:
        running.close()


def _sound(node: Node) -> None:
    assert ledger_violations(node.transfers(), node.store.book.balances()) == []


# -- correction ------------------------------------------------------------------------------
def test_a_correction_credits_or_debits_prepaid_once(node: Node) -> None:
    before = node.balance("A0001", Pocket.PREPAID).posted
    payload = node.command(
        CommandKind.CORRECTION,
        {
            "account": "A0001",
            "fen": 250,
            "correction": "C-1",
            "original": HEX0,
            "reason": "cashier typed 25 instead of 275",
        },
    )
    applied(node.desk.handle(payload))
    booked = by_id(node.transfers())[derive_id("correction", "C-1")]
    assert (booked.debit, booked.credit, booked.amount, booked.unit, booked.code) == (
        system_id(System.CORRECTIONS_FEN),
        pocket_id("A0001", Pocket.PREPAID),
        250,
        Unit.FEN,
        Code.CORRECTION,
    )
    assert booked.refs["correction"] == "C-1" and booked.refs["original"] == HEX0
    assert booked.refs["reason"] == "cashier typed 25 instead of 275"
    seq = node.store.chain.seq
    again = node.desk.handle(payload)
    assert again.outcome == "repeated" and node.store.chain.seq == seq
    applied(
        node.send(
            CommandKind.CORRECTION,
            {
                "account": "A0001",
                "fen": -100,
                "correction": "C-2",
                "original": HEX0,
                "reason": "double recharge",
            },
        )
    )
    debit = by_id(node.transfers())[derive_id("correction", "C-2")]
    assert (debit.debit, debit.credit, debit.amount) == (
        pocket_id("A0001", Pocket.PREPAID),
        system_id(System.CORRECTIONS_FEN),
        100,
    )
    assert node.balance("A0001", Pocket.PREPAID).posted == before + 150
    _sound(node)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"account": "A0001", "fen": -(10**8)}, ("below its floor",)),
        ({"account": "B9999", "fen": 100}, ("not on this concentrator",)),
        ({"account": "A0001", "fen": 0}, ("0 fen",)),
        ({"account": "A0001", "fen": 1.5}, ("fen must be an integer",)),
        ({"account": "A0001", "fen": 5, "original": "xyz"}, ("original",)),
    ],
)
def test_a_correction_that_cannot_be_booked_is_refused_and_changes_nothing(
    node: Node, args: dict[str, object], words: tuple[str, ...]
) -> None:
    before = node.snapshot()
    full = {"correction": "C-bad", "original": HEX0, "reason": "test", **args}
    refused(node.send(CommandKind.CORRECTION, full), *words)
    assert node.snapshot() == before


# -- refund, grace, settle -------------------------------------------------------------------
def test_a_refund_holds_the_available_prepaid_never_subsidy_and_issues_grace(
    tmp_path: Path,
) -> None:
    node = Node.boot(write_site(tmp_path / "s", subsidy=True))
    try:
        node.cycles(2)
        subsidy = node.balance("A0001", Pocket.SUBSIDY)
        assert subsidy.posted > 0  # the month's subsidy, partly used
        available = node.balance("A0001", Pocket.PREPAID).available
        until = node.clock.true_now() + dt.timedelta(hours=2)
        payload = node.command(
            CommandKind.REFUND,
            {
                "account": "A0001",
                "refund": "R-1",
                "grace_wh": 3000,
                "grace_until": until.isoformat(),
            },
        )
        applied(node.desk.handle(payload))
        found = by_id(node.transfers())
        held, grace = found[derive_id("refund", "R-1")], found[derive_id("grace", "R-1")]
        assert (held.kind, held.debit, held.credit, held.amount, held.code, held.linked) == (
            Kind.PENDING,
            pocket_id("A0001", Pocket.PREPAID),
            system_id(System.REFUNDS_PAYABLE),
            available,
            Code.REFUND,
            True,
        )
        assert (grace.kind, grace.debit, grace.credit, grace.amount, grace.code) == (
            Kind.SINGLE,
            system_id(System.GRACE_ISSUED),
            pocket_id("A0001", Pocket.GRACE),
            3000,
            Code.GRACE_ISSUE,
        )
        assert node.balance("A0001", Pocket.SUBSIDY) == subsidy  # never refunded
        assert node.balance("A0001", Pocket.PREPAID).available == 0
        seq = node.store.chain.seq
        assert node.desk.handle(payload).outcome == "repeated"
        assert node.store.chain.seq == seq
        before = node.snapshot()
        refused(
            node.send(
                CommandKind.REFUND,
                {
                    "account": "A0001",
                    "refund": "R-2",
                    "grace_wh": 0,
                    "grace_until": until.isoformat(),
                },
            ),
            "already pending",
        )
        assert node.snapshot() == before
        _sound(node)
    finally:
        node.close()


def test_grace_keeps_power_on_then_expires_and_arrears_trip(node: Node) -> None:
    meter = node.runtime.site.meters_of("A0001")[0].address
    until = node.clock.true_now() + dt.timedelta(hours=1)
    applied(
        node.send(
            CommandKind.REFUND,
            {
                "account": "A0001",
                "refund": "R-g",
                "grace_wh": 20_000,
                "grace_until": until.isoformat(),
            },
        )
    )
    assert node.runtime.accounts["A0001"].grace is not None
    node.cycles(4)  # the hour of grace: consumption paid from grace, power on
    grace_used = 20_000 - node.balance("A0001", Pocket.GRACE).posted
    assert grace_used > 0
    assert not node.runtime.accounts["A0001"].arrears.tripped
    assert node.runtime.meters[meter].relay.held == frozenset()
    left = node.balance("A0001", Pocket.GRACE).posted
    node.cycles(1)  # the clock has passed grace_until: the rest is cleared
    expired = by_id(node.transfers())[derive_id("grace-expire", "R-g")]
    assert (expired.debit, expired.credit, expired.code) == (
        pocket_id("A0001", Pocket.GRACE),
        system_id(System.GRACE_EXPIRED),
        Code.GRACE_EXPIRE,
    )
    assert 0 < expired.amount <= left
    assert node.balance("A0001", Pocket.GRACE).posted == 0
    assert node.runtime.accounts["A0001"].grace is None
    assert node.runtime.accounts["A0001"].arrears.tripped
    node.cycles(1)
    reading = node.store.latest_reading(meter)
    assert reading is not None and reading.reading.relay is RelayState.OPEN
    _sound(node)


def test_settle_posts_or_voids_a_refund_once(node: Node) -> None:
    now = node.clock.true_now().isoformat()
    prepaid = node.balance("A0002", Pocket.PREPAID).posted
    for owner, ref in (("A0001", "R-p"), ("A0002", "R-v")):
        applied(
            node.send(
                CommandKind.REFUND,
                {"account": owner, "refund": ref, "grace_wh": 0, "grace_until": now},
            )
        )
    post_hex = f"{derive_id('refund', 'R-p'):032x}"
    void_hex = f"{derive_id('refund', 'R-v'):032x}"
    pending = by_id(node.transfers())[derive_id("refund", "R-p")]
    payload = node.command(
        CommandKind.SETTLE, {"pending": post_hex, "action": "post", "reference": "R-p"}
    )
    applied(node.desk.handle(payload))
    posted = by_id(node.transfers())[derive_id("settle", post_hex, "post")]
    assert (posted.kind, posted.pending_id, posted.amount, posted.debit, posted.credit) == (
        Kind.POST,
        pending.id,
        pending.amount,
        pending.debit,
        pending.credit,
    )
    assert node.store.book.balance(system_id(System.REFUNDS_PAYABLE)).posted == pending.amount
    assert node.desk.handle(payload).outcome == "repeated"
    applied(
        node.send(CommandKind.SETTLE, {"pending": void_hex, "action": "void", "reference": "R-v"})
    )
    assert node.balance("A0002", Pocket.PREPAID).available == prepaid  # the money is back
    before = node.snapshot()
    refused(
        node.send(CommandKind.SETTLE, {"pending": post_hex, "action": "void", "reference": "R-p"}),
        "already posted",
    )
    refused(
        node.send(CommandKind.SETTLE, {"pending": "f" * 32, "action": "post", "reference": "R-p"}),
        "no pending transfer",
    )
    refused(
        node.send(CommandKind.SETTLE, {"pending": void_hex, "action": "post", "reference": "R-x"}),
        "not 'R-x'",
    )
    assert node.snapshot() == before
    _sound(node)


def _refund(node: Node, owner: str, ref: str, grace_wh: int, hours: int = 2) -> None:
    until = node.clock.true_now() + dt.timedelta(hours=hours)
    applied(
        node.send(
            CommandKind.REFUND,
            {
                "account": owner,
                "refund": ref,
                "grace_wh": grace_wh,
                "grace_until": until.isoformat(),
            },
        )
    )


def _settle(node: Node, ref: str, action: str) -> bytes:
    """The settle command of refund `ref`, once applied (the payload, to deliver again)."""
    pending = f"{derive_id('refund', ref):032x}"
    payload = node.command(
        CommandKind.SETTLE, {"pending": pending, "action": action, "reference": ref}
    )
    applied(node.desk.handle(payload))
    return payload


def _grace_clears(node: Node, owner: str) -> list[Transfer]:
    grace = pocket_id(owner, Pocket.GRACE)
    return [t for t in node.transfers() if t.code is Code.GRACE_EXPIRE and t.debit == grace]


def test_a_voided_refund_ends_its_grace_at_once(tmp_path: Path) -> None:
    site = write_site(tmp_path / "v")
    node = Node.boot(site)
    try:
        node.cycles(1)
        _refund(node, "A0001", "R-v", 20_000)
        node.cycles(2)  # the tenant lives on grace for a while
        left = node.balance("A0001", Pocket.GRACE).posted
        assert 0 < left < 20_000
        prepaid = node.balance("A0001", Pocket.PREPAID).available
        held = by_id(node.transfers())[derive_id("refund", "R-v")]
        payload = _settle(node, "R-v", "void")
        found = by_id(node.transfers())
        void = found[derive_id("settle", f"{held.id:032x}", "void")]
        end = found[derive_id("grace-end", "R-v")]
        assert (void.kind, void.pending_id, void.amount, void.linked) == (
            Kind.VOID,
            held.id,
            held.amount,
            True,  # one chain with the grace's end
        )
        assert (end.kind, end.debit, end.credit, end.amount, end.unit, end.code, end.linked) == (
            Kind.SINGLE,
            pocket_id("A0001", Pocket.GRACE),
            system_id(System.GRACE_EXPIRED),
            left,
            Unit.WH,
            Code.GRACE_EXPIRE,
            False,
        )
        assert end.refs["refund"] == "R-v" and end.refs["command"] == void.refs["command"]
        assert node.store.chain.seq == node.transfers().index(end) + 1  # booked last, together
        assert node.balance("A0001", Pocket.GRACE).posted == 0
        assert node.balance("A0001", Pocket.PREPAID).available == prepaid + held.amount
        assert node.runtime.accounts["A0001"].grace is None
        before = node.snapshot()
        assert node.desk.handle(payload).outcome == "repeated"
        assert node.snapshot() == before
        node.cycles(10)  # well past grace_until: nothing is left to expire
        assert _grace_clears(node, "A0001") == [end]
        assert derive_id("grace-expire", "R-v") not in by_id(node.transfers())
        assert node.balance("A0001", Pocket.GRACE).posted == 0
        _sound(node)
    finally:
        node.close()
    again = Node.boot(site)  # the end of the grace was stored with the void
    try:
        assert again.runtime.accounts["A0001"].grace is None
    finally:
        again.close()


def test_a_posted_refund_keeps_its_grace_until_its_time(node: Node) -> None:
    _refund(node, "A0001", "R-p", 20_000, hours=1)
    node.cycles(1)
    left = node.balance("A0001", Pocket.GRACE).posted
    _settle(node, "R-p", "post")
    hold = node.runtime.accounts["A0001"].grace
    assert hold is not None and hold.refund == "R-p"
    assert node.balance("A0001", Pocket.GRACE).posted == left
    assert _grace_clears(node, "A0001") == []
    node.cycles(4)  # past grace_until: the billing cycle clears what is left
    expired = by_id(node.transfers())[derive_id("grace-expire", "R-p")]
    assert _grace_clears(node, "A0001") == [expired]
    assert node.balance("A0001", Pocket.GRACE).posted == 0
    assert node.runtime.accounts["A0001"].grace is None
    _sound(node)


def test_a_void_leaves_the_grace_of_another_refund_running(node: Node) -> None:
    _refund(node, "A0001", "R-1", 20_000)
    _settle(node, "R-1", "post")  # paid out: its grace runs until its time
    applied(node.send(CommandKind.RECHARGE, {"account": "A0001", "fen": 5_000, "payment": "P-g"}))
    _refund(node, "A0001", "R-2", 0)  # no grace of its own: R-1's keeps running
    node.cycles(1)
    left = node.balance("A0001", Pocket.GRACE).posted
    _settle(node, "R-2", "void")
    hold = node.runtime.accounts["A0001"].grace
    assert hold is not None and hold.refund == "R-1"
    assert node.balance("A0001", Pocket.GRACE).posted == left
    assert _grace_clears(node, "A0001") == []
    _sound(node)


def test_a_refund_that_replaced_the_grace_ends_it_all_when_voided(node: Node) -> None:
    _refund(node, "A0001", "R-1", 20_000)
    _settle(node, "R-1", "post")
    applied(node.send(CommandKind.RECHARGE, {"account": "A0001", "fen": 5_000, "payment": "P-r"}))
    _refund(node, "A0001", "R-2", 3_000)  # replaces R-1's grace: the pocket holds both
    node.cycles(1)
    left = node.balance("A0001", Pocket.GRACE).posted
    assert left > 3_000
    _settle(node, "R-2", "void")
    end = by_id(node.transfers())[derive_id("grace-end", "R-2")]
    assert _grace_clears(node, "A0001") == [end] and end.amount == left
    assert node.runtime.accounts["A0001"].grace is None
    _sound(node)


def test_nothing_to_refund_is_refused(node: Node) -> None:
    now = node.clock.true_now().isoformat()
    applied(
        node.send(
            CommandKind.REFUND,
            {"account": "A0003", "refund": "R-a", "grace_wh": 0, "grace_until": now},
        )
    )
    applied(
        node.send(
            CommandKind.SETTLE,
            {"pending": f"{derive_id('refund', 'R-a'):032x}", "action": "post", "reference": "R-a"},
        )
    )
    before = node.snapshot()
    refused(
        node.send(
            CommandKind.REFUND,
            {"account": "A0003", "refund": "R-b", "grace_wh": 500, "grace_until": now},
        ),
        "nothing to refund",
    )
    assert node.snapshot() == before


def test_no_money_leaves_an_account_in_debt_until_a_cycle_has_paid_it_back(node: Node) -> None:
    poor = "A0004"  # 3 yuan: in debt within a day of shop hours
    while not Pockets.from_book(node.store.book, poor).debt_fen:
        node.cycles(1, dt.timedelta(hours=1))
    now = node.clock.true_now().isoformat()
    refund = {"account": poor, "refund": "R-debt", "grace_wh": 0, "grace_until": now}
    move = {"account": poor, "move": "M-debt", "to_node": "n-other"}
    before = node.snapshot()
    refused(node.send(CommandKind.REFUND, refund), "owes", "recharge first")
    refused(node.send(CommandKind.MOVE_OUT, move), "owes", "recharge first")
    assert node.snapshot() == before
    owed = Pockets.from_book(node.store.book, poor).debt_fen
    assert node.runtime.recharge(poor, 1_000, "PAY-debt")
    node.cycles(1)  # pays the debt back first
    pockets = Pockets.from_book(node.store.book, poor)
    assert pockets.debt_fen == 0 and pockets.prepaid_fen <= 1_000 - owed
    applied(node.send(CommandKind.REFUND, {**refund, "refund": "R-debt-2"}))
    _sound(node)


# -- moves -----------------------------------------------------------------------------------
def test_a_move_out_then_in_across_two_concentrators_sums_to_zero(tmp_path: Path) -> None:
    home = Node.boot(write_site(tmp_path / "home", subsidy=True))
    away = Node.boot(write_site(tmp_path / "away"))
    try:
        home.cycles(2)
        away.cycles(1)
        meter = home.runtime.site.meters_of("A0002")[0].address
        fen = home.balance("A0002", Pocket.PREPAID).available
        subsidy = home.balance("A0002", Pocket.SUBSIDY).available
        assert fen > 0 and subsidy > 0
        payload = home.command(
            CommandKind.MOVE_OUT, {"account": "A0002", "move": "M-1", "to_node": "away"}
        )
        applied(home.desk.handle(payload))
        found = by_id(home.transfers())
        out, expire = found[derive_id("move-out", "M-1")], found[derive_id("move-expire", "M-1")]
        assert (out.kind, out.debit, out.credit, out.amount, out.code, out.linked) == (
            Kind.PENDING,
            pocket_id("A0002", Pocket.PREPAID),
            system_id(System.MOVES_IN_TRANSIT),
            fen,
            Code.MOVE,
            True,
        )
        assert (expire.debit, expire.credit, expire.amount, expire.code) == (
            pocket_id("A0002", Pocket.SUBSIDY),
            system_id(System.SUBSIDY_EXPIRED),
            subsidy,
            Code.SUBSIDY_EXPIRE,
        )
        assert home.desk.handle(payload).outcome == "repeated"
        # The account is gone from this node: not billed, commands refused, the shop vacant.
        seq = home.store.chain.seq
        home.cycles(2)
        assert [t for t in home.transfers()[seq:] if t.debit.startswith("A0002:")] == []
        assert RelayCause.VACANT in home.runtime.meters[meter].relay.held
        reading = home.store.latest_reading(meter)
        assert reading is not None and reading.reading.relay is RelayState.OPEN
        refused(
            home.send(CommandKind.RECHARGE, {"account": "A0002", "fen": 100, "payment": "P-m"}),
            "moved out",
        )
        applied(
            home.send(
                CommandKind.SETTLE,
                {"pending": f"{out.id:032x}", "action": "post", "reference": "M-1"},
            )
        )
        before = away.snapshot()
        refused(
            away.send(
                CommandKind.MOVE_IN,
                {"account": "B0002", "move": "M-1", "fen": fen, "from_node": "home"},
            ),
            "config command first",
        )
        assert away.snapshot() == before
        arriving = away.balance("A0004", Pocket.PREPAID).posted
        applied(
            away.send(
                CommandKind.MOVE_IN,
                {"account": "A0004", "move": "M-1", "fen": fen, "from_node": "home"},
            )
        )
        came = by_id(away.transfers())[derive_id("move-in", "M-1")]
        assert (came.debit, came.credit, came.amount, came.code) == (
            system_id(System.MOVES_IN_TRANSIT),
            pocket_id("A0004", Pocket.PREPAID),
            fen,
            Code.MOVE,
        )
        assert away.balance("A0004", Pocket.PREPAID).posted == arriving + fen
        transit = system_id(System.MOVES_IN_TRANSIT)
        assert (
            home.store.book.balance(transit).posted + away.store.book.balance(transit).posted == 0
        )
        _sound(home)
        _sound(away)
    finally:
        home.close()
        away.close()


def test_a_voided_move_out_brings_the_tenant_back(node: Node) -> None:
    fen = node.balance("A0003", Pocket.PREPAID).available
    meter = node.runtime.site.meters_of("A0003")[0].address
    applied(node.send(CommandKind.MOVE_OUT, {"account": "A0003", "move": "M-v", "to_node": "x"}))
    assert node.runtime.accounts["A0003"].moved_out == "M-v"
    node.cycles(1)
    assert RelayCause.VACANT in node.runtime.meters[meter].relay.held
    pending = f"{derive_id('move-out', 'M-v'):032x}"
    result = applied(
        node.send(CommandKind.SETTLE, {"pending": pending, "action": "void", "reference": "M-v"})
    ).result
    assert result is not None and result.status is CommandStatus.APPLIED
    assert node.runtime.accounts["A0003"].moved_out is None
    assert node.balance("A0003", Pocket.PREPAID).available == fen
    node.cycles(2)
    assert RelayCause.VACANT not in node.runtime.meters[meter].relay.held
    reading = node.store.latest_reading(meter)
    assert reading is not None and reading.reading.relay is RelayState.CLOSED
    _sound(node)


def test_a_move_out_ends_a_running_grace(node: Node) -> None:
    meter = node.runtime.site.meters_of("A0003")[0].address
    _refund(node, "A0003", "R-m", 20_000)
    _settle(node, "R-m", "post")  # paid out, power on for the grace period
    node.cycles(1)
    left = node.balance("A0003", Pocket.GRACE).posted
    assert left > 0
    payload = node.command(
        CommandKind.MOVE_OUT, {"account": "A0003", "move": "M-g", "to_node": "x"}
    )
    applied(node.desk.handle(payload))
    end = by_id(node.transfers())[derive_id("grace-end", "R-m")]
    assert (end.debit, end.credit, end.amount, end.code, end.linked) == (
        pocket_id("A0003", Pocket.GRACE),
        system_id(System.GRACE_EXPIRED),
        left,
        Code.GRACE_EXPIRE,
        False,
    )
    assert (end.refs["refund"], end.refs["move"]) == ("R-m", "M-g")
    state = node.runtime.accounts["A0003"]
    assert (state.grace, state.moved_out) == (None, "M-g")
    assert node.balance("A0003", Pocket.GRACE).posted == 0
    before = node.snapshot()
    assert node.desk.handle(payload).outcome == "repeated"
    assert node.snapshot() == before
    node.cycles(10)  # past grace_until, the shop vacant
    assert _grace_clears(node, "A0003") == [end]
    assert RelayCause.VACANT in node.runtime.meters[meter].relay.held
    _sound(node)


def _issues(node: Node, account: str) -> list[str]:
    return [
        str(t.refs["period"])
        for t in node.transfers()
        if t.code is Code.SUBSIDY_ISSUE and t.credit == pocket_id(account, Pocket.SUBSIDY)
    ]


@pytest.mark.parametrize("carried", [True, False])
def test_a_tenant_moving_in_brings_the_subsidy_periods_it_was_issued(
    tmp_path: Path, carried: bool
) -> None:
    """Once per account per period holds across concentrators: the move_in names the periods
    issued at the source and the destination issues none of them (an old move_in without them
    still applies, and the destination then issues the period: what the cloud now prevents)."""
    home = Node.boot(write_site(tmp_path / "home", subsidy=True))
    away = Node.boot(write_site(tmp_path / "away", subsidy=True))
    try:
        home.cycles(2)
        (period,) = _issues(home, "A0002")
        applied(home.send(CommandKind.MOVE_OUT, {"account": "A0002", "move": "M-s",
                                                 "to_node": "away"}))  # fmt: skip
        args: dict[str, object] = {"account": "A0004", "move": "M-s", "fen": 100,
                                   "from_node": "home"}  # fmt: skip
        if carried:
            args["subsidy_periods"] = [period]
        applied(away.send(CommandKind.MOVE_IN, args))
        away.cycles(2)
        assert _issues(away, "A0004") == ([] if carried else [period])
        assert _issues(away, "A0003") == [period]  # the tenants who did not move get theirs
    finally:
        home.close()
        away.close()


@pytest.mark.parametrize("carried", [True, False])
def test_an_arriving_tenants_subsidy_waits_for_its_move_in_even_of_nothing(
    tmp_path: Path, carried: bool
) -> None:
    """The destination's configuration names A0004 `arriving` by move M-h: its billing cycle
    issues it no subsidy until that move_in, which carries no money (fen 0: nothing to carry)
    and the periods issued at the source (without them the hold still ends, and the period is
    issued: what the cloud prevents by always sending them)."""
    home = Node.boot(write_site(tmp_path / "home", subsidy=True))
    away = Node.boot(write_site(tmp_path / "away", subsidy=True))
    try:
        home.cycles(2)
        (period,) = _issues(home, "A0002")
        docs = copy.deepcopy(read_documents(away.runtime.site))
        for account in docs["accounts"]:
            if account["id"] == "A0004":
                account["arriving"] = "M-h"
        applied(away.send(CommandKind.CONFIG, {"version": 1, "documents": docs}))
        away.cycles(2)
        assert _issues(away, "A0004") == []  # held
        assert _issues(away, "A0003") == [period]  # the tenants who are not arriving get theirs
        other = {"account": "A0004", "move": "M-other", "fen": 0, "from_node": "home"}
        applied(away.send(CommandKind.MOVE_IN, other))  # another move does not end the hold
        away.cycles(1)
        assert _issues(away, "A0004") == []
        seq = away.store.chain.seq
        args: dict[str, object] = {"account": "A0004", "move": "M-h", "fen": 0,
                                   "from_node": "home"}  # fmt: skip
        if carried:
            args["subsidy_periods"] = [period]
        applied(away.send(CommandKind.MOVE_IN, args))
        assert away.store.chain.seq == seq  # 0 fen: nothing booked
        assert away.runtime.accounts["A0004"].arrived == "M-h"
        away.cycles(2)
        assert _issues(away, "A0004") == ([] if carried else [period])
        _sound(away)
    finally:
        home.close()
        away.close()


@pytest.mark.parametrize(("arriving", "words"), [("bad ref!", "move reference"), (7, "arriving")])
def test_a_configuration_with_a_malformed_arriving_move_is_refused(
    node: Node, arriving: object, words: str
) -> None:
    docs = copy.deepcopy(read_documents(node.runtime.site))
    docs["accounts"][0]["arriving"] = arriving
    before = node.snapshot()
    refused(node.send(CommandKind.CONFIG, {"version": 1, "documents": docs}), words)
    assert node.snapshot() == before


def test_a_move_in_of_negative_fen_is_refused(node: Node) -> None:
    before = node.snapshot()
    refused(
        node.send(CommandKind.MOVE_IN, {"account": "A0003", "move": "M-n", "fen": -1,
                                        "from_node": "home"}),
        "fen",
    )  # fmt: skip
    assert node.snapshot() == before


@pytest.mark.parametrize("periods", ["2026-11", ["2026-13"], ["2026-1"], [11], ["2026-11"] * 241])
def test_a_move_in_with_malformed_subsidy_periods_is_refused(node: Node, periods: object) -> None:
    before = node.snapshot()
    refused(
        node.send(CommandKind.MOVE_IN, {"account": "A0003", "move": "M-x", "fen": 100,
                                        "from_node": "home", "subsidy_periods": periods}),
        "subsidy_periods",
    )  # fmt: skip
    assert node.snapshot() == before
