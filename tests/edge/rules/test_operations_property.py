"""Properties of the operation rules (`edge.rules.operations`), checked on a real book.

Any sequence of recharges, subsidy issues, corrections, refunds (with or without grace), settles,
grace expiries, move outs and move ins on two tenants: every decision's amounts are positive and
never more than the debited pocket could spend (its *available* balance, within its floor), units
follow the accounts, the book accepts each decision whole (never `exceeds_floor`, never a repeat), a
redelivery is `exists`, and the ledger invariants (docs/architecture.md §5.6) hold after every step.
A rule refuses exactly when its documented condition holds. Ids come from the reference alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from edge.rules.operations import (
    OperationRefused,
    Stamp,
    correction,
    grace_end,
    grace_expiry,
    move_in,
    move_out,
    open_pendings,
    refund,
    settle,
)
from ledger.accounts import AccountId, Pocket, is_system, pocket_id, unit_of
from ledger.book import Balance, Outcome
from ledger.ids import derive_id
from ledger.transfers import Code, Kind
from tests.edge.rules.helpers import SOURCE, Ledger
from tests.edge.rules.test_operations import (
    GRACE,
    IN_TRANSIT,
    OWNER,
    PREPAID,
    RULE_STAMP,
    STAMP,
    SUBSIDY,
    UNTIL,
    Decision,
    as_tuple,
    balance,
    hex_of,
)
from tests.ledger.factories import CASH, ISSUED, T0, transfer

OWNERS = ("A1", "B2")
owners = st.sampled_from(OWNERS)
references = st.text("abcdefgh0123456789-", min_size=1, max_size=12)
balances = st.builds(
    balance, st.integers(-50_000, 50_000), st.integers(0, 20_000)
)  # posted (a debt below 0) and the part of it reserved by pending debits

steps = st.lists(
    st.one_of(
        st.tuples(st.just("recharge"), owners, st.integers(1, 20_000)),
        st.tuples(st.just("subsidy"), owners, st.integers(1, 5_000)),
        st.tuples(st.just("correction"), owners, st.integers(-30_000, 30_000)),
        st.tuples(st.just("refund"), owners, st.sampled_from([0, 1, 700, 3_000])),
        st.tuples(st.just("settle"), st.sampled_from([Kind.POST, Kind.VOID]), st.integers(0, 3)),
        st.tuples(st.just("grace_expiry"), owners),
        st.tuples(st.just("move_out"), owners),
        st.tuples(st.just("move_in"), owners, st.integers(-10, 9_000)),
    ),
    max_size=20,
)


class Site:
    """A real book for two tenants plus what the runtime would remember: whose grace runs."""

    def __init__(self, credit_limit: int) -> None:
        self.ledger = Ledger(*OWNERS, credit_limit=credit_limit)
        self.floor = -credit_limit
        self.grace_of: dict[str, str] = {}  # owner -> the refund whose grace runs
        self.n = 0

    def pocket(self, owner: str, pocket: Pocket) -> Balance:
        return self.ledger.book.balance(pocket_id(owner, pocket))

    def book(self, decide: Callable[[], Decision]) -> None:
        """Decide, check the decision against the book as it was, book it, check the book."""
        before = self.ledger.book.balances()
        decided = as_tuple(decide())
        assert as_tuple(decide()) == decided  # pure: the same facts, the same decision
        debited: dict[AccountId, int] = {}
        for t in decided:
            assert t.amount > 0
            assert t.debit != t.credit
            assert t.unit is unit_of(t.debit) is unit_of(t.credit)
            if t.kind in (Kind.SINGLE, Kind.PENDING) and not is_system(t.debit):
                debited[t.debit] = debited.get(t.debit, 0) + t.amount
            if t.kind in (Kind.POST, Kind.VOID):
                pending = self.ledger.book.get(t.pending_id or 0)
                assert pending is not None and t.amount == pending.amount
        for account, amount in debited.items():
            opened = self.ledger.book.account(account)
            assert opened is not None and opened.floor is not None  # a merchant pocket
            assert before[account].available - amount >= opened.floor
        assert len({t.id for t in decided}) == len(decided)
        assert [t.linked for t in decided] == [i < len(decided) - 1 for i in range(len(decided))]
        outcomes = self.ledger.post(decided)
        assert outcomes == [Outcome.OK] * len(decided)  # never a floor, never a repeat
        assert self.ledger.book.submit(decided) == [Outcome.EXISTS] * len(decided)
        self.ledger.assert_sound()


def run_step(site: Site, step: tuple[Any, ...]) -> None:
    site.n += 1
    n = site.n
    stamp = Stamp(T0, SOURCE, f"CMD-{n}")
    kind, *args = step
    book = site.ledger.book
    if kind == "recharge":
        owner, fen = args
        site.book(
            lambda: transfer(derive_id("pay", n), CASH, pocket_id(owner, Pocket.PREPAID), fen)
        )
    elif kind == "subsidy":
        owner, wh = args
        issue = transfer(derive_id("sub", n), ISSUED, pocket_id(owner, Pocket.SUBSIDY), wh)
        site.book(lambda: issue)
    elif kind == "correction":
        owner, fen = args
        prepaid = site.pocket(owner, Pocket.PREPAID)
        refused = fen == 0 or (fen < 0 and prepaid.available + fen < site.floor)
        with _refused_if(refused):
            site.book(
                lambda: correction(
                    stamp,
                    account=owner,
                    fen=fen,
                    reference=f"C{n}",
                    original="ab" * 16,
                    reason="property",
                    prepaid=prepaid,
                    floor=site.floor,
                )
            )
    elif kind == "refund":
        owner, grace_wh = args
        prepaid = site.pocket(owner, Pocket.PREPAID)
        waiting = open_pendings(book.unresolved(), pocket_id(owner, Pocket.PREPAID), Code.REFUND)
        with _refused_if(bool(waiting) or prepaid.available <= 0):
            site.book(
                lambda: refund(
                    stamp,
                    account=owner,
                    reference=f"R{n}",
                    grace_wh=grace_wh,
                    grace_until=UNTIL,
                    prepaid=prepaid,
                    pending=list(book.unresolved()),
                )
            )
            assert site.pocket(owner, Pocket.PREPAID).available == 0  # all of it, pending
            if grace_wh:
                site.grace_of[owner] = f"R{n}"
    elif kind == "settle":
        action, index = args
        open_ = list(book.unresolved())
        if not open_:
            return
        pending = open_[index % len(open_)]
        ref = str(pending.refs.get("refund", pending.refs.get("move")))
        owner = pending.debit.partition(":")[0]
        grace = None
        if action is Kind.VOID and pending.code is Code.REFUND and site.grace_of.get(owner) == ref:
            grace = site.pocket(owner, Pocket.GRACE)
            del site.grace_of[owner]
            event("a void ends a running grace")
        site.book(
            lambda: settle(
                stamp,
                pending=pending,
                pending_hex=hex_of(pending),
                action=action,
                reference=ref,
                resolved=book.resolution(pending.id),
                grace=grace,
            )
        )
        assert book.resolution(pending.id) is action
        if grace is not None:
            assert site.pocket(owner, Pocket.GRACE).available == 0
    elif kind == "grace_expiry":
        (owner,) = args
        running = site.grace_of.pop(owner, None)
        if running is None:
            return
        grace = site.pocket(owner, Pocket.GRACE)
        site.book(lambda: grace_expiry(RULE_STAMP, account=owner, reference=running, grace=grace))
        assert site.pocket(owner, Pocket.GRACE).available == 0
    elif kind == "move_out":
        (owner,) = args
        prepaid = site.pocket(owner, Pocket.PREPAID)
        subsidy = site.pocket(owner, Pocket.SUBSIDY)
        running = site.grace_of.get(owner)
        grace = None if running is None else (running, site.pocket(owner, Pocket.GRACE))
        if grace is not None:
            event("a move out ends a running grace")
        with _refused_if(prepaid.available < 0):
            site.book(
                lambda: move_out(
                    stamp,
                    account=owner,
                    reference=f"M{n}",
                    to_node="edge-2",
                    prepaid=prepaid,
                    subsidy=subsidy,
                    grace=grace,
                )
            )
            site.grace_of.pop(owner, None)
            for pocket in Pocket:  # everything it could spend has left or is in transit
                assert site.pocket(owner, pocket).available == 0
    else:
        owner, fen = args
        with _refused_if(fen <= 0):
            site.book(
                lambda: move_in(
                    stamp, account=owner, reference=f"MI{n}", fen=fen, from_node="edge-0"
                )
            )


class _refused_if:  # noqa: N801 (reads as a `with` clause)
    """Expect `OperationRefused` exactly when `refused`; the book must then be unchanged."""

    def __init__(self, refused: bool) -> None:
        self.refused = refused

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        if kind is None:
            assert not self.refused, "the rule decided where it should have refused"
        elif kind is OperationRefused:
            assert self.refused, "the rule refused where it should have decided"
            event("refused")
            return True
        return False  # anything else (a failed check) propagates


@settings(max_examples=100, deadline=None)
@given(
    opening=st.lists(st.tuples(st.just("recharge"), owners, st.integers(1, 20_000)), max_size=2),
    steps=steps,
    credit_limit=st.sampled_from([0, 2_000]),
)
def test_any_sequence_books_cleanly_and_respects_the_floors(
    opening: list[tuple[Any, ...]], steps: list[tuple[Any, ...]], credit_limit: int
) -> None:
    site = Site(credit_limit)
    for step in opening + steps:
        run_step(site, step)
    for account in site.ledger.book.accounts():
        if account.floor is not None:
            assert site.ledger.book.balance(account.id).available >= account.floor


def _roles(decided: Decision) -> dict[tuple[Code, Kind], int]:
    """Each leg's id by its role in the table (code and kind are unique within a decision)."""
    return {(t.code, t.kind): t.id for t in as_tuple(decided)}


