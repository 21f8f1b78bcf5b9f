"""A concentrator gone silent, as a stored alarm: `node_silent`, one per silence, cleared when
the node is heard from again, so it is on the alarms screen, acknowledged with a note, printed
and counted like any other alarm.

`cloud.db.presence` works a node's presence out when it is read; an alarm needs a row, so
`cloud.server` runs `sweep` every `SWEEP_EVERY_S` with the cloud's clock. What a sweep does
with each node is `step` (a pure rule):

| the node                                                       | open alarm | step   |
|----------------------------------------------------------------|------------|--------|
| active, heard from once, not on line, nothing for silent_after | none       | raise  |
| on line (`presence`: its status says so and it was heard)      | open       | clear  |
| anything else (an offline status younger than silent_after: a  | either     | none   |
| dropped connection may come back; never heard: not installed)  |            |        |

An offline status (the broker's last will) raises nothing until silent_after has passed since
it came, and only an online node clears: a late last will, after the alarm, clears nothing.
The alarm's time is when the silence began (its last word + silent_after), its `cleared_at`
when the node was heard again (`last_seen` at the sweep that clears it), whenever sweeps run.
Its detail is English system text for the API; its facts (`last_seen`, `status`,
`silent_after_min`) are what the console words it with in the page's language.

Two cloud services may sweep at once: at most one open `node_silent` alarm per node exists
(`alarms_one_open_silence`, migration 0037), and the insert does nothing on it, so a silence
raises one alarm whichever sweep sees it first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.chains.alarm_kinds import severity_of
from cloud.db.models import OPEN_SILENCE, Alarm, Concentrator, NodeStatus
from cloud.db.presence import Presence, presence
from cloud.db.sql import upsert
from cloud.keys import CLOUD_NODE

KIND = "node_silent"
SWEEP_EVERY_S = 60


class Step(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"


def step(
    status: str,
    online: bool,
    last_seen: dt.datetime | None,
    heard_since: dt.datetime,
    alarmed: bool,
) -> Step | None:
    """What the sweep does with a node (`heard_since`: now − silent_after; `alarmed`: it has
    an open `node_silent` alarm)."""
    now_on_line = presence(online, last_seen, heard_since) is Presence.ONLINE
    if alarmed:
        return Step.CLEAR if now_on_line else None
    quiet = last_seen is not None and last_seen < heard_since
    return Step.RAISE if status == NodeStatus.ACTIVE.value and quiet else None


@dataclass(frozen=True, slots=True)
class Swept:
    raised: int  # alarms this sweep stored (a racing sweep's are not counted)
    cleared: int


def sweep(session: Session, now: dt.datetime, silent_after: dt.timedelta) -> Swept:
    """Raise and clear the `node_silent` alarms the nodes' presence calls for, in `session`'s
    transaction."""
    heard_since = now - silent_after
    alarmed = set(session.scalars(select(Alarm.node).where(Alarm.kind == KIND, OPEN_SILENCE)))
    node = Concentrator
    due: list[dict[str, object]] = []
    back: list[str] = []
    for name, status, online, seen in session.execute(
        select(node.node, node.status, node.online, node.last_seen)
        .where(node.node != CLOUD_NODE)  # the cloud's own chain is no concentrator
        .order_by(node.node)
    ):
        match step(status, bool(online), seen, heard_since, name in alarmed):
            case Step.RAISE:
                assert seen is not None  # `step` raises only for a node heard from
                due.append(_alarm(name, bool(online), seen, silent_after))
            case Step.CLEAR:
                back.append(name)
    raised = cleared = 0
    if due:
        insert = upsert(session, Alarm.__table__).values(due)
        insert = insert.on_conflict_do_nothing(index_elements=["node"], index_where=OPEN_SILENCE)
        raised = len(session.execute(insert.returning(Alarm.id)).all())
    if back:
        heard = select(node.last_seen).where(node.node == Alarm.node).scalar_subquery()
        cleared = session.execute(
            update(Alarm)
            .where(Alarm.kind == KIND, OPEN_SILENCE, Alarm.node.in_(back))
            .values(cleared=True, cleared_at=heard)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    return Swept(raised, cleared)


def _alarm(
    node: str, online: bool, seen: dt.datetime, silent_after: dt.timedelta
) -> dict[str, object]:
    said = "online" if online else "offline"
    return {"node": node, "event_id": None, "kind": KIND, "severity": severity_of(KIND),
            "meter": None, "shop": None, "account": None,
            "facts": {"last_seen": seen.isoformat(), "status": said,
                      "silent_after_min": int(silent_after.total_seconds() // 60)},
            "detail": f"nothing heard since {seen:%Y-%m-%d %H:%M:%S} UTC "
                      f"(its last status said {said})",
            "time": seen + silent_after, "cleared": False, "cleared_at": None,
            "acknowledged": None, "acknowledged_by": None, "note": ""}  # fmt: skip
