"""Property: any sequence of recharge, correction, refund, settle, meter swap and move commands,
interleaved with billing cycles and each delivered twice, keeps the ledger sound (balances sum
to zero per unit, no transfer or command twice, energy = registers per meter, charges never
drift), never refunds or moves subsidy as money, and books nothing on a redelivery.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.accounts import Pocket, owner_of
from ledger.invariants import check_balances_sum_to_zero, ledger_violations
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind
from tests.edge.sync.operations_kit import Node, write_site

pytestmark = pytest.mark.slow  # 40 runs of a concentrator, every command delivered twice

ACCOUNTS = ("A0001", "A0002", "A0003")
SUBSIDY_DEBITS = {Code.CONSUME, Code.METER_SETTLE, Code.SUBSIDY_EXPIRE}

account = st.sampled_from(ACCOUNTS)
step = st.one_of(
    st.tuples(st.just("cycles"), st.integers(1, 3)),
    st.tuples(st.just("recharge"), account, st.integers(1, 20_000)),
    st.tuples(st.just("correction"), account, st.integers(-30_000, 30_000)),
    st.tuples(st.just("refund"), account, st.sampled_from([0, 500, 5_000])),
    st.tuples(st.just("settle"), st.sampled_from(["post", "void"]), st.integers(0, 3)),
    st.tuples(st.just("swap"), account, st.sampled_from([0, 10, 300, 2_000])),
    st.tuples(st.just("move_out"), account),
    st.tuples(st.just("move_in"), account, st.integers(1, 9_000)),
)


def _command(node: Node, op: tuple[Any, ...], n: int) -> tuple[CommandKind, dict[str, Any]]:
    kind, *rest = op
    now = node.clock.true_now()
    if kind == "recharge":
        return CommandKind.RECHARGE, {"account": rest[0], "fen": rest[1], "payment": f"P{n}"}
    if kind == "correction":
        return CommandKind.CORRECTION, {
            "account": rest[0], "fen": rest[1], "correction": f"C{n}",
            "original": f"{n:032x}", "reason": "property",
        }  # fmt: skip
    if kind == "refund":
        until = (now + dt.timedelta(minutes=20)).isoformat()
        return CommandKind.REFUND, {
            "account": rest[0], "refund": f"R{n}", "grace_wh": rest[1], "grace_until": until,
        }  # fmt: skip
    if kind == "settle":
        open_ = list(node.store.book.unresolved())
        if open_:
            pending = open_[rest[1] % len(open_)]
            ref = str(pending.refs.get("refund", pending.refs.get("move")))
            hex_id = f"{pending.id:032x}"
        else:
            ref, hex_id = "none", f"{n + 1:032x}"
        return CommandKind.SETTLE, {"pending": hex_id, "action": rest[0], "reference": ref}
    if kind == "swap":
        old = node.runtime.site.meters_of(rest[0])
        address = old[0].address if old else "000000000000"
        billing = node.runtime.meters[address].billing if old else None
        final = (billing.reg_wh if billing is not None else 0) + rest[1]
        return CommandKind.METER_SWAP, {
            "swap": f"S{n}", "old": address, "final_wh": final, "initial_wh": 1_000 * n,
            "meter": {"id": f"{202699000000 + n:012d}", "profile": "steady_shop"},
        }  # fmt: skip
    if kind == "move_out":
        return CommandKind.MOVE_OUT, {"account": rest[0], "move": f"M{n}", "to_node": "away"}
    return CommandKind.MOVE_IN, {
        "account": rest[0], "move": f"MI{n}", "fen": rest[1], "from_node": "away",
    }  # fmt: skip


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(step, min_size=3, max_size=10))
def test_any_sequence_of_operations_keeps_the_ledger_sound(steps: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node = Node.boot(write_site(Path(tmp) / "site", 3, subsidy=True))
        try:
            node.cycles(1)
            for n, op in zip(itertools.count(1), steps):
                if op[0] == "cycles":
                    node.cycles(op[1])
                else:
                    payload = node.command(*_command(node, op, n))
                    first = node.desk.handle(payload)
                    assert first.outcome in ("applied", "refused"), first.message
                    seq, balances = node.store.chain.seq, node.store.book.balances()
                    again = node.desk.handle(payload)
                    assert again.outcome == "repeated"
                    assert (node.store.chain.seq, node.store.book.balances()) == (seq, balances)
                assert check_balances_sum_to_zero(node.store.book.balances()) == []
            node.cycles(2)
            transfers = node.transfers()
            assert ledger_violations(transfers, node.store.book.balances()) == []
            for t in transfers:
                if t.debit.endswith(":" + Pocket.SUBSIDY.value):
                    assert t.code in SUBSIDY_DEBITS, t  # subsidy is used or expires, never paid
                if t.code is Code.REFUND and t.kind is Kind.PENDING:
                    assert t.debit == f"{owner_of(t.debit)}:prepaid"
        finally:
            node.close()
