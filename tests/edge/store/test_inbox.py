"""Hypothesis stateful test: cloud commands delivered any number of times, in any order, with
crashes inside transactions and reboots in between, are each applied exactly once.

A command is a recharge or a refund (which the book may refuse). Its first committed delivery
decides its result for ever: later deliveries get the stored result and change nothing, even
when the balance would now allow a refused refund. After every step the ledger invariants
hold on what is stored: balances per unit sum to zero, no transfer or command twice, and the
book the runtime holds equals a replay of the stored chain.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edge.store import CommandResult, CommandStatus, Store
from ledger.book import replay
from ledger.invariants import (
    check_balances_sum_to_zero,
    check_no_command_twice,
    check_no_transfer_twice,
)
from ledger.transfers import Transfer
from tests.edge.store.conftest import NODE, T0, recharge, refund

# command id -> (payload, transfers); refunds may exceed what the account holds.
COMMANDS: dict[str, tuple[bytes, list[Transfer]]] = {}
for n in range(4):
    command = f"R{n}"
    owner = f"A000{n % 2}"
    COMMANDS[command] = (
        f"recharge {owner} {300 * (n + 1)}".encode(),
        [recharge(command, owner=owner, amount=300 * (n + 1), command=command)],
    )
for n in range(3):
    command = f"F{n}"
    owner = f"A000{n % 2}"
    COMMANDS[command] = (
        f"refund {owner} 500".encode(),
        [refund(command, owner=owner, amount=500, command=command)],
    )
command_ids = st.sampled_from(sorted(COMMANDS))


class InboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="voltbook-inbox-"))
        self.path = self.directory / "edge.db"
        self.store = Store.open(self.path, node=NODE)
        self.decided: dict[str, CommandResult] = {}  # first committed result per command

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory)

    def _check(self, command: str, result: CommandResult) -> None:
        known = self.decided.get(command)
        if known is None:
            assert result.first_delivery
            self.decided[command] = result
        else:
            assert not result.first_delivery
            assert (result.status, result.seqs, result.outcomes) == (
                known.status,
                known.seqs,
                known.outcomes,
            )

    @rule(commands=st.lists(command_ids, min_size=1, max_size=4))
    def deliver_in_one_cycle(self, commands: list[str]) -> None:
        """Several deliveries (duplicates included) in one group commit."""
        results = []
        with self.store.transaction() as tx:
            for command in commands:
                payload, transfers = COMMANDS[command]
                results.append(tx.apply_command(command, payload, transfers, T0))
        pending: dict[str, CommandResult] = {}
        for command, result in zip(commands, results, strict=True):
            if command in pending:
                assert not result.first_delivery and result.seqs == pending[command].seqs
                continue
            self._check(command, result)
            pending[command] = result

    @rule(command=command_ids)
    def deliver_then_crash(self, command: str) -> None:
        """The cycle dies after applying the command: nothing of it may remain."""
        before = self.store.chain.seq
        try:
            with self.store.transaction() as tx:
                payload, transfers = COMMANDS[command]
                tx.apply_command(command, payload, transfers, T0)
                raise KeyboardInterrupt  # any failure before the commit
        except KeyboardInterrupt:
            pass
        assert self.store.chain.seq == before
        stored = self.store.command_result(command)
        assert (stored is None) == (command not in self.decided)

    @rule()
    def reboot(self) -> None:
        self.store.close()
        self.store = Store.open(self.path)

    @invariant()
    def each_command_applied_exactly_once(self) -> None:
        transfers = [e.transfer for e in self.store.entries()]
        assert check_no_transfer_twice(transfers) == []
        assert check_no_command_twice(transfers) == []
        for command, (_, legs) in COMMANDS.items():
            count = sum(1 for t in transfers if t.refs.get("command") == command)
            result = self.decided.get(command)
            applied = result is not None and result.status is CommandStatus.APPLIED
            assert count == (len(legs) if applied else 0), command

    @invariant()
    def balances_sum_to_zero_and_match_the_chain(self) -> None:
        balances = self.store.book.balances()
        assert check_balances_sum_to_zero(balances) == []
        rebuilt = replay(e.transfer for e in self.store.entries())
        assert {a: b for a, b in rebuilt.balances().items()} == {
            a: b for a, b in balances.items() if a in rebuilt.balances()
        }
        assert all(b.posted == 0 for a, b in balances.items() if a not in rebuilt.balances())


InboxMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=15, deadline=None)
TestInboxExactlyOnce = pytest.mark.slow(InboxMachine.TestCase)  # 60 runs of 15 steps
