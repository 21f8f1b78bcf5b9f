"""The money rules of the cloud's operation commands (`edge.rules.operations`), on their own.

The table restates the module docstring's table row by row: which accounts a command debits and
credits, the kind, the linked flags of a chain, the amount (an *available* balance: posted less
pending debits), the id derived from the documented names and the refs (with `command`). Then
every refusal with its message. The properties, on a real book, are in
`test_operations_property.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import pytest

from edge.rules.errors import RuleError
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
from ledger.accounts import AccountId, Pocket, System, pocket_id, system_id, unit_of
from ledger.book import Balance
from ledger.ids import derive_id
from ledger.transfers import Code, Kind, RefValue, Transfer
from tests.edge.rules.helpers import SOURCE
from tests.ledger.factories import T0, transfer

OWNER = "A1"
COMMAND = "CMD-1"
STAMP = Stamp(T0, SOURCE, COMMAND)
RULE_STAMP = Stamp(T0, SOURCE)  # a rule's own decision (a grace running out): no command
UNTIL = "2026-11-08T00:00:00+08:00"
ORIGINAL = "ab" * 16

PREPAID = pocket_id(OWNER, Pocket.PREPAID)
SUBSIDY = pocket_id(OWNER, Pocket.SUBSIDY)
GRACE = pocket_id(OWNER, Pocket.GRACE)
CORRECTIONS = system_id(System.CORRECTIONS_FEN)
REFUNDS = system_id(System.REFUNDS_PAYABLE)
GRACE_ISSUED = system_id(System.GRACE_ISSUED)
GRACE_EXPIRED = system_id(System.GRACE_EXPIRED)
SUBSIDY_EXPIRED = system_id(System.SUBSIDY_EXPIRED)
IN_TRANSIT = system_id(System.MOVES_IN_TRANSIT)

SINGLE, PENDING, POST, VOID = Kind.SINGLE, Kind.PENDING, Kind.POST, Kind.VOID

Decision = Transfer | tuple[Transfer, ...] | None


def balance(posted: int, pending_debits: int = 0) -> Balance:
    """A pocket holding `posted` (negative: a debt) with `pending_debits` reserved."""
    return Balance(
        debits_pending=pending_debits,
        debits_posted=max(-posted, 0),
        credits_posted=max(posted, 0),
    )


def as_tuple(decided: Decision) -> tuple[Transfer, ...]:
    if decided is None:
        return ()
    return decided if isinstance(decided, tuple) else (decided,)


def hex_of(t: Transfer) -> str:
    return f"{t.id:032x}"


EMPTY = Balance()
# 3800 fen posted, 300 of it reserved by an earlier pending transfer: 3500 can still be spent.
PREPAID_3500 = balance(3800, pending_debits=300)


def pending_refund(reference: str = "R1", amount: int = 3500, owner: str = OWNER) -> Transfer:
    pocket = pocket_id(owner, Pocket.PREPAID)
    refs: dict[str, RefValue] = {"refund": reference}
    return transfer(
        derive_id("refund", reference),
        pocket,
        REFUNDS,
        amount,
        Code.REFUND,
        kind=PENDING,
        refs=refs,
    )


def pending_move(reference: str = "M1", amount: int = 3500) -> Transfer:
    refs: dict[str, RefValue] = {"move": reference, "to_node": "edge-2"}
    return transfer(
        derive_id("move-out", reference),
        PREPAID,
        IN_TRANSIT,
        amount,
        Code.MOVE,
        kind=PENDING,
        refs=refs,
    )


# -- the rules with this file's defaults: each case names only what it is about ---------------


def correct(fen: int, prepaid: Balance = PREPAID_3500, floor: int = 0) -> Decision:
    return correction(
        STAMP,
        account=OWNER,
        fen=fen,
        reference="C1",
        original=ORIGINAL,
        reason="typo",
        prepaid=prepaid,
        floor=floor,
    )


def refund_r1(
    grace_wh: int = 0, prepaid: Balance = PREPAID_3500, pending: Iterable[Transfer] = ()
) -> Decision:
    return refund(
        STAMP,
        account=OWNER,
        reference="R1",
        grace_wh=grace_wh,
        grace_until=UNTIL,
        prepaid=prepaid,
        pending=pending,
    )


def settle_of(
    pending: Transfer | None,
    action: Kind,
    reference: str,
    resolved: Kind | None = None,
    grace: Balance | None = None,
) -> Decision:
    hex_id = hex_of(pending if pending is not None else pending_refund())
    return settle(
        STAMP,
        pending=pending,
        pending_hex=hex_id,
        action=action,
        reference=reference,
        resolved=resolved,
        grace=grace,
    )


def move_out_m1(
    prepaid: Balance = PREPAID_3500,
    subsidy: Balance = EMPTY,
    grace: tuple[str, Balance] | None = None,
) -> Decision:
    return move_out(
        STAMP,
        account=OWNER,
        reference="M1",
        to_node="edge-2",
        prepaid=prepaid,
        subsidy=subsidy,
        grace=grace,
    )


# -- the table ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leg:
    """What one transfer of a decision must be."""

    debit: AccountId
    credit: AccountId
    amount: int
    kind: Kind
    code: Code
    id: int
    linked: bool
    refs: Mapping[str, RefValue]
    pending_id: int | None = None


def leg_of(t: Transfer) -> Leg:
    return Leg(
        t.debit, t.credit, t.amount, t.kind, t.code, t.id, t.linked, dict(t.refs), t.pending_id
    )


R1_HEX, M1_HEX = hex_of(pending_refund()), hex_of(pending_move())
R1_PENDING, M1_PENDING = pending_refund().id, pending_move().id
ID_C1 = derive_id("correction", "C1")
C1_REFS = {"correction": "C1", "original": ORIGINAL, "reason": "typo", "command": COMMAND}
R1_REFS = {"refund": "R1", "command": COMMAND}
M1_REFS = {"move": "M1", "to_node": "edge-2", "command": COMMAND}
POST_R1 = {"refund": "R1", "pending": R1_HEX, "command": COMMAND}
POST_M1 = {"move": "M1", "pending": M1_HEX, "command": COMMAND}
ID_POST_R1 = derive_id("settle", R1_HEX, "post")
ID_VOID_R1 = derive_id("settle", R1_HEX, "void")
ID_POST_M1 = derive_id("settle", M1_HEX, "post")
ID_VOID_M1 = derive_id("settle", M1_HEX, "void")

REFUND_R1 = Leg(
    PREPAID, REFUNDS, 3500, PENDING, Code.REFUND, derive_id("refund", "R1"), False, R1_REFS
)
POSTED_R1 = Leg(PREPAID, REFUNDS, 3500, POST, Code.REFUND, ID_POST_R1, False, POST_R1, R1_PENDING)
VOIDED_R1 = Leg(PREPAID, REFUNDS, 3500, VOID, Code.REFUND, ID_VOID_R1, False, POST_R1, R1_PENDING)
MOVE_OUT_M1 = Leg(
    PREPAID, IN_TRANSIT, 3500, PENDING, Code.MOVE, derive_id("move-out", "M1"), False, M1_REFS
)
R1_GRACE_ENDS = Leg(
    GRACE,
    GRACE_EXPIRED,
    600,
    SINGLE,
    Code.GRACE_EXPIRE,
    derive_id("grace-end", "R1"),
    False,
    R1_REFS,
)


def linked(leg: Leg) -> Leg:
    return dataclasses.replace(leg, linked=True)


# (what the case shows, the call, the legs it must decide, in order)
# fmt: off
CASES: list[tuple[str, Callable[[], Decision], list[Leg]]] = [
    (
        "correction credits the prepaid pocket from sys:corrections_fen",
        lambda: correct(+700, prepaid=balance(0)),
        [Leg(CORRECTIONS, PREPAID, 700, SINGLE, Code.CORRECTION, ID_C1, False, C1_REFS)],
    ),
    (
        "correction debits the prepaid pocket to sys:corrections_fen",
        lambda: correct(-700),
        [Leg(PREPAID, CORRECTIONS, 700, SINGLE, Code.CORRECTION, ID_C1, False, C1_REFS)],
    ),
    (
        "correction may debit exactly down to the floor (of what is available)",
        lambda: correct(-3500),
        [Leg(PREPAID, CORRECTIONS, 3500, SINGLE, Code.CORRECTION, ID_C1, False, C1_REFS)],
    ),
    (
        "correction may use a credit limit (a floor below zero)",
        lambda: correct(-4500, floor=-1000),
        [Leg(PREPAID, CORRECTIONS, 4500, SINGLE, Code.CORRECTION, ID_C1, False, C1_REFS)],
    ),
    (
        "refund without grace: the available prepaid, pending, alone",
        refund_r1,
        [REFUND_R1],
    ),
    (
        "refund with grace: the pending refund linked to the grace issue",
        lambda: refund_r1(grace_wh=2000),
        [
            linked(REFUND_R1),
            Leg(
                GRACE_ISSUED, GRACE, 2000, SINGLE, Code.GRACE_ISSUE, derive_id("grace", "R1"),
                False, {**R1_REFS, "grace_until": UNTIL},
            ),
        ],
    ),
    (
        "refund takes only what is available, not what a pending move reserves",
        lambda: refund_r1(prepaid=balance(1000, pending_debits=999), pending=[pending_move()]),
        [dataclasses.replace(REFUND_R1, amount=1)],
    ),
    (
        "grace expiry: the billing cycle's own decision, no command",
        lambda: grace_expiry(RULE_STAMP, account=OWNER, reference="R1", grace=balance(800)),
        [
            Leg(
                GRACE, GRACE_EXPIRED, 800, SINGLE, Code.GRACE_EXPIRE,
                derive_id("grace-expire", "R1"), False, {"refund": "R1"},
            )
        ],
    ),
    (
        "grace end before its time, with what ended it",
        lambda: grace_end(
            STAMP, account=OWNER, reference="R1", grace=balance(800), refs={"move": "M1"}
        ),
        [dataclasses.replace(R1_GRACE_ENDS, amount=800, refs={"move": "M1", **R1_REFS})],
    ),
    (
        "settle post of a refund: the pending's accounts and amount, in full",
        lambda: settle_of(pending_refund(), POST, "R1"),
        [POSTED_R1],
    ),
    (
        "settle post of a refund leaves its grace running",
        lambda: settle_of(pending_refund(), POST, "R1", grace=balance(600)),
        [POSTED_R1],
    ),
    (
        "settle void of a refund, no grace running",
        lambda: settle_of(pending_refund(), VOID, "R1"),
        [VOIDED_R1],
    ),
    (
        "settle void of a refund ends its running grace in the same chain",
        lambda: settle_of(pending_refund(), VOID, "R1", grace=balance(600)),
        [linked(VOIDED_R1), R1_GRACE_ENDS],
    ),
    (
        "settle void of a refund ends only the grace still available",
        lambda: settle_of(pending_refund(), VOID, "R1", grace=balance(900, pending_debits=300)),
        [linked(VOIDED_R1), R1_GRACE_ENDS],
    ),
    (
        "settle void of a refund whose grace pocket is empty: the void alone",
        lambda: settle_of(pending_refund(), VOID, "R1", grace=balance(0)),
        [VOIDED_R1],
    ),
    (
        "settle post of a move out",
        lambda: settle_of(pending_move(), POST, "M1"),
        [Leg(PREPAID, IN_TRANSIT, 3500, POST, Code.MOVE, ID_POST_M1, False, POST_M1, M1_PENDING)],
    ),
    (
        "settle void of a move out never ends a grace (the move out already did)",
        lambda: settle_of(pending_move(), VOID, "M1", grace=balance(600)),
        [Leg(PREPAID, IN_TRANSIT, 3500, VOID, Code.MOVE, ID_VOID_M1, False, POST_M1, M1_PENDING)],
    ),
    (
        "move out: prepaid pending into transit, subsidy and grace cleared, one chain",
        lambda: move_out_m1(subsidy=balance(4000), grace=("R0", balance(250))),
        [
            linked(MOVE_OUT_M1),
            Leg(
                SUBSIDY, SUBSIDY_EXPIRED, 4000, SINGLE, Code.SUBSIDY_EXPIRE,
                derive_id("move-expire", "M1"), True, M1_REFS,
            ),
            Leg(
                GRACE, GRACE_EXPIRED, 250, SINGLE, Code.GRACE_EXPIRE,
                derive_id("grace-end", "R0"), False, {**M1_REFS, "refund": "R0"},
            ),
        ],
    ),
    (
        "move out with prepaid only: one pending, not linked",
        lambda: move_out_m1(grace=("R0", balance(0))),
        [MOVE_OUT_M1],
    ),
    (
        "move out with nothing available: the subsidy and grace legs still chain",
        lambda: move_out_m1(balance(300, 300), balance(10), ("R0", balance(5))),
        [
            Leg(
                SUBSIDY, SUBSIDY_EXPIRED, 10, SINGLE, Code.SUBSIDY_EXPIRE,
                derive_id("move-expire", "M1"), True, M1_REFS,
            ),
            Leg(
                GRACE, GRACE_EXPIRED, 5, SINGLE, Code.GRACE_EXPIRE,
                derive_id("grace-end", "R0"), False, {**M1_REFS, "refund": "R0"},
            ),
        ],
    ),
    (
        "move in: from transit into the prepaid pocket",
        lambda: move_in(STAMP, account=OWNER, reference="M1", fen=1234, from_node="edge-0"),
        [
            Leg(
                IN_TRANSIT, PREPAID, 1234, SINGLE, Code.MOVE, derive_id("move-in", "M1"), False,
                {"move": "M1", "from_node": "edge-0", "command": COMMAND},
            )
        ],
    ),
]
# fmt: on


@pytest.mark.parametrize(("call", "legs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decides_the_documented_transfers(call: Callable[[], Decision], legs: list[Leg]) -> None:
    decided = as_tuple(call())
    assert [leg_of(t) for t in decided] == legs
    for t in decided:
        assert (t.time, t.time_source) == (T0, SOURCE)
        assert t.unit is unit_of(t.debit) is unit_of(t.credit)


@pytest.mark.parametrize(
    "call",
    [
        lambda: grace_expiry(RULE_STAMP, account=OWNER, reference="R1", grace=balance(0)),
        lambda: grace_expiry(RULE_STAMP, account=OWNER, reference="R1", grace=balance(-3)),
        lambda: grace_end(STAMP, account=OWNER, reference="R1", grace=balance(40, 40)),
        lambda: move_out_m1(balance(0), balance(0)),
        lambda: move_out_m1(balance(0), balance(0), ("R0", balance(0))),
    ],
    ids=["expiry-empty", "expiry-negative", "end-all-reserved", "move-out-bare", "move-out-spent"],
)
def test_nothing_left_decides_nothing(call: Callable[[], Decision]) -> None:
    assert as_tuple(call()) == ()


def test_a_command_stamp_adds_the_command_ref_and_a_rule_stamp_does_not() -> None:
    by_command = grace_expiry(STAMP, account=OWNER, reference="R1", grace=balance(9))
    by_rule = grace_expiry(RULE_STAMP, account=OWNER, reference="R1", grace=balance(9))
    assert by_command is not None and by_rule is not None
    assert by_command.refs == {"refund": "R1", "command": COMMAND}
    assert by_rule.refs == {"refund": "R1"}
    assert by_command.id == by_rule.id  # the id is the reference's, not the command's


def test_grace_end_and_expiry_of_one_refund_have_distinct_ids() -> None:
    end = grace_end(STAMP, account=OWNER, reference="R1", grace=balance(9))
    expiry = grace_expiry(STAMP, account=OWNER, reference="R1", grace=balance(9))
    assert end is not None and expiry is not None
    assert end.id != expiry.id


def test_open_pendings_picks_this_code_debiting_this_account() -> None:
    pendings = [pending_refund("R1"), pending_move("M1"), pending_refund("R9", owner="B2")]
    assert open_pendings(pendings, PREPAID, Code.REFUND) == [pending_refund("R1")]
    assert open_pendings(pendings, PREPAID, Code.MOVE) == [pending_move("M1")]
    assert open_pendings(pendings, GRACE, Code.REFUND) == []


# -- refusals ---------------------------------------------------------------------------------

NO_REFUND_REF = dataclasses.replace(pending_refund(), id=0xBEEF, refs={})
CONSUMED = transfer(derive_id("x"), PREPAID, system_id(System.ENERGY_SALES), 10, Code.CONSUME)

REFUSALS: list[tuple[str, Callable[[], Decision], str]] = [
    ("correction of zero", lambda: correct(0), "a correction of 0 fen corrects nothing"),
    (
        "correction debit below the floor",
        lambda: correct(-3501),
        "a debit of 3501 fen would take A1:prepaid below its floor of 0 fen (available 3500 fen)",
    ),
    (
        "correction debit below a credit limit",
        lambda: correct(-4501, floor=-1000),
        "a debit of 4501 fen would take A1:prepaid below its floor of -1000 fen "
        "(available 3500 fen)",
    ),
    (
        "refund while one is pending (a pending move does not count)",
        lambda: refund_r1(pending=[pending_move(), pending_refund("R0")]),
        "a refund of A1 is already pending (R0)",
    ),
    (
        "refund while two are pending, one without its reference",
        lambda: refund_r1(pending=[pending_refund("R0"), NO_REFUND_REF]),
        f"a refund of A1 is already pending (R0, {0xBEEF:032x})",
    ),
    (
        "refund of an empty pocket, with grace asked",
        lambda: refund_r1(grace_wh=500, prepaid=balance(0)),
        "nothing to refund: A1:prepaid has 0 fen available",
    ),
    (
        "refund of a pocket whose money is all reserved",
        lambda: refund_r1(prepaid=balance(300, 300), pending=[pending_move(amount=300)]),
        "nothing to refund: A1:prepaid has 0 fen available",
    ),
    (
        "refund of a debt",
        lambda: refund_r1(prepaid=balance(-120)),
        "nothing to refund: A1:prepaid has -120 fen available",
    ),
    (
        "settle of an unknown transfer",
        lambda: settle_of(None, POST, "R1"),
        f"no pending transfer {R1_HEX} on this concentrator",
    ),
    (
        "settle of a transfer that is not pending",
        lambda: settle_of(dataclasses.replace(pending_refund(), kind=SINGLE), VOID, "R1"),
        f"no pending transfer {R1_HEX} on this concentrator",
    ),
    (
        "settle of a pending that is neither a refund nor a move",
        lambda: settle_of(dataclasses.replace(CONSUMED, kind=PENDING), POST, "R1"),
        f"pending transfer {hex_of(CONSUMED)} is a consume, not a refund or a move",
    ),
    (
        "settle naming another refund",
        lambda: settle_of(pending_refund("R1"), POST, "R2"),
        f"pending transfer {R1_HEX} is refund 'R1', not 'R2'",
    ),
    (
        "settle of a move whose refs lack the move reference",
        lambda: settle_of(dataclasses.replace(pending_move(), refs={"refund": "M1"}), POST, "M1"),
        f"pending transfer {M1_HEX} is move None, not 'M1'",
    ),
    (
        "settle of a pending already posted",
        lambda: settle_of(pending_refund(), VOID, "R1", resolved=POST),
        f"pending transfer {R1_HEX} was already posted",
    ),
    (
        "settle of a pending already voided",
        lambda: settle_of(pending_refund(), POST, "R1", resolved=VOID),
        f"pending transfer {R1_HEX} was already voided",
    ),
    (
        "move out of a debt",
        lambda: move_out_m1(balance(-200), balance(4000)),
        "A1 owes 200 fen: settle the debt before it moves out",
    ),
    (
        "move out of a pocket overdrawn by a reservation",
        lambda: move_out_m1(balance(100, 300)),
        "A1 owes 200 fen: settle the debt before it moves out",
    ),
    (
        "move in of nothing",
        lambda: move_in(STAMP, account=OWNER, reference="M1", fen=0, from_node="x"),
        "fen must be positive, got 0",
    ),
    (
        "move in of a negative amount",
        lambda: move_in(STAMP, account=OWNER, reference="M1", fen=-5, from_node="x"),
        "fen must be positive, got -5",
    ),
]


@pytest.mark.parametrize(
    ("call", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refuses_with_the_reason(call: Callable[[], Decision], message: str) -> None:
    with pytest.raises(OperationRefused) as refused:
        call()
    assert str(refused.value) == message
    assert isinstance(refused.value, RuleError)  # one exception tree for the rules
