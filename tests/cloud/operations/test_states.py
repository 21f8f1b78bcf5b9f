"""The operations' transition tables (`cloud.operations.states`), without a database.

The expected lifecycles are written out here from the operations' docstrings (docs/architecture.md
§7), not read from the tables under test: every transition listed must work, every other (state,
event) pair must raise `IllegalTransition` and leave the row as it was, terminal states have no
exits, and no sequence of events, however random, leads outside the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.errors import Conflict, IllegalTransition
from cloud.operations import moves, refunds
from cloud.operations.states import (
    CORRECTION,
    MACHINES,
    METER_SWAP,
    MOVE,
    RECHARGE,
    REFUND,
    TAKEOVER,
    Machine,
)

# (machine, its starting states, its transitions as (state, event, next), its terminal states)
LIFECYCLES: dict[str, tuple[set[str], set[tuple[str, str, str]], set[str]]] = {
    "recharge": (
        {"pending"},
        {("pending", "booked", "posted"), ("pending", "refused", "voided")},
        {"posted", "voided"},
    ),
    "correction": (
        {"held", "pending"},
        {
            ("held", "approved", "pending"),
            ("held", "rejected", "rejected"),
            ("pending", "booked", "posted"),
            ("pending", "refused", "failed"),
        },
        {"posted", "failed", "rejected"},
    ),
    "refund": (
        {"requested"},
        {
            ("requested", "reserved", "reserved"),
            ("requested", "cancel", "cancelled"),
            ("requested", "refused", "failed"),
            ("reserved", "pay", "paid"),
            ("reserved", "cancel", "cancelled"),
            ("cancelled", "refused", "failed"),
        },
        {"paid", "failed"},
    ),
    "meter swap": (
        {"held", "requested"},
        {
            ("held", "approved", "requested"),
            ("held", "rejected", "rejected"),
            ("requested", "applied", "applied"),
            ("requested", "refused", "failed"),
        },
        {"applied", "failed", "rejected"},
    ),
    "move": (
        {"requested", "settled"},
        {
            ("requested", "out_booked", "in_transit"),
            ("requested", "out_empty", "in_transit"),
            ("requested", "out_refused", "failed"),
            ("in_transit", "in_booked", "arrived"),
            ("in_transit", "in_empty", "settled"),
            ("in_transit", "in_refused", "voided"),
            ("arrived", "settle_booked", "settled"),
        },
        {"settled", "failed", "voided"},
    ),
    "takeover": (
        {"requested"},
        {
            ("requested", "approved", "issued"),
            ("requested", "rejected", "rejected"),
            ("rejected", "requested", "requested"),
            ("issued", "applied", "applied"),
            ("issued", "refused", "refused"),
            ("issued", "reissued", "issued"),
            ("refused", "reissued", "issued"),
            ("refused", "applied", "applied"),
        },
        {"applied"},
    ),
}
BY_NAME = {m.name: m for m in MACHINES}
EVERY = pytest.mark.parametrize("name", sorted(LIFECYCLES))


@dataclass
class Row:
    status: str


def words(enum: type[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def test_every_operation_has_a_machine() -> None:
    assert set(BY_NAME) == set(LIFECYCLES)
    assert (RECHARGE, CORRECTION, REFUND, METER_SWAP, MOVE, TAKEOVER) == MACHINES


@EVERY
def test_the_stored_words_are_the_columns(name: str) -> None:
    """The states are the strings the status columns have always held."""
    machine = BY_NAME[name]
    initial, transitions, terminal = LIFECYCLES[name]
    states = initial | terminal | {s for s, _, _ in transitions} | {n for _, _, n in transitions}
    assert words(machine.states) == states
    assert words(machine.events) == {e for _, e, _ in transitions}


@EVERY
def test_every_allowed_transition(name: str) -> None:
    machine = BY_NAME[name]
    _, transitions, _ = LIFECYCLES[name]
    for state, event, target in transitions:
        row = Row(state)
        assert machine.allows(state, machine.events(event))
        assert machine.fire(row, machine.events(event)) == target
        assert row.status == target and type(row.status) is str  # stored as the plain word


@EVERY
def test_every_other_transition_raises_and_changes_nothing(name: str) -> None:
    machine = BY_NAME[name]
    _, transitions, _ = LIFECYCLES[name]
    allowed = {(s, e) for s, e, _ in transitions}
    forbidden = [
        (s, e)
        for s in words(machine.states)
        for e in words(machine.events)
        if (s, e) not in allowed
    ]
    assert forbidden  # every machine refuses something
    for state, event in forbidden:
        row = Row(state)
        assert not machine.allows(state, machine.events(event))
        with pytest.raises(IllegalTransition) as raised:
            machine.fire(row, machine.events(event))
        assert row.status == state
        assert (raised.value.operation, raised.value.state, raised.value.event) == (
            name, state, event,
        )  # fmt: skip
        assert isinstance(raised.value, Conflict)  # the API answers 409, not 500


@EVERY
def test_terminal_states_have_no_exits(name: str) -> None:
    machine = BY_NAME[name]
    _, _, terminal = LIFECYCLES[name]
    assert words(machine.terminal) == terminal
    for state in terminal:
        for event in machine.events:
            with pytest.raises(IllegalTransition):
                machine.next(state, event)


@EVERY
def test_only_the_initial_states_start(name: str) -> None:
    machine = BY_NAME[name]
    initial, _, _ = LIFECYCLES[name]
    for state in machine.states:
        if state.value in initial:
            assert machine.start(state) == state.value and type(machine.start(state)) is str
        else:
            with pytest.raises(IllegalTransition):
                machine.start(state)


@EVERY
def test_an_unknown_stored_word_is_refused(name: str) -> None:
    machine = BY_NAME[name]
    event = next(iter(machine.events))
    with pytest.raises(IllegalTransition, match="not one of its states"):
        machine.fire(Row("bogus"), event)


def test_a_state_of_the_same_word_is_not_an_event() -> None:
    """`reserved` is a refund's state and an event: only the event enum looks the table up."""
    with pytest.raises(TypeError):
        REFUND.fire(Row("requested"), REFUND.states.RESERVED)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        REFUND.allows("reserved", "pay")  # type: ignore[arg-type]


