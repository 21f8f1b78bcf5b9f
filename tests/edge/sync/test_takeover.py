"""`takeover` through the real `CommandDesk` on real runtimes: a box replacing a dead one opens
its pockets at the acknowledged balances, bills each meter from the acknowledged register (the
days the old box booked and never sent are billed again from the registers, once), carries the
subsidy periods and the cumulative cost; over the union of the old acknowledged chain, the
cloud's closings and the new chain every invariant of §5.6 holds. A command it cannot carry out
is refused and changes nothing; a repeat books nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import takeover
from ledger.accounts import Pocket, pocket_id
from ledger.book import replay
from ledger.invariants import ledger_violations
from ledger.signed import CommandKind
from ledger.transfers import Code, Transfer
from tests.edge.sync.operations_kit import Node, applied, per_meter_energy, refused, write_site
from tests.edge.sync.takeover_kit import documents_of, replacement_site

pytestmark = pytest.mark.slow

NEW = "edge-new"
DAYS_3 = dt.timedelta(days=3)


@dataclasses.dataclass
class Replaced:
    old_acked: list[Transfer]
    old_tail: list[Transfer]
    head_seq: int
    head_hash: str
    documents: dict[str, list[dict[str, object]]]
    meters: dict[str, str]
    new: Node
    old_first: dict[str, int]  # per meter, the register billing started from on the old box

    def plan(self) -> takeover.Plan:
        owners = set(self.meters.values())
        return takeover.plan(owners, self.meters, self.old_acked)

    def args(self, ref: str = "T-1", **more: Any) -> dict[str, Any]:
        return {
            "takeover": ref,
            "from_node": "edge-demo-0001",
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "version": 1,
            "documents": self.documents,
            **self.plan().args(),
            **more,
        }


@pytest.fixture
def replaced(tmp_path: Path) -> Iterator[Replaced]:
    """An old box that billed 2 hours acknowledged, then 3 days it never sent, then died; a
    new box booted on the same building, nothing taken over yet."""
    toml = write_site(tmp_path / "site", 4)  # no subsidy: prepaid pays, the cost accumulates
    old = Node.boot(toml)
    try:
        old.cycles(8)
        head = old.store.chain
        head_seq, head_hash = head.seq, head.head.hex()
        old.cycles(3 * 4, every=dt.timedelta(hours=6))  # offline: booked, never sent
        entries = list(old.store.entries())
        documents = documents_of(old.runtime.site.settings.config_path)
        meters = {m.address: m.account for m in old.runtime.site.meters}
        died_at = old.clock.true_now()
    finally:
        old.close()
    new = Node.boot(replacement_site(toml, NEW), start=died_at + dt.timedelta(hours=2))
    try:
        new.cycles(1)
        transfers = [e.transfer for e in entries]
        first = {m: lo for m, lo, _, _ in per_meter_energy(transfers)}
        yield Replaced(
            transfers[:head_seq],
            transfers[head_seq:],
            head_seq,
            head_hash,
            documents,
            meters,
            new,
            first,
        )
    finally:
        new.close()


def _union(r: Replaced, plan: takeover.Plan) -> list[Transfer]:
    closings = takeover.closings(
        "T-1",
        plan.openings,
        old_node="edge-demo-0001",
        to_node=NEW,
        time="2026-11-05T00:00:00+08:00",
    )
    return [*r.old_acked, *closings, *r.new.transfers()]


def test_the_new_box_takes_over_at_the_acknowledged_head_and_bills_on(replaced: Replaced) -> None:
    r = replaced
    plan = r.plan()
    applied(r.new.send(CommandKind.TAKEOVER, r.args()))
    for opening in plan.openings:  # the new box's book holds the acknowledged balances
        assert r.new.store.book.balance(opening.pocket).posted == opening.amount
    for carry in plan.accounts:  # and goes on counting the month a tiered tariff counts
        charges = r.new.runtime.accounts[carry.account].charges
        acked_wh = sum(
            int(t.refs["energy_wh"])
            for t in r.old_acked
            if t.code is Code.CONSUME and t.debit.startswith(carry.account + ":")
        )
        assert (charges.month, charges.month_used_wh) == ("2026-11", acked_wh) and acked_wh > 0
        assert charges.cost_cum == carry.cost_cum > 0  # the new box's charges go on from it
    r.new.cycles(8)
    union = _union(r, plan)
    book = replay(union)
    assert ledger_violations(union, book.balances()) == []  # energy, charges never drift, …
    assert not [t for t in union if t.code is Code.SUBSIDY_ISSUE]  # (subsidy: the cloud tests)
    # per meter, the books hold last register − first register: nothing lost, nothing twice
    tail_wh = 0
    for meter, lo, hi, billed in per_meter_energy(union):
        assert lo == r.old_first[meter]
        assert billed == hi - lo
        tail = takeover.spans(r.old_tail).get(meter)
        assert tail is not None and hi >= tail.reg_to  # the new box billed past the tail
        tail_wh += tail.billed
    assert tail_wh > 0
    # each pocket: the same in the union and in the new box's own book
    for pocket, balance in r.new.store.book.balances().items():
        if pocket.startswith("A"):
            assert book.balance(pocket).posted == balance.posted, pocket


def test_a_repeated_takeover_books_nothing_more(replaced: Replaced) -> None:
    r = replaced
    command = r.new.command(CommandKind.TAKEOVER, r.args())
    applied(r.new.desk.handle(command))
    seq = r.new.store.chain.seq
    again = r.new.desk.handle(command)
    assert again.result is not None and not again.result.first_delivery
    assert r.new.store.chain.seq == seq


def test_the_same_takeover_issued_again_is_applied_once(replaced: Replaced) -> None:
    """The cloud issues a takeover again when its command expired, though the box may have
    applied it: the second command is applied with nothing booked and nothing changed."""
    r = replaced
    applied(r.new.send(CommandKind.TAKEOVER, r.args()))
    r.new.cycles(2)
    before = r.new.snapshot()
    again = applied(r.new.send(CommandKind.TAKEOVER, r.args(version=2)))
    assert again.result is not None and again.result.first_delivery
    assert "already" in again.message and r.new.snapshot() == before


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"head_hash": "xyz"}, ("head_hash",)),
        ({"openings": [{"pocket": "sys:takeover_fen", "amount": 5}]}, ("merchant pocket",)),
        ({"openings": [{"pocket": "Z9999:prepaid", "amount": 5}]}, ("not an account",)),
        ({"meters": []}, ("no baseline",)),
        ({"meters": [{"meter": "202611000001", "reg": 5, "at": "yesterday"}]}, ("at",)),
        ({"accounts": [{"account": "A0001", "cost_cum": -1}]}, ("cost_cum",)),
        ({"accounts": [{"account": "A0001", "cost_cum": 1, "month": "11/2026"}]}, ("month",)),
        ({"from_node": NEW}, ("its own",)),
        ({"documents": {"meters": "no"}}, ("documents",)),
    ],
)
def test_a_takeover_it_cannot_carry_out_is_refused_and_changes_nothing(
    replaced: Replaced, change: dict[str, Any], words: tuple[str, ...]
) -> None:
    r = replaced
    before = r.new.snapshot()
    refused(r.new.send(CommandKind.TAKEOVER, r.args(**change)), *words)
    assert r.new.snapshot() == before


def test_a_second_takeover_of_the_same_accounts_is_refused(replaced: Replaced) -> None:
    r = replaced
    applied(r.new.send(CommandKind.TAKEOVER, r.args()))
    r.new.cycles(2)
    before = r.new.snapshot()
    again = r.args("T-2", version=2)
    refused(r.new.send(CommandKind.TAKEOVER, again), "already")
    assert r.new.snapshot() == before


def test_the_plan_refuses_a_meter_whose_baseline_is_unknown(replaced: Replaced) -> None:
    r = replaced
    with pytest.raises(takeover.TakeoverRefused, match="never billed"):
        takeover.plan(set(r.meters.values()), r.meters, [])
    started = {m: (reg, "2026-11-02T09:00:00+08:00") for m, reg in r.old_first.items()}
    plan = takeover.plan(set(r.meters.values()), r.meters, [], started=started)
    assert {m.reg for m in plan.meters} == set(r.old_first.values())
    assert pocket_id("A0001", Pocket.PREPAID) not in {o.pocket for o in plan.openings}