def _refused_or(decide: Callable[[], Decision]) -> Decision:
    try:
        result = decide()
    except OperationRefused:
        return None
    return result


@settings(max_examples=100, deadline=None)
@given(
    reference=references,
    other=references,
    facts=st.tuples(balances, balances, balances),
    again=st.tuples(balances, balances, balances),
    amounts=st.tuples(st.integers(-9_000, 9_000), st.integers(1, 9_000)),
)
def test_ids_come_from_the_reference_alone(
    reference: str,
    other: str,
    facts: tuple[Balance, Balance, Balance],
    again: tuple[Balance, Balance, Balance],
    amounts: tuple[int, int],
) -> None:
    """A redelivery (another command id, other balances by then) derives the same ids, so the
    book answers `exists` or `id_conflict`, never books twice; another reference, other ids."""
    fen, wh = amounts

    def decisions(
        ref: str, stamp: Stamp, prepaid: Balance, subsidy: Balance, grace: Balance
    ) -> list[Decision]:
        return [
            _refused_or(
                lambda: correction(
                    stamp,
                    account=OWNER,
                    fen=fen,
                    reference=ref,
                    original="ab" * 16,
                    reason="r",
                    prepaid=prepaid,
                    floor=-10_000,
                )
            ),
            _refused_or(
                lambda: refund(
                    stamp,
                    account=OWNER,
                    reference=ref,
                    grace_wh=wh,
                    grace_until=UNTIL,
                    prepaid=prepaid,
                    pending=[],
                )
            ),
            grace_expiry(stamp, account=OWNER, reference=ref, grace=grace),
            grace_end(stamp, account=OWNER, reference=ref, grace=grace),
            _refused_or(
                lambda: move_out(
                    stamp,
                    account=OWNER,
                    reference=ref,
                    to_node="n",
                    prepaid=prepaid,
                    subsidy=subsidy,
                    grace=(ref, grace),
                )
            ),
            move_in(stamp, account=OWNER, reference=ref, fen=wh, from_node="n"),
        ]

    first = decisions(reference, STAMP, *facts)
    repeat = decisions(reference, Stamp("2027-01-01T00:00:00+08:00", SOURCE, "CMD-2"), *again)
    for a, b in zip(first, repeat, strict=True):
        ids_a, ids_b = _roles(a), _roles(b)
        for role in ids_a.keys() & ids_b.keys():
            assert ids_a[role] == ids_b[role]
    if other != reference:
        elsewhere = decisions(other, STAMP, *facts)
        for a, b in zip(first, elsewhere, strict=True):
            assert not set(_roles(a).values()) & set(_roles(b).values())


