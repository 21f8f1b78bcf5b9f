"""Fleet updates on every backend: waves offered as signed `update` commands, each box's
reports (real signed batches through the real ingest) moving its state, the next wave only
after the previous one is healthy and its pause has passed, and a stop on a failure."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.chains import commands
from cloud.db.models import Command, CommandStatus
from cloud.errors import Invalid, NotFound
from cloud.ingest.handler import Ingest
from cloud.operations import updates
from cloud.people.oplog import Actor
from ledger.chain import NodeKey
from ledger.signed import CommandKind, open_command, trusted
from tests.cloud.conftest import Clock, RegisterEdge
from tests.cloud.fake_edge import FakeEdge, ms

OPERATOR = Actor("op-li", "operator")
NODES = ["edge-a", "edge-b", "edge-c", "edge-d"]
OFFER = updates.Offer(7, "https://cloud.example/updates/bundles/" + "ab" * 32, "ab" * 32, 4096)
_events = itertools.count(1)
_outbox: dict[str, itertools.count[int]] = {}


@pytest.fixture
def fleet(edge_of: RegisterEdge) -> dict[str, FakeEdge]:
    _outbox.clear()
    return {node: edge_of(node) for node in NODES}


def start(sessions: sessionmaker[Session], key: NodeKey, clock: Clock, **kw: object) -> int:
    values: dict[str, object] = {"nodes": NODES, "site": None, "wave_size": 2, "wave_every_s": 0}
    values.update(kw)
    with sessions.begin() as session:
        rollout = updates.start(
            session,
            OFFER,
            key=key,
            actor=OPERATOR,
            now=clock(),
            **values,  # type: ignore[arg-type]
        )
        return rollout.id


def states(sessions: sessionmaker[Session], rollout_id: int) -> dict[str, str]:
    with sessions() as session:
        return {r.node: r.state for r in updates.node_rows(session, rollout_id)}


def rollout_state(sessions: sessionmaker[Session], rollout_id: int) -> tuple[str, str]:
    with sessions() as session:
        row = updates.get(session, rollout_id)
        return row.state, row.reason


def offered_command(sessions: sessionmaker[Session], rollout_id: int, node: str) -> str:
    with sessions() as session:
        row = next(r for r in updates.node_rows(session, rollout_id) if r.node == node)
        assert row.command_id is not None
        return row.command_id


def report(
    ingest: Ingest, edge: FakeEdge, rollout_id: int, command: str, *steps: str, reason: str = ""
) -> bytes:
    """The box's `update_state` events in one batch, as its sync sends them."""
    events = []
    for step in steps:
        n = next(_events)
        detail = {"rollout": f"rollout-{rollout_id}", "command": command, "version": 7,
                  "state": step, "reason": reason}  # fmt: skip
        events.append({"id": n, "t": ms(dt.datetime.now(dt.UTC)), "c": "event",
                       "k": "update_state", "d": detail})  # fmt: skip
    first = next(_outbox.setdefault(edge.node, itertools.count(1)))  # no gap: one item a batch
    payload = edge.payload(first, first, events=events)
    ingest.handle_batch(edge.node, payload)
    return payload


def test_waves_follow_health_and_the_rollout_finishes(
    sessions: sessionmaker[Session],
    ingest: Ingest,
    fleet: dict[str, FakeEdge],
    cloud_key: NodeKey,
    clock: Clock,
) -> None:
    rollout = start(sessions, cloud_key, clock)
    assert states(sessions, rollout) == {
        "edge-a": "offered", "edge-b": "offered", "edge-c": "waiting", "edge-d": "waiting"
    }  # fmt: skip
    with sessions() as session:
        row = session.get(Command, offered_command(sessions, rollout, "edge-a"))
        assert row is not None and row.kind == "update"
        signed = open_command(bytes(row.payload), trusted(cloud_key.public_key), "edge-a", clock())
    assert signed.kind is CommandKind.UPDATE
    assert dict(signed.args) == {"rollout": f"rollout-{rollout}", "version": 7, "url": OFFER.url,
                                 "sha256": OFFER.sha256, "size": 4096}  # fmt: skip
    a, b = (offered_command(sessions, rollout, n) for n in ("edge-a", "edge-b"))
    report(ingest, fleet["edge-a"], rollout, a, "downloading", "verified", "switched")
    assert states(sessions, rollout)["edge-a"] == "switched"
    payload = report(ingest, fleet["edge-a"], rollout, a, "healthy")
    assert states(sessions, rollout)["edge-c"] == "waiting"  # edge-b is not healthy yet
    report(ingest, fleet["edge-b"], rollout, b, "healthy")
    assert states(sessions, rollout) == {
        "edge-a": "healthy", "edge-b": "healthy", "edge-c": "offered", "edge-d": "offered"
    }  # fmt: skip
    ingest.handle_batch("edge-a", payload)  # sent again: nothing moves backwards or twice
    assert states(sessions, rollout)["edge-a"] == "healthy"
    for node in ("edge-c", "edge-d"):
        report(ingest, fleet[node], rollout, offered_command(sessions, rollout, node), "healthy")
    assert rollout_state(sessions, rollout) == ("done", "4 node(s) healthy on version 7")


