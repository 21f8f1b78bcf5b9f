"""An operator's remote trip or close of a meter's relay (a signed cloud `relay` command).

An operator trip is one more cause holding the relay open (`RelayCause.OPERATOR`), so
`settle_relay` keeps the relay open whatever the other rules decide — an auto-reclose after a
malicious-load trip, an account back in credit — until an operator closes it. It is part of the
meter's `RelayHold`, stored with the meter's state, so it survives restarts.

An operator close releases the operator's hold and resets protection (`reset_lockout`: the trip
history is forgotten and a protection trip is released). Arrears still hold the relay of an
account in debt: the close is recorded, and the relay closes once the account is back in credit
(or is set to keep power). `still_held` says which causes remain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edge.rules.decisions import Alarm, RelayAction, RelayCause, RelayCommand, settle_relay
from edge.rules.protection import reset_lockout
from edge.runtime.state import MeterRuntime


@dataclass(frozen=True, slots=True)
class OperatorRelay:
    """What an operator's command does to one meter."""

    state: MeterRuntime  # the meter's new state
    commands: tuple[RelayAction, ...]  # to send (empty: the relay already stands there)
    alarms: tuple[Alarm, ...]  # protection's reclose notice, when a close reset it
    still_held: frozenset[RelayCause]  # causes holding the relay open after the command


def operator_relay(
    meter: str, state: MeterRuntime, command: RelayCommand, reason: str
) -> OperatorRelay:
    """Fold an operator's trip or close into the meter's state."""
    actions = [RelayAction(meter, command, RelayCause.OPERATOR, reason)]
    protection = state.protection
    alarms: tuple[Alarm, ...] = ()
    if command is RelayCommand.CLOSE:
        reset = reset_lockout(meter, protection)
        protection = reset.state
        actions += reset.decisions.relays
        alarms = reset.decisions.alarms
    held, commands = settle_relay(state.relay.held, actions)
    relay = dataclasses.replace(state.relay, held=held)
    new = dataclasses.replace(state, protection=protection, relay=relay)
    return OperatorRelay(new, commands, alarms, held)
