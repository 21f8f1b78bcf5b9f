"""Revision 0011 on a database with data, on every backend: the concentrators' alarms stored
before it (in `events`) are copied into `alarms`, open, with their severity and message; the
receipts keep their rows and gain empty site and merchant names."""

from __future__ import annotations

import json

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from cloud.db.engine import alembic_config, upgrade

EVENTS = [
    (1, "alarm", "low_balance", {"severity": "warning", "message": "12.00 yuan left"}),
    (2, "alarm", "relay_failed", {"severity": "critical", "message": "did not open"}),
    (3, "alarm", "odd", {"severity": "LOUD", "message": 5}),
    (4, "event", "read_round", {"message": "2 of 2 read"}),
]


def test_the_concentrators_alarms_before_it_are_copied(engine) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        before = ScriptDirectory.from_config(config).get_revision("0011").down_revision
        command.downgrade(config, str(before))
    with engine.begin() as connection:
        for event_id, category, kind, detail in EVENTS:
            connection.execute(
                text("INSERT INTO events (node, event_id, kind, category, meter, shop, account, "
                     "time, detail) VALUES ('edge-0001', :id, :kind, :category, NULL, 'S101', "
                     "'A0001', '2026-11-24 08:00:00+00:00', :detail)"),
                {"id": event_id, "kind": kind, "category": category,
                 "detail": json.dumps(detail)},
            )  # fmt: skip
        connection.execute(
            text("INSERT INTO receipts (number, kind, ref, account, shop, fen, method, operator, "
                 "time, transfer, balance_fen, detail) VALUES ('2026-000001', 'recharge', 'P1', "
                 "'A0001', 'S101', 100, 'cash', 'op', '2026-11-24 08:00:00+00:00', 'ab', 30200, "
                 "'{}')")
        )  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        alarms = connection.execute(
            text("SELECT event_id, kind, severity, shop, account, detail, cleared, acknowledged, "
                 "note FROM alarms ORDER BY event_id")
        ).all()  # fmt: skip
        receipt = connection.execute(text("SELECT site_id, site, merchant FROM receipts")).one()
    assert [tuple(a) for a in alarms] == [
        (1, "low_balance", "warning", "S101", "A0001", "12.00 yuan left", False, None, ""),
        (2, "relay_failed", "critical", "S101", "A0001", "did not open", False, None, ""),
        (3, "odd", "warning", "S101", "A0001", "", False, None, ""),  # as the ingest copies it
    ]
    assert tuple(receipt) == (None, "", "")
