"""The runtime's events and alarms, each naming the meter, the shop and the account concerned.

Rule alarms (`edge.rules.decisions.Alarm`) name what their rule knows (protection knows only the
meter); `alarm_event` fills in the rest from the site configuration so that an operator reading
the event log, and the merchant notices built from it, always see meter, shop and account.
Runtime kinds of its own (not a rule's): a meter that cannot be read, a bus whose port is down,
a relay command that failed or was confirmed, a clock that is not plausible, a cycle that
overran its interval, each round's read success and a bus whose success rate is low, a float
energy register too coarse to bill by, a meter's malicious-load window written or not, the
store's background full check failing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from enum import StrEnum

from edge.rules.decisions import Alarm, Severity
from edge.site.model import MeterConfig, Site
from edge.store import Category, Event

log = logging.getLogger("edge.runtime")


class RuntimeKind(StrEnum):
    METER_UNREADABLE = "meter_unreadable"
    METER_READABLE = "meter_readable_again"
    RELAY_CONFIRMED = "relay_confirmed"
    RELAY_FAILED = "relay_failed"
    RELAY_STILL_FAILING = "relay_still_failing"
    CLOCK_IMPLAUSIBLE = "clock_implausible"
    CLOCK_PLAUSIBLE = "clock_plausible_again"
    CLOCK_SET = "clock_set"  # an installer's `voltbook-edge clock set` (an operator event)
    BUS_DOWN = "bus_down"  # a port missing, busy or failing: its meters are not read
    BUS_UP = "bus_up_again"
    BOOKED = "recharge_booked"
    CYCLE_OVERRUN = "cycle_overrun"  # a cycle ran past the next grid point: a start missed
    READ_ROUND = "read_round"  # a round's read success, per bus (one compact event a cycle)
    READ_SUCCESS_LOW = "read_success_low"  # a bus's success rate fell below the site's minimum
    READ_SUCCESS_OK = "read_success_ok_again"
    ENERGY_QUANTISATION = "energy_quantisation"  # a float register's error could pass 100 Wh
    METER_WINDOW_WRITTEN = "meter_window_written"  # a meter holds its malicious-load window
    METER_WINDOW_FAILED = "meter_window_failed"  # writing it failed (retried every cycle)
    STORE_CHECK_FAILED = "store_check_failed"  # the background full check found damage


_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}


def alarm_event(site: Site, now: dt.datetime, alarm: Alarm) -> Event:
    """A rule's alarm as a stored alarm, with meter, shop and account filled in."""
    meter = alarm.meter
    account = alarm.account
    shop = alarm.shop
    if meter is not None:
        config = site.meter(meter)
        account = account or config.account
        shop = shop or config.shop
    elif account is not None and shop is None:
        found = site.shop_of(account)
        shop = None if found is None else found.id
    log.log(
        _LEVEL.get(alarm.severity, logging.ERROR),
        "%s: meter %s, shop %s, account %s: %s",
        alarm.kind.value,
        meter or "-",
        shop or "-",
        account or "-",
        alarm.message,
    )
    return Event(
        time=now,
        kind=alarm.kind.value,
        category=Category.ALARM,
        meter=meter,
        shop=shop,
        account=account,
        detail={"severity": alarm.severity.value, "message": alarm.message},
    )


def runtime_event(
    site: Site,
    now: dt.datetime,
    kind: RuntimeKind,
    message: str,
    *,
    meter: MeterConfig | None = None,
    alarm: Severity | None = None,
    detail: Mapping[str, object] | None = None,
) -> Event:
    """An event of the runtime's own; an alarm when `alarm` gives its severity. The meter is
    given by its configuration, not looked up: a relay outcome may arrive after a swap or a new
    configuration has removed the meter it concerns."""
    address = shop = account = None
    if meter is not None:
        address, shop, account = meter.address, meter.shop, meter.account
    level = logging.INFO if alarm is None else _LEVEL.get(alarm, logging.ERROR)
    log.log(level, "%s: meter %s, shop %s: %s", kind.value, address or "-", shop or "-", message)
    fields: dict[str, object] = {"message": message, **(detail or {})}
    if alarm is not None:
        fields["severity"] = alarm.value
    return Event(
        time=now,
        kind=kind.value,
        category=Category.EVENT if alarm is None else Category.ALARM,
        meter=address,
        shop=shop,
        account=account,
        detail=fields,
    )
