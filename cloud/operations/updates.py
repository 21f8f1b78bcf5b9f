"""Fleet updates: offer a signed runtime bundle to concentrators in waves, and follow each box.

    POST /updates ─► `start`: a rollout (running) and a row per node (waiting, wave = i // size)
                  ─► `advance`: wave 0 offered (a signed `update` command per node: offered)
    the box reports `update_state` events (`edge.sync.update`) ─► `note_events`: each node's
    state moves forward by `NODE_STATES` (a batch sent again changes nothing)
    `advance` (after such a batch, and every minute from the command dispatcher):
        a node failed or rolled back, or its command was refused or expired ─► stopped (no
        later wave; the reason names the node); its whole wave healthy and `wave_every_s`
        passed since that wave was offered ─► the next wave; every node healthy ─► done

The bundle's own signature is the release key's, checked by the box (`voltbook_fw.verify`);
the command's signature is the cloud's. The cloud checks only what it can: the URL's scheme,
the hash's shape and that every node is a known, active concentrator.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.chains import commands
from cloud.db.models import Command, Concentrator, NodeStatus
from cloud.db.updates import UpdateNode, UpdateRollout
from cloud.errors import Invalid, NotFound
from cloud.people import oplog
from cloud.registry.entities import nodes_of_sites
from ledger.chain import NodeKey
from ledger.signed import CommandKind

log = logging.getLogger(__name__)

MAX_URL = 2048  # edge.sync.update.MAX_URL mirrors it
MAX_BUNDLE_BYTES = 2 << 30
MAX_NODES = 10_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
STATE_EVENT = "update_state"  # the edge's event (edge.sync.update.STATE_EVENT)
REASON_LENGTH = 400

# Rollout: running → done | stopped.
RUNNING, DONE, STOPPED = "running", "done", "stopped"
# A node's states, and where each may go (the box may skip steps: a batch can carry several).
WAITING, OFFERED, HEALTHY, ROLLED_BACK, FAILED = (
    "waiting",
    "offered",
    "healthy",
    "rolled_back",
    "failed",
)
_AFTER_OFFER = ("downloading", "verified", "switched", HEALTHY, ROLLED_BACK, FAILED)
NODE_STATES: Mapping[str, tuple[str, ...]] = {
    WAITING: (OFFERED,),
    OFFERED: _AFTER_OFFER,
    "downloading": _AFTER_OFFER[1:],
    "verified": _AFTER_OFFER[2:],
    "switched": (HEALTHY, ROLLED_BACK, FAILED),
    HEALTHY: (),
    ROLLED_BACK: (),
    FAILED: (),
}
BAD = (ROLLED_BACK, FAILED)
# What the box says → the node's state (`refused`: the updater would not take the offer).
REPORTED = {**{s: s for s in _AFTER_OFFER}, "refused": FAILED}


@dataclass(frozen=True, slots=True)
class Offer:
    version: int
    url: str
    sha256: str
    size: int

    def check(self) -> None:
        if self.version < 1:
            raise Invalid("version must be an integer ≥ 1")
        if (
            len(self.url) > MAX_URL
            or not self.url.startswith(("http://", "https://"))
            or any(c.isspace() or ord(c) < 0x20 for c in self.url)
        ):
            raise Invalid(f"url must be an http(s) URL of up to {MAX_URL} characters")
        if not _SHA256.fullmatch(self.sha256):
            raise Invalid("sha256 must be 64 lower-case hex digits")
        if not 1 <= self.size <= MAX_BUNDLE_BYTES:
            raise Invalid(f"size must be 1 … {MAX_BUNDLE_BYTES} bytes")


def reference(rollout_id: int) -> str:
    """The `rollout` argument of its commands, and how a box's report names it."""
    return f"rollout-{rollout_id}"


def start(
    session: Session,
    offer: Offer,
    *,
    nodes: Sequence[str] | None,
    site: int | None,
    wave_size: int,
    wave_every_s: int,
    key: NodeKey,
    actor: oplog.Actor,
    now: dt.datetime,
) -> UpdateRollout:
    """A rollout to `nodes` (or every node of `site`), its first wave offered at once."""
    offer.check()
    if (nodes is None) == (site is None):
        raise Invalid("name either nodes or a site")
    if not 1 <= wave_size <= MAX_NODES or not 0 <= wave_every_s <= 7 * 86_400:
        raise Invalid("wave_size must be 1 … 10000 and wave_every_s 0 … 604800")
    if nodes is not None:
        targets = sorted(set(nodes))
    else:
        assert site is not None
        targets = sorted(nodes_of_sites(session, [site]))
    if not targets:
        raise Invalid("no concentrator to update" + (f" in site {site}" if site else ""))
    if len(targets) > MAX_NODES:
        raise Invalid(f"at most {MAX_NODES} nodes in one rollout")
    known = dict(
        session.execute(
            select(Concentrator.node, Concentrator.status).where(Concentrator.node.in_(targets))
        ).all()
    )
    if missing := [n for n in targets if n not in known]:
        raise NotFound(f"no such concentrator: {', '.join(missing[:10])}")
    if inactive := [n for n in targets if known[n] != NodeStatus.ACTIVE.value]:
        raise Invalid(f"not active (quarantined?): {', '.join(inactive[:10])}")
    rollout = UpdateRollout(
        version=offer.version,
        url=offer.url,
        sha256=offer.sha256,
        size=offer.size,
        wave_size=wave_size,
        wave_every_s=wave_every_s,
        state=RUNNING,
        reason="",
        created=now,
        created_by=actor.user,
        updated=now,
    )
    session.add(rollout)
    session.flush()
    for index, node in enumerate(targets):
        session.add(
            UpdateNode(
                rollout_id=rollout.id,
                node=node,
                wave=index // wave_size,
                state=WAITING,
                reason="",
                updated=now,
            )
        )
    session.flush()
    after = {"version": offer.version, "sha256": offer.sha256, "nodes": len(targets)}
    oplog.record(session, actor, "update.start", reference(rollout.id), None, after, now)
    advance(session, rollout, key=key, now=now)
    return rollout


