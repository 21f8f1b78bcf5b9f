"""Relay arbitration: several causes may hold one relay open; it closes when the last lets go."""

from __future__ import annotations

from edge.rules.decisions import Decisions, RelayAction, RelayCause, RelayCommand, settle_relay

TRIP, CLOSE = RelayCommand.TRIP, RelayCommand.CLOSE


def act(command: RelayCommand, cause: RelayCause) -> RelayAction:
    return RelayAction("M1", command, cause)


def test_auto_reclose_does_not_power_a_shop_in_arrears() -> None:
    held, commands = settle_relay(frozenset(), [act(TRIP, RelayCause.ARREARS)])
    assert commands == (act(TRIP, RelayCause.ARREARS),)
    held, commands = settle_relay(held, [act(TRIP, RelayCause.MALICIOUS_LOAD)])
    assert commands == ()  # already open
    held, commands = settle_relay(held, [act(CLOSE, RelayCause.MALICIOUS_LOAD)])
    assert commands == ()  # arrears still holds it
    assert held == {RelayCause.ARREARS}
    held, commands = settle_relay(held, [act(CLOSE, RelayCause.ARREARS)])
    assert commands == (act(CLOSE, RelayCause.ARREARS),)
    assert held == frozenset()


def test_close_of_a_cause_not_holding_is_nothing() -> None:
    assert settle_relay(frozenset(), [act(CLOSE, RelayCause.OVERLOAD)]) == (frozenset(), ())


def test_decisions_add_up() -> None:
    a = Decisions(relays=(act(TRIP, RelayCause.OVERLOAD),))
    b = Decisions(relays=(act(CLOSE, RelayCause.OVERLOAD),))
    assert (a + b).relays == a.relays + b.relays
    assert Decisions().empty and not a.empty
