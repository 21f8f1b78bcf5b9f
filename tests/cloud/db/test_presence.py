"""A concentrator's presence, worked out when read: its retained status and how long ago it
was last heard from (`cloud.db.presence`), in Python and as SQL, which must agree."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cloud.db.models import Concentrator
from cloud.db.presence import Presence, on_line, presence
from ledger.encoding import GENESIS_HASH

NOW = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
LIMIT = dt.timedelta(minutes=45)
HEARD_SINCE = NOW - LIMIT

CASES = [  # online, last seen, presence
    (True, NOW, Presence.ONLINE),
    (True, HEARD_SINCE, Presence.ONLINE),  # exactly the limit: still on line
    (True, HEARD_SINCE - dt.timedelta(seconds=1), Presence.SILENT),
    (True, NOW - dt.timedelta(days=3), Presence.SILENT),
    (True, None, Presence.SILENT),  # says online, never heard from
    (False, NOW, Presence.OFFLINE),  # its last will: offline however recent
    (False, None, Presence.OFFLINE),
]


@pytest.mark.parametrize(("online", "last_seen", "expected"), CASES)
def test_presence_from_status_and_silence(
    online: bool, last_seen: dt.datetime | None, expected: Presence
) -> None:
    assert presence(online, last_seen, HEARD_SINCE) is expected


def test_the_sql_counts_on_line_exactly_the_nodes_presence_does(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for number, (online, last_seen, _) in enumerate(CASES):
            session.add(Concentrator(
                node=f"edge-{number:04d}", public_key="", key_id="", online=online,
                last_seen=last_seen, head_hash=GENESIS_HASH, created=NOW,
            ))  # fmt: skip
    expected = {f"edge-{n:04d}" for n, case in enumerate(CASES) if case[2] is Presence.ONLINE}
    with Session(engine) as session:
        found = set(session.scalars(
            select(Concentrator.node).where(on_line(Concentrator, HEARD_SINCE))
        ))  # fmt: skip
        by_status = set(session.scalars(
            select(Concentrator.node).where(on_line(Concentrator, None))
        ))  # fmt: skip
    assert found == expected == {"edge-0000", "edge-0001"}
    assert by_status == {f"edge-{n:04d}" for n, case in enumerate(CASES) if case[0]}