def node_rows(session: Session, rollout_id: int) -> list[UpdateNode]:
    return list(
        session.scalars(
            select(UpdateNode)
            .where(UpdateNode.rollout_id == rollout_id)
            .order_by(UpdateNode.wave, UpdateNode.node)
        )
    )


def get(session: Session, rollout_id: int) -> UpdateRollout:
    found = session.get(UpdateRollout, rollout_id)
    if found is None:
        raise NotFound(f"update {rollout_id} does not exist")
    return found


def _move(row: UpdateNode, state: str, reason: str, now: dt.datetime) -> bool:
    """The node's state forward by `NODE_STATES`; False (nothing changed) otherwise."""
    if state not in NODE_STATES[row.state]:
        return False
    row.state, row.reason, row.updated = state, reason[:REASON_LENGTH], now
    return True


def advance(session: Session, rollout: UpdateRollout, *, key: NodeKey, now: dt.datetime) -> None:
    """Stop, finish or offer the next wave, as the nodes' states say."""
    if rollout.state != RUNNING:
        return
    rows = node_rows(session, rollout.id)
    _note_refused_commands(session, rows, now)
    if bad := [r for r in rows if r.state in BAD]:
        first = bad[0]
        _finish(rollout, STOPPED, f"{first.node} {first.state}: {first.reason}", now)
        return
    offered = [r.wave for r in rows if r.state != WAITING]
    wave = max(offered, default=-1)
    if wave >= 0:
        current = [r for r in rows if r.wave == wave]
        if any(r.state != HEALTHY for r in current):
            return
        last = max(r.offered for r in current if r.offered is not None)
        if now < last + dt.timedelta(seconds=rollout.wave_every_s):
            return
    following = [r for r in rows if r.wave == wave + 1]
    if not following:
        _finish(rollout, DONE, f"{len(rows)} node(s) healthy on version {rollout.version}", now)
        return
    args = {
        "rollout": reference(rollout.id),
        "version": rollout.version,
        "url": rollout.url,
        "sha256": rollout.sha256,
        "size": rollout.size,
    }
    for row in following:
        command = commands.issue(
            session, row.node, CommandKind.UPDATE, args, key=key, now=now,
            operator=rollout.created_by,
        )  # fmt: skip
        _move(row, OFFERED, f"wave {row.wave}", now)
        row.command_id, row.offered = command.id, now
    rollout.updated = now
    log.info("update %d: wave %d offered to %d node(s)", rollout.id, wave + 1, len(following))


def _finish(rollout: UpdateRollout, state: str, reason: str, now: dt.datetime) -> None:
    rollout.state, rollout.reason, rollout.updated = state, reason[:REASON_LENGTH], now
    log.info("update %d: %s (%s)", rollout.id, state, reason)


def _note_refused_commands(session: Session, rows: Iterable[UpdateNode], now: dt.datetime) -> None:
    """An offer the box's desk refused, or one that expired undelivered: the node failed."""
    waiting = {r.command_id: r for r in rows if r.state == OFFERED and r.command_id}
    if not waiting:
        return
    found = session.execute(
        select(Command.id, Command.status, Command.result).where(
            Command.id.in_(list(waiting)),
            Command.status.in_([s.value for s in commands.REFUSED]),
        )
    ).all()
    for command_id, status, result in found:
        why = (result or {}).get("reason") if isinstance(result, dict) else None
        _move(waiting[command_id], FAILED, f"command {status}: {why or 'no reason given'}", now)


def note_events(
    session: Session,
    node: str,
    events: Iterable[Mapping[str, Any]],
    *,
    key: NodeKey,
    now: dt.datetime,
) -> None:
    """A batch's `update_state` events: each moves the node's row of its rollout (the command
    must be the one offered), then the rollout advances."""
    touched: set[int] = set()
    for event in events:
        if event["kind"] != STATE_EVENT or event["node"] != node:
            continue
        detail = event["detail"] if isinstance(event["detail"], Mapping) else {}
        named, command, said = detail.get("rollout"), detail.get("command"), detail.get("state")
        state = REPORTED.get(said) if isinstance(said, str) else None  # anything may arrive
        if not isinstance(named, str) or not named.startswith("rollout-") or state is None:
            continue
        number = named.removeprefix("rollout-")
        if not number.isdigit() or len(number) > 12:
            continue
        row = session.scalars(
            select(UpdateNode).where(UpdateNode.rollout_id == int(number), UpdateNode.node == node)
        ).one_or_none()
        if row is None or row.command_id != command:
            continue
        reason = detail.get("reason")
        if _move(row, state, reason if isinstance(reason, str) else "", now):
            touched.add(row.rollout_id)
    for rollout_id in sorted(touched):
        advance(session, get(session, rollout_id), key=key, now=now)


def advance_all(sessions: sessionmaker[Session], *, key: NodeKey, now: dt.datetime) -> int:
    """Every running rollout, each in its own transaction; how many there were."""
    with sessions() as session:
        running = list(
            session.scalars(select(UpdateRollout.id).where(UpdateRollout.state == RUNNING))
        )
    for rollout_id in running:
        with sessions.begin() as session:
            rollout = session.get(UpdateRollout, rollout_id, with_for_update=True)
            if rollout is not None:
                advance(session, rollout, key=key, now=now)
    return len(running)


__all__ = ["NODE_STATES", "Offer", "advance", "advance_all", "note_events", "start"]