def test_a_table_that_misses_a_state_is_refused() -> None:
    with pytest.raises(ValueError, match="every state"):
        Machine("broken", RECHARGE.states, RECHARGE.events, RECHARGE.initial,
                {RECHARGE.states.PENDING: {}})  # fmt: skip


def test_open_operations_are_the_ones_that_may_still_change() -> None:
    """One open move or refund per account: what counts as open follows the tables."""
    assert set(moves.OPEN) == words(MOVE.states) - words(MOVE.terminal)
    assert set(refunds.OPEN) == {s for s in words(REFUND.states)
                                 if REFUND.allows(s, REFUND.events.CANCEL)}  # fmt: skip


def _walk(machine: Machine[Any, Any], start: str, events: list[str]) -> list[str]:
    """The states a row goes through; an illegal event is refused and changes nothing."""
    _, transitions, _ = LIFECYCLES[machine.name]
    table = {(s, e): n for s, e, n in transitions}
    row, seen = Row(start), [start]
    for event in events:
        expected = table.get((row.status, event))
        if expected is None:
            with pytest.raises(IllegalTransition):
                machine.fire(row, machine.events(event))
            assert row.status == seen[-1]
        else:
            machine.fire(row, machine.events(event))
            assert row.status == expected
        seen.append(row.status)
    return seen


@st.composite
def runs(draw: st.DrawFn) -> tuple[Machine[Any, Any], str, list[str]]:
    machine = draw(st.sampled_from(MACHINES))
    start = draw(st.sampled_from(sorted(LIFECYCLES[machine.name][0])))
    events = draw(st.lists(st.sampled_from(sorted(words(machine.events))), max_size=30))
    return machine, start, events


@given(runs())
def test_random_event_sequences_never_leave_the_table(
    run: tuple[Machine[Any, Any], str, list[str]],
) -> None:
    machine, start, events = run
    seen = _walk(machine, start, events)
    _, _, terminal = LIFECYCLES[machine.name]
    assert set(seen) <= words(machine.states)
    # once terminal, always terminal (and the same state)
    for index, state in enumerate(seen):
        if state in terminal:
            assert set(seen[index:]) == {state}
            break
