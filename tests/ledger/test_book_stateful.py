"""Hypothesis stateful test: random transfers, retries, conflicts, two-phase and linked chains.

A deliberately naive reference model (a dict of posted/pending amounts, recomputed from the list
of accepted transfers) is compared with the book after every step, and the ledger invariants
are checked after every step.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.accounts import Account, AccountId, Pocket, System, pocket_id, system_id
from ledger.book import Book, Outcome, replay
from ledger.invariants import (
    check_balances_sum_to_zero,
    check_no_transfer_twice,
)
from ledger.transfers import Kind, Transfer
from tests.ledger.factories import accounts, transfer

pytestmark = pytest.mark.slow  # 150 runs of 30 steps against the book

OWNERS = ("A1", "A2")
FEN_ACCOUNTS: list[AccountId] = [
    *(pocket_id(o, Pocket.PREPAID) for o in OWNERS),
    system_id(System.CASH_IN_TRANSIT),
    system_id(System.ENERGY_SALES),
]
amounts = st.integers(min_value=1, max_value=5_000)
pairs = st.tuples(st.sampled_from(FEN_ACCOUNTS), st.sampled_from(FEN_ACCOUNTS)).filter(
    lambda p: p[0] != p[1]
)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = Book(accounts(*OWNERS, credit_limit=0))
        # A2 may overdraw to -300 fen (a credit limit); A1 may not go below zero.
        self.book.open_account(Account.for_id(FEN_ACCOUNTS[1], credit_limit=300))
        self.accepted: list[Transfer] = []
        self.batches: list[list[Transfer]] = []  # accepted batches, as a client would retry them
        self.next_id = 1
        self.open_pending: list[Transfer] = []

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _submit(self, batch: list[Transfer]) -> list[Outcome]:
        before = self.book.balances()
        outcomes = self.book.submit(batch)
        ok = [t for t, o in zip(batch, outcomes, strict=True) if o is Outcome.OK]
        if not ok:
            assert self.book.balances() == before, "a refused batch changed balances"
        self.accepted.extend(ok)
        if ok:
            self.batches.append(ok)
        return outcomes

    @rule(pair=pairs, amount=amounts)
    def single(self, pair: tuple[AccountId, AccountId], amount: int) -> None:
        self._submit([transfer(self._new_id(), pair[0], pair[1], amount)])

    @rule(owner=st.sampled_from(OWNERS), amount=amounts)
    def recharge(self, owner: str, amount: int) -> None:
        t = transfer(self._new_id(), FEN_ACCOUNTS[2], pocket_id(owner, Pocket.PREPAID), amount)
        assert self._submit([t]) == [Outcome.OK]

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def retry_same(self, data: st.DataObject) -> None:
        batch = data.draw(st.sampled_from(self.batches))
        assert self._submit(batch) == [Outcome.EXISTS] * len(batch)

    @precondition(lambda self: self.accepted)
    @rule(data=st.data(), delta=st.integers(min_value=1, max_value=100))
    def conflicting_retry(self, data: st.DataObject, delta: int) -> None:
        t = data.draw(st.sampled_from(self.accepted))
        changed = dataclasses.replace(t, amount=t.amount + delta, linked=False)
        assert self._submit([changed]) == [Outcome.ID_CONFLICT]

    @rule(pair=pairs, amount=amounts)
    def pending(self, pair: tuple[AccountId, AccountId], amount: int) -> None:
        t = transfer(self._new_id(), pair[0], pair[1], amount, kind=Kind.PENDING)
        if self._submit([t]) == [Outcome.OK]:
            self.open_pending.append(t)

    @precondition(lambda self: self.open_pending)
    @rule(data=st.data(), void=st.booleans(), twice=st.booleans())
    def resolve(self, data: st.DataObject, void: bool, twice: bool) -> None:
        p = data.draw(st.sampled_from(self.open_pending))
        amount = p.amount if void else data.draw(st.integers(1, p.amount))
        kind = Kind.VOID if void else Kind.POST
        t = transfer(self._new_id(), p.debit, p.credit, amount, kind=kind, pending_id=p.id)
        assert self._submit([t]) == [Outcome.OK]
        self.open_pending.remove(p)
        if twice:
            again = dataclasses.replace(t, id=self._new_id())
            expected = Outcome.PENDING_ALREADY_VOIDED if void else Outcome.PENDING_ALREADY_POSTED
            assert self._submit([again]) == [expected]

    @rule(legs=st.lists(st.tuples(pairs, amounts), min_size=2, max_size=4), fail=st.booleans())
    def linked_chain(self, legs: list[tuple[tuple[AccountId, AccountId], int]], fail: bool) -> None:
        batch = [
            transfer(self._new_id(), d, c, a, linked=i < len(legs) - 1)
            for i, ((d, c), a) in enumerate(legs)
        ]
        if fail:  # the last leg reuses an accepted id with other content, or overdraws
            bad_id = self.accepted[0].id if self.accepted else batch[-1].id
            last = batch[-1]
            batch[-1] = dataclasses.replace(
                last,
                id=bad_id,
                amount=last.amount + 1 if self.accepted else 10**9,
                debit=FEN_ACCOUNTS[0],
                credit=FEN_ACCOUNTS[2],
            )
        before = self.book.balances()
        outcomes = self._submit(batch)
        if all(o is Outcome.OK for o in outcomes):
            return
        assert all(o is not Outcome.OK for o in outcomes), outcomes
        assert self.book.balances() == before
        assert outcomes.count(Outcome.LINKED_EVENT_FAILED) == len(batch) - 1

    @rule(pair=pairs, amount=amounts)
    def open_chain(self, pair: tuple[AccountId, AccountId], amount: int) -> None:
        t = transfer(self._new_id(), pair[0], pair[1], amount, linked=True)
        assert self._submit([t]) == [Outcome.LINKED_CHAIN_OPEN]

    @invariant()
    def sums_to_zero(self) -> None:
        assert check_balances_sum_to_zero(self.book.balances()) == []

    @invariant()
    def floors_hold(self) -> None:
        for account in self.book.accounts():
            if account.floor is not None:
                assert self.book.balance(account.id).available >= account.floor

    @invariant()
    def nothing_twice_and_projection_agrees(self) -> None:
        assert check_no_transfer_twice(self.accepted) == []
        assert len(self.book) == len(self.accepted)
        projected = replay(self.accepted).balances()
        for account, balance in projected.items():
            assert self.book.balance(account) == balance
            assert self.book.available(account) == balance.available  # the edge's quick read


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