@settings(max_examples=100, deadline=None)
@given(prepaid=balances, subsidy=balances, grace=balances, grace_wh=st.integers(0, 5_000))
def test_refund_and_move_out_take_exactly_what_is_available(
    prepaid: Balance, subsidy: Balance, grace: Balance, grace_wh: int
) -> None:
    """Never more than the pocket could spend (posted less reserved), never less, never the
    subsidy as money, and nothing at all from a pocket with nothing available."""
    refunded = _refused_or(
        lambda: refund(
            STAMP,
            account=OWNER,
            reference="R1",
            grace_wh=grace_wh,
            grace_until=UNTIL,
            prepaid=prepaid,
            pending=[],
        )
    )
    if prepaid.available <= 0:
        assert refunded is None
    else:
        legs = as_tuple(refunded)
        assert [(t.debit, t.amount) for t in legs if t.unit is unit_of(PREPAID)] == [
            (PREPAID, prepaid.available)
        ]
        assert sum(t.amount for t in legs if t.credit == GRACE) == grace_wh

    moved = _refused_or(
        lambda: move_out(
            STAMP,
            account=OWNER,
            reference="M1",
            to_node="n",
            prepaid=prepaid,
            subsidy=subsidy,
            grace=("R0", grace),
        )
    )
    if prepaid.available < 0:
        assert moved is None
        return
    taken = {t.debit: t.amount for t in as_tuple(moved)}
    expected = {
        account: pocket.available
        for account, pocket in ((PREPAID, prepaid), (SUBSIDY, subsidy), (GRACE, grace))
        if pocket.available > 0
    }
    assert taken == expected
    fen_legs = [t for t in as_tuple(moved) if t.unit is unit_of(PREPAID)]
    assert all(t.debit == PREPAID and t.credit == IN_TRANSIT for t in fen_legs)
