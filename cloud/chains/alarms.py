"""Alarms: what operators must see about a node, in one table (`cloud.db.models.Alarm`).

Two sources. The cloud raises its own (`raise_alarm`: a refused batch, a quarantine, an edge
that refused a recharge, a settlement that did not match), with a severity from `CLOUD_SEVERITY`.
The concentrators raise theirs with no network (low balance, arrears, relay, malicious load, a
bus down, read success low, …) and upload them as events of category `alarm`; the ingest copies
each into this table as it stores the batch (`copy_edge_alarms`), once per (node, event id), so
a batch sent again adds nothing. The edge's own words stay: kind, severity, meter, shop,
account, message, and its detail as `facts`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from cloud.db.bulk import upsert_rows
from cloud.db.models import Alarm

SEVERITIES = ("info", "warning", "critical")

# The cloud's kinds that are not warnings (a warning is the default).
CLOUD_SEVERITY = {
    "quarantined": "critical",
    "recharge_refused": "critical",  # the payer is owed money
    "recharge_after_void": "critical",
    "recharge_mismatch": "critical",
    "correction_mismatch": "critical",
    "refund_mismatch": "critical",
    "refund_settle_refused": "critical",
    "move_mismatch": "critical",
    "quarantine_cleared": "info",
}


def severity_of(kind: str) -> str:
    return CLOUD_SEVERITY.get(kind, "warning")


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
