"""Relay commands, sent only after the cycle that decided them is durable, and confirmed.

`RelayOrder`s are deferred in the cycle's transaction (`tx.defer`) and handed back by
`tx.released()` after the commit: no relay acts on state that is not yet durable. Each order
runs the driver's relay conversation, which sends the command and reads the relay state back
(DL/T 645: status word 3); a refusal, a timeout or a read-back that disagrees is retried a few
times here. What happened is a `RelayOutcome`, recorded as an event (or an alarm, if it failed)
in the next cycle's transaction; a failed order is tried again at the next cycle, because the
runtime compares every reading's relay state with the state the rules want. A meter that has no
relay the driver may command (a Modbus model without a relay map: its readings carry relay
None) refuses the order before any byte is sent (`UnsupportedOperation`); that is recorded as a
failed order with the driver's reason at once (`unsupported`), and not retried at later cycles
either: only a new decision of the rules orders it again.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from edge.drivers.base import Bus, MeterDriver
from edge.drivers.errors import MeterError, UnsupportedOperation
from edge.rules.decisions import RelayCause, RelayCommand
from edge.site.model import MeterConfig

log = logging.getLogger(__name__)

RELAY_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RelayOrder:
    meter: MeterConfig
    command: RelayCommand
    cause: RelayCause | None  # None: a retry to reach the state the rules want
    reason: str
    decided_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    order: RelayOrder
    confirmed: bool
    attempts: int
    error: str = ""
    unsupported: bool = False  # the meter has no relay this driver may command


def execute(bus: Bus, driver: MeterDriver, order: RelayOrder) -> RelayOutcome:
    """Send `order` until the meter confirms it or the attempts run out."""
    meter = order.meter
    error = ""
    for attempt in range(1, RELAY_ATTEMPTS + 1):
        try:
            bus.run(driver.relay(meter.address, order.command.value), address=meter.address)
        except UnsupportedOperation as exc:
            log.error(
                "meter %s (shop %s): relay %s for %s refused: %s",
                meter.address,
                meter.shop,
                order.command.value,
                order.cause or "retry",
                exc,
            )
            return RelayOutcome(order, False, attempt, str(exc), unsupported=True)
        except MeterError as exc:
            error = str(exc)
            log.warning(
                "meter %s (shop %s): relay %s for %s, attempt %d of %d failed: %s",
                meter.address,
                meter.shop,
                order.command.value,
                order.cause or "retry",
                attempt,
                RELAY_ATTEMPTS,
                exc,
            )
            continue
        log.info(
            "meter %s (shop %s, account %s): relay %s confirmed (%s: %s)",
            meter.address,
            meter.shop,
            meter.account,
            order.command.value,
            order.cause or "retry",
            order.reason,
        )
        return RelayOutcome(order, True, attempt)
    return RelayOutcome(order, False, RELAY_ATTEMPTS, error)
