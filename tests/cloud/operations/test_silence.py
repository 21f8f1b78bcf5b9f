"""A concentrator gone silent raises one stored alarm per silence, on every backend
(`cloud.operations.silence`): the clock moved across `silent_after`, the node's status and
batches through the real ingest, two sweeps racing, and the alarm cleared when it is heard."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.db import models
from cloud.db.models import NodeStatus
from cloud.ingest.handler import Ingest
from cloud.operations import silence
from cloud.operations.silence import KIND, Step, Swept, step
from ledger.chain import NodeKey
from tests.cloud.conftest import Clock, RegisterEdge
from tests.cloud.fake_edge import T0
from tests.cloud.helpers import open_ack

LIMIT = dt.timedelta(minutes=45)
NODE = "edge-0001"
SINCE = T0 - LIMIT  # heard_since at T0


@pytest.mark.parametrize(
    ("status", "online", "last_seen", "alarmed", "expected"),
    [
        ("active", True, SINCE - dt.timedelta(seconds=1), False, Step.RAISE),  # silent
        ("active", True, SINCE, False, None),  # heard exactly silent_after ago: on line
        ("active", False, SINCE - dt.timedelta(seconds=1), False, Step.RAISE),  # long offline
        ("active", False, T0, False, None),  # an offline status just now: a blip, so far
        ("active", True, None, False, None),  # never heard: not installed yet
        ("quarantined", True, SINCE - dt.timedelta(hours=1), False, None),
        ("retired", False, SINCE - dt.timedelta(days=1), False, None),
        ("active", True, SINCE - dt.timedelta(seconds=1), True, None),  # raised already
        ("active", True, T0, True, Step.CLEAR),  # heard again
        ("active", False, T0, True, None),  # a late last will clears nothing
        ("quarantined", True, T0, True, Step.CLEAR),
    ],
)
def test_the_rule(
    status: str, online: bool, last_seen: dt.datetime | None, alarmed: bool,
    expected: Step | None,
) -> None:  # fmt: skip
    assert step(status, online, last_seen, SINCE, alarmed) is expected


def sweep(sessions: sessionmaker[Session], now: dt.datetime) -> Swept:
    with sessions.begin() as session:
        return silence.sweep(session, now, LIMIT)


def silences(sessions: sessionmaker[Session]) -> list[models.Alarm]:
    with sessions() as session:
        query = select(models.Alarm).where(models.Alarm.kind == KIND).order_by(models.Alarm.id)
        return list(session.scalars(query))


def test_a_node_silent_past_the_limit_raises_one_alarm_cleared_when_it_is_heard(
    sessions: sessionmaker[Session], ingest: Ingest, clock: Clock, edge_of: RegisterEdge,
    cloud_key: NodeKey,
) -> None:  # fmt: skip
    edge = edge_of(NODE)
    edge_of("edge-0002")  # registered, never heard: not installed, no alarm
    ingest.handle_status(NODE, edge.status(online=True))  # heard at T0
    assert sweep(sessions, T0 + LIMIT) == Swept(0, 0)
    assert silences(sessions) == []
    assert sweep(sessions, T0 + LIMIT + dt.timedelta(seconds=1)) == Swept(1, 0)
    assert sweep(sessions, T0 + LIMIT + dt.timedelta(hours=5)) == Swept(0, 0)  # once
    [alarm] = silences(sessions)
    assert (alarm.node, alarm.severity, alarm.cleared, alarm.event_id) == (
        NODE, "warning", False, None)  # fmt: skip
    assert alarm.time == T0 + LIMIT  # when the silence began, not when a sweep saw it
    assert "its last status said online" in alarm.detail
    assert alarm.facts == {"last_seen": T0.isoformat(), "status": "online",
                           "silent_after_min": LIMIT // dt.timedelta(minutes=1)}  # fmt: skip

    back = clock.advance(hours=6)
    ack = open_ack(ingest.handle_batch(NODE, edge.payload(1, 1)), cloud_key)  # heard again
    assert ack.status.value == "ok"
    assert sweep(sessions, back + dt.timedelta(minutes=1)) == Swept(0, 1)
    assert sweep(sessions, back + dt.timedelta(minutes=2)) == Swept(0, 0)
    [alarm] = silences(sessions)
    assert (alarm.cleared, alarm.cleared_at) == (True, back)

    later = back + LIMIT + dt.timedelta(minutes=1)  # a second silence: a second alarm
    assert sweep(sessions, later) == Swept(1, 0)
    assert [(a.cleared, a.time) for a in silences(sessions)] == [
        (True, T0 + LIMIT), (False, back + LIMIT)]  # fmt: skip


def test_an_offline_node_is_alarmed_after_the_limit_and_a_late_last_will_clears_nothing(
    sessions: sessionmaker[Session], ingest: Ingest, clock: Clock, edge_of: RegisterEdge
) -> None:
    edge = edge_of(NODE)
    ingest.handle_status(NODE, edge.status(online=True))
    went = clock.advance(minutes=10)
    ingest.handle_status(NODE, edge.status(online=False))  # the broker's last will
    assert sweep(sessions, went + dt.timedelta(minutes=30)) == Swept(0, 0)  # may come back
    assert sweep(sessions, went + LIMIT + dt.timedelta(seconds=1)) == Swept(1, 0)
    [alarm] = silences(sessions)
    assert "its last status said offline" in alarm.detail
    assert (alarm.facts["last_seen"], alarm.facts["status"]) == (went.isoformat(), "offline")
    clock.advance(hours=2)
    ingest.handle_status(NODE, edge.status(online=False))  # said again, still gone
    assert sweep(sessions, clock() + dt.timedelta(minutes=1)) == Swept(0, 0)
    assert [a.cleared for a in silences(sessions)] == [False]
    ingest.handle_status(NODE, edge.status(online=True))
    assert sweep(sessions, clock() + dt.timedelta(minutes=1)) == Swept(0, 1)


def test_a_retired_node_raises_nothing(
    sessions: sessionmaker[Session], ingest: Ingest, edge_of: RegisterEdge
) -> None:
    edge = edge_of(NODE)
    ingest.handle_status(NODE, edge.status(online=True))
    with sessions.begin() as session:
        session.execute(update(models.Concentrator).values(status=NodeStatus.RETIRED.value))
    assert sweep(sessions, T0 + dt.timedelta(days=3)) == Swept(0, 0)


def _waiting_on_a_lock(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        return bool(session.execute(text(query)).scalar())


def test_two_sweeps_racing_raise_one_alarm(
    sessions: sessionmaker[Session], ingest: Ingest, edge_of: RegisterEdge
) -> None:
    """The first sweep has stored its alarm and not committed when the second decides the
    same node is due: the second's insert waits for the first (PostgreSQL: on the partial
    unique index; SQLite: `BEGIN IMMEDIATE`) and then stores nothing."""
    for node in (NODE, "edge-0002"):
        ingest.handle_status(node, edge_of(node).status(online=True))
    now = T0 + LIMIT + dt.timedelta(minutes=1)
    second: list[Swept] = []
    with sessions.begin() as first_session:
        first = silence.sweep(first_session, now, LIMIT)
        racer = threading.Thread(target=lambda: second.append(sweep(sessions, now)))
        racer.start()
        if sessions.kw["bind"].dialect.name == "postgresql":
            deadline = time.monotonic() + 10
            while racer.is_alive() and not _waiting_on_a_lock(sessions):  # its insert waits
                assert time.monotonic() < deadline, "the second sweep never reached its insert"
                time.sleep(0.02)
        else:
            time.sleep(0.3)
    racer.join(30)
    assert (first, second) == (Swept(2, 0), [Swept(0, 0)])
    assert sorted(a.node for a in silences(sessions)) == [NODE, "edge-0002"]
