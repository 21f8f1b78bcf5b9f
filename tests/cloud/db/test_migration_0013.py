"""Revision 0013 on a database with data, on every backend: the concentrators' alarms still
open whose end (`bus_up_again` …) is already stored are cleared at that end's time, on the same
key and only by an end after them; the others stay open, with no `cleared_at`."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import text

from cloud.db.engine import alembic_config, upgrade

# (event id, category, kind, meter, account, minute, detail)
EVENTS = [
    (1, "alarm", "bus_down", None, None, 0, {"bus": "rs485-1"}),
    (2, "alarm", "bus_down", None, None, 1, {"bus": "rs485-2"}),
    (3, "alarm", "arrears_trip", None, "A0001", 2, {}),
    (4, "event", "bus_up_again", None, None, 3, {"bus": "rs485-1"}),
    (5, "alarm", "arrears_close", None, "A0002", 4, {}),
    (6, "alarm", "bus_down", None, None, 5, {"bus": "rs485-1"}),  # down again after its end
    (7, "event", "meter_readable_again", "M1", None, 6, {}),  # before no alarm of its meter
    (8, "alarm", "meter_unreadable", "M1", None, 7, {}),
]


def test_alarms_whose_end_is_stored_are_cleared(engine) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0011")
    with engine.begin() as connection:
        for event_id, category, kind, meter, account, minute, detail in EVENTS:
            values = {"id": event_id, "kind": kind, "category": category, "meter": meter,
                      "account": account, "time": f"2026-11-24 08:0{minute}:00+00:00",
                      "detail": json.dumps(detail)}  # fmt: skip
            connection.execute(
                text("INSERT INTO events (node, event_id, kind, category, meter, shop, account, "
                     "time, detail) VALUES ('edge-0001', :id, :kind, :category, :meter, NULL, "
                     ":account, :time, :detail)"), values,
            )  # fmt: skip
            if category == "alarm":
                connection.execute(
                    text("INSERT INTO alarms (node, event_id, kind, severity, meter, account, "
                         "detail, facts, time, cleared, note) VALUES ('edge-0001', :id, :kind, "
                         "'warning', :meter, :account, '', :detail, :time, false, '')"), values,
                )  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT event_id, cleared, cleared_at FROM alarms ORDER BY event_id")
        ).all()
    shown = [(e, c, None if t is None else str(t)[:19]) for e, c, t in rows]
    assert shown == [
        (1, True, "2026-11-24 08:03:00"),
        (2, False, None),
        (3, False, None),  # another account's close
        (5, False, None),
        (6, False, None),
        (8, False, None),
    ]