def test_a_rollback_stops_the_rollout_with_the_boxs_reason(
    sessions: sessionmaker[Session],
    ingest: Ingest,
    fleet: dict[str, FakeEdge],
    cloud_key: NodeKey,
    clock: Clock,
) -> None:
    rollout = start(sessions, cloud_key, clock)
    a, b = (offered_command(sessions, rollout, n) for n in ("edge-a", "edge-b"))
    report(ingest, fleet["edge-a"], rollout, a, "healthy")
    report(ingest, fleet["edge-b"], rollout, b, "switched", "rolled_back",
           reason="unhealthy after 300 s: buses: no meter answered on bus1")  # fmt: skip
    assert rollout_state(sessions, rollout) == (
        "stopped", "edge-b rolled_back: unhealthy after 300 s: buses: no meter answered on bus1"
    )  # fmt: skip
    report(ingest, fleet["edge-b"], rollout, b, "healthy")  # too late: a final state stays
    ingest.advance_updates()
    assert states(sessions, rollout) == {
        "edge-a": "healthy", "edge-b": "rolled_back", "edge-c": "waiting", "edge-d": "waiting"
    }  # fmt: skip


def test_the_next_wave_waits_for_its_pause(
    sessions: sessionmaker[Session],
    ingest: Ingest,
    fleet: dict[str, FakeEdge],
    cloud_key: NodeKey,
    clock: Clock,
) -> None:
    rollout = start(sessions, cloud_key, clock, wave_size=3, wave_every_s=600)
    for node in ("edge-a", "edge-b", "edge-c"):
        report(ingest, fleet[node], rollout, offered_command(sessions, rollout, node), "healthy")
    assert states(sessions, rollout)["edge-d"] == "waiting"
    clock.advance(seconds=599)
    ingest.advance_updates()
    assert states(sessions, rollout)["edge-d"] == "waiting"
    clock.advance(seconds=1)
    ingest.advance_updates()
    assert states(sessions, rollout)["edge-d"] == "offered"


def test_a_refused_offer_or_a_report_for_another_command_is_taken_for_what_it_is(
    sessions: sessionmaker[Session],
    ingest: Ingest,
    fleet: dict[str, FakeEdge],
    cloud_key: NodeKey,
    clock: Clock,
) -> None:
    rollout = start(sessions, cloud_key, clock, nodes=["edge-a", "edge-b"], wave_size=1)
    a = offered_command(sessions, rollout, "edge-a")
    report(ingest, fleet["edge-a"], rollout, "f" * 32, "healthy")  # not the command offered
    report(ingest, fleet["edge-b"], rollout, a, "healthy")  # another node's report
    assert states(sessions, rollout) == {"edge-a": "offered", "edge-b": "waiting"}
    with sessions.begin() as session:
        result = {"status": "refused", "reason": "url must be an http(s) URL"}
        commands.record_outcome(
            session, "edge-a", a, CommandStatus.FAILED, result=result, now=clock()
        )
    ingest.advance_updates()
    assert states(sessions, rollout)["edge-a"] == "failed"
    assert rollout_state(sessions, rollout) == (
        "stopped", "edge-a failed: command failed: url must be an http(s) URL"
    )  # fmt: skip


def test_what_the_cloud_can_check_is_checked_and_nothing_is_stored(
    sessions: sessionmaker[Session], engine: Engine, fleet: dict[str, FakeEdge],
    cloud_key: NodeKey, clock: Clock,
) -> None:  # fmt: skip
    bad: list[tuple[type[Exception], dict[str, object]]] = [
        (Invalid, {"nodes": NODES, "site": 1}),
        (Invalid, {"nodes": None, "site": None}),
        (NotFound, {"nodes": ["edge-zz"]}),
        (Invalid, {"wave_size": 0}),
    ]
    for error, kw in bad:
        with pytest.raises(error):
            start(sessions, cloud_key, clock, **kw)
    for offer in (
        updates.Offer(7, "file:///etc/passwd", "ab" * 32, 1),
        updates.Offer(7, OFFER.url, "AB" * 32, 1),
        updates.Offer(0, OFFER.url, "ab" * 32, 1),
        updates.Offer(7, OFFER.url, "ab" * 32, 0),
    ):
        with pytest.raises(Invalid), sessions.begin() as session:
            updates.start(session, offer, nodes=NODES, site=None, wave_size=1, wave_every_s=0,
                          key=cloud_key, actor=OPERATOR, now=clock())  # fmt: skip
    with sessions() as session:
        assert session.scalars(select(Command)).all() == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
DETAILS = st.fixed_dictionaries(
    {},
    optional={
        "rollout": JSON | st.just("rollout-1") | st.just("rollout-99999999999999"),
        "command": JSON,
        "state": JSON | st.sampled_from(["healthy", "refused", "switched", "waiting"]),
        "reason": JSON | st.text(min_size=300, max_size=2000),
    },
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(detail=DETAILS | JSON)
def test_any_update_state_detail_moves_a_row_forward_or_changes_nothing(
    sessions: sessionmaker[Session], fleet: dict[str, FakeEdge], cloud_key: NodeKey,
    clock: Clock, detail: object,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        if updates.node_rows(session, 1) == []:
            updates.start(session, OFFER, nodes=["edge-a"], site=None, wave_size=1,
                          wave_every_s=0, key=cloud_key, actor=OPERATOR, now=clock())  # fmt: skip
        event = {"kind": "update_state", "node": "edge-a", "detail": detail}
        updates.note_events(session, "edge-a", [event], key=cloud_key, now=clock())
        row = updates.node_rows(session, 1)[0]
        assert row.state in updates.NODE_STATES and len(row.reason) <= updates.REASON_LENGTH
