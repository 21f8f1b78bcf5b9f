"""Commissioning reports a concentrator signed: taken once, checked against the registry.

    row, new = accept(session, node, signed, uploaded_by=user, now=now)

`signed` is the file `voltbook-edge commission` writes (`ledger.commissioning`): it is taken
only if the node's registered Ed25519 key signed exactly that report, the report has every
field it must and nothing else, and it names this node; anything else is `Refused` (422) and
nothing is stored. The same report again is the row stored before (`new` False). The
registry's meters for the node are compared at upload (`registry_view`): `missing` are in the
registry and not found on the buses, `unknown` are found and not in the registry. A report is
`clean` when every meter it names was found, read every time and (if tested) its relay
obeyed, nothing was extra or incomplete, and the registry agrees.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models
from cloud.db.commissioning import CommissioningReport
from cloud.db.registry import Meter
from cloud.errors import NotFound, Refused
from ledger.chain import load_public_key
from ledger.commissioning import verify_report
from ledger.encoding import canonical_json
from ledger.errors import DecodeError

RELAYS_FINE = ("ok", "not_tested", "no_relay")


def registry_view(session: Session, node: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """What the registry says of the node's meters against what the report found."""
    registered = {
        (m.bus, m.address) for m in session.scalars(select(Meter).where(Meter.node == node))
    }
    there = {(m["bus"], m["address"]) for m in report["meters"] if m["status"] != "missing"}
    return {
        "registered": len(registered),
        "missing": [{"bus": b, "address": a} for b, a in sorted(registered - there)],
        "unknown": [{"bus": b, "address": a} for b, a in sorted(there - registered)]
        if registered
        else [],  # a node the registry has no meters for (a demo site): nothing to compare
    }


def is_clean(report: Mapping[str, Any], registry: Mapping[str, Any]) -> bool:
    meters_fine = all(
        m["status"] == "found" and m["reads_ok"] == m["reads_tried"] and m["relay"] in RELAYS_FINE
        for m in report["meters"]
    )
    buses_fine = all(b["complete"] and not b["error"] for b in report["buses"])
    return meters_fine and buses_fine and not registry["missing"] and not registry["unknown"]


def accept(
    session: Session, node: str, signed: object, *, uploaded_by: str, now: dt.datetime
) -> tuple[CommissioningReport, bool]:
    """Store the report `node` signed (or find the one stored before); `Refused` if not."""
    concentrator = session.get(models.Concentrator, node)
    if concentrator is None:
        raise NotFound(f"concentrator {node} is not registered")
    try:
        report = verify_report(signed, load_public_key(concentrator.public_key.encode()))
    except DecodeError as exc:
        raise Refused(f"commissioning report of {node}: {exc}") from None
    if report["node"] != node:
        raise Refused(f"the report is of node {report['node']}, not {node}")
    body = canonical_json(report)
    digest = hashlib.sha256(body).hexdigest()
    stored = session.scalar(select(CommissioningReport).where(CommissioningReport.digest == digest))
    if stored is not None:
        return stored, False
    assert isinstance(signed, dict)
    registry = registry_view(session, node, report)
    row = CommissioningReport(
        node=node,
        digest=digest,
        body=body.decode(),
        key_id=signed["key_id"],
        signature=signed["signature"],
        taken_at=dt.datetime.fromisoformat(report["taken_at"]),
        uploaded=now,
        uploaded_by=uploaded_by,
        against_registry=registry,
        clean=is_clean(report, registry),
    )
    session.add(row)
    session.flush()
    return row, True


def latest(session: Session, node: str) -> CommissioningReport:
    row = session.scalar(
        select(CommissioningReport)
        .where(CommissioningReport.node == node)
        .order_by(CommissioningReport.taken_at.desc(), CommissioningReport.id.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"concentrator {node} has no commissioning report")
    return row


def report_of(row: CommissioningReport) -> dict[str, Any]:
    """The report a row holds (its body was checked and signed when it was taken)."""
    report: dict[str, Any] = json.loads(row.body)
    return report
