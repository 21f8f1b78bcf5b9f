"""Alarms: what operators must see about a node, in one table (`cloud.db.models.Alarm`).

Two sources. The cloud raises its own (`raise_alarm`: a refused batch, a quarantine, an edge
that refused a recharge, a settlement that did not match), with the severity the table of every
kind gives it (`cloud.chains.alarm_kinds`, where each kind's group and words are found too).
The concentrators raise theirs with no network (low balance, arrears, relay, malicious load, a
bus down, read success low, …) and upload them as events of category `alarm`; the ingest copies
each into this table as it stores the batch (`copy_edge_alarms`), once per (node, event id), so
a batch sent again adds nothing. The edge's own words stay: kind, severity, meter, shop,
account, message, and its detail as `facts`.

The edge also says when a condition is over (a bus up again, a meter read again, …): those
events clear the node's open alarm they answer (`CLEARED_BY`, `clear_edge_alarms`), in the
same transaction, with the event's time as `cleared_at`. Only alarms raised before the event
(a smaller event id: the edge's order, whatever its clock did) are cleared, each by the first
event after it, and only open ones, so a batch sent again clears nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.chains.alarm_kinds import severity_of
from cloud.db.bulk import upsert_rows
from cloud.db.models import Alarm

SEVERITIES = ("info", "warning", "critical")

# What, besides the node, an alarm and the event that clears it must share.
Key = Literal["node", "bus", "meter", "account"]

# The edge's events that say a condition is over (`edge.runtime.events.RuntimeKind`,
# `edge.rules.decisions.AlarmKind`) → the alarm kind each clears, and on what key.
CLEARED_BY: dict[str, tuple[str, Key]] = {
    "bus_up_again": ("bus_down", "bus"),
    "read_success_ok_again": ("read_success_low", "bus"),
    "meter_readable_again": ("meter_unreadable", "meter"),
    "relay_confirmed": ("relay_failed", "meter"),
    "clock_plausible_again": ("clock_implausible", "node"),
    "arrears_close": ("arrears_trip", "account"),
}


def raise_alarm(
    session: Session, node: str | None, kind: str, now: dt.datetime, detail: str
) -> None:
    """Add an open alarm of `kind` for `node` (None: no known node) to this transaction."""
    session.add(Alarm(node=(node or "")[:64] or None, kind=kind, severity=severity_of(kind),
                      detail=detail, facts={}, time=now, cleared=False, note=""))  # fmt: skip


def edge_alarm_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """The alarm row of an edge event of category `alarm` (an `events` row as the ingest
    checked it: `cloud.ingest.checks`)."""
    facts = dict(event["detail"])
    severity = facts.get("severity")
    message = facts.get("message")
    return {
        "node": event["node"],
        "event_id": event["event_id"],
        "kind": event["kind"],
        "severity": severity if severity in SEVERITIES else "warning",
        "meter": event["meter"],
        "shop": event["shop"],
        "account": event["account"],
        "detail": message if isinstance(message, str) else "",
        "facts": facts,
        "time": event["time"],
        "cleared": False,
        "acknowledged": None,
        "acknowledged_by": None,
        "note": "",
    }


def copy_edge_alarms(session: Session, events: Iterable[Mapping[str, Any]]) -> None:
    """Copy the alarms among a batch's events into `alarms`, each (node, event id) once."""
    rows = [edge_alarm_row(e) for e in events if e["category"] == "alarm"]
    upsert_rows(session, Alarm.__table__, rows, index=("node", "event_id"))


def _key(key: Key, meter: str | None, account: str | None, facts: Any) -> str | None:
    """What an alarm or event holds on `key`; None (matches nothing) when it holds no text
    there (the edge's detail is trusted for nothing)."""
    if key == "node":
        return ""
    if key == "bus":
        value = facts.get("bus") if isinstance(facts, Mapping) else None
    else:
        value = meter if key == "meter" else account
    return value if isinstance(value, str) else None


def clear_edge_alarms(session: Session, node: str, events: Iterable[Mapping[str, Any]]) -> None:
    """Clear the node's open alarms that the batch's events say are over (`CLEARED_BY`), each
    by the first such event after it."""
    clearing = sorted((e for e in events if e["kind"] in CLEARED_BY), key=lambda e: e["event_id"])
    if not clearing:
        return
    alarms = session.execute(
        select(Alarm.id, Alarm.kind, Alarm.event_id, Alarm.meter, Alarm.account, Alarm.facts)
        .where(Alarm.node == node, Alarm.event_id.is_not(None), Alarm.cleared.is_(False),
               Alarm.kind.in_(sorted({CLEARED_BY[e["kind"]][0] for e in clearing})))
        .order_by(Alarm.event_id)
    ).all()  # fmt: skip
    cleared: dict[int, dt.datetime] = {}
    for event in clearing:
        kind, key = CLEARED_BY[event["kind"]]
        wanted = _key(key, event["meter"], event["account"], event["detail"])
        for alarm in alarms:
            if (wanted is not None and alarm.id not in cleared and alarm.kind == kind
                    and alarm.event_id < event["event_id"]
                    and _key(key, alarm.meter, alarm.account, alarm.facts) == wanted):  # fmt: skip
                cleared[alarm.id] = event["time"]
    for time in set(cleared.values()):
        ids = [i for i, t in cleared.items() if t == time]
        session.execute(
            update(Alarm).where(Alarm.id.in_(ids)).values(cleared=True, cleared_at=time)
        )
