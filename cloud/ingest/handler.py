"""Ingest of concentrator uplinks: verify, store idempotently, acknowledge
(docs/architecture.md §7, §9).

`Ingest.handle_batch(node, payload)` takes the bytes published on `vb/{node}/up` and returns
the signed `Ack` to publish on `vb/{node}/ack`, after the database commit:

| situation | ack | stored |
|---|---|---|
| not a batch, or `batch.node` is not the topic's node, or node unknown | `refused` | an alarm |
| node quarantined | `quarantined` | nothing |
| node retired (taken over by another box, `cloud.operations.takeovers`) | `refused` | an alarm |
| signed by another key, or its checkpoint does not verify | `quarantined` | quarantine, alarm |
| a key rotation that cannot be followed (`ledger.key_rotation`) | `refused` | an alarm (once) |
| `from_seq` beyond the cloud's head + 1, or outbox ids skip past `upto` | `gap` | nothing |
| an entry at a stored seq hashes differently (fork) | `quarantined` | quarantine, alarm |
| otherwise | `ok` with the new head | new entries, checkpoint, balances, readings, events, … |

Each batch is verified and stored in one transaction holding the node's row lock, so two
workers with successive batches of one node take turns, and each sees the head the other left.
Readings and events are inserted `ON CONFLICT DO NOTHING` and overlapping ledger entries are
checked, not re-inserted: a duplicate, a retry or an older batch overtaken by a newer one
acknowledges the current state and stores nothing twice. The events of category `alarm` are
copied into `alarms` too (`cloud.chains.alarms.copy_edge_alarms`), once per event, and the
events saying a condition is over clear the open alarm they answer (`clear_edge_alarms`).

Outbox continuity: `upto` in an ack promises the edge that everything up to that outbox id is
stored, so the edge may prune it. A batch whose `first` lies beyond `upto + 1` would let an
earlier, lost batch be pruned unseen, so it is answered `gap` like a ledger gap (except at
first contact, `upto` 0, when the cloud cannot know what the edge pruned before).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cloud.chains import commands, key_rotations, rollups
from cloud.chains import store as chain_store
from cloud.chains.alarms import clear_edge_alarms, copy_edge_alarms, raise_alarm
from cloud.chains.locks import lock
from cloud.chains.projection import Appended, VerifiedEntry, entry_row, project
from cloud.db.bulk import (
    TIME,
    StoredBefore,
    insert_entries,
    insert_readings,
    update_meter_states,
    upsert_rows,
)
from cloud.db.engine import session_factory
from cloud.db.models import (
    Alarm,
    Command,
    Concentrator,
    Event,
    LedgerEntry,
    NodeStatus,
    Recharge,
    RechargeStatus,
)
from cloud.db.models import Checkpoint as CheckpointRow
from cloud.db.partitions import ensure_partitions, forget_known_partitions
from cloud.db.retry import retrying
from cloud.db.sql import table_of, upsert
from cloud.errors import NotFound, Quarantined, Refused
from cloud.ingest.checks import Contents, prepare_contents, verify_ledger
from cloud.keys import CLOUD_NODE
from cloud.operations import moves, ownership, settlements, updates
from cloud.operations.recharges import post_transfer
from cloud.operations.states import RECHARGE, RechargeEvent
from ledger.accounts import Pocket, pocket_id
from ledger.chain import Entry, NodeKey, key_id, load_public_key
from ledger.encoding import GENESIS_HASH
from ledger.key_rotation import KeyRotation, signing_keys
from ledger.signed import ACK_TAG, OplogHead, sign
from ledger.transfers import Code, Kind
from ledger.wire import (
    Ack,
    AckStatus,
    Batch,
    Status,
    WireError,
    decode_batch,
    status_rotations,
)

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
# Long enough for a failover of the hot standby's test timings, short enough that paho's
# network thread (which calls `handle_batch`) answers the broker's keepalive; beyond it the
# edge's resend is the retry.
RETRY_PATIENCE_S = 10.0


@dataclass(frozen=True, slots=True)
class _Head:
    seq: int
    head: bytes
    upto: int

    @classmethod
    def of(cls, row: Concentrator | _NodeState | None) -> _Head:
        if row is None:
            return cls(0, GENESIS_HASH, 0)
        return cls(row.head_seq, bytes(row.head_hash), row.upto)


@dataclass(slots=True)
class _NodeState:
    """The `concentrators` columns ingest reads and writes (plain Core, no ORM unit of work:
    it is on the path of every batch)."""

    node: str
    public_key: str
    status: str
    quarantine_reason: str
    head_seq: int
    head_hash: bytes
    upto: int
    last_seen: dt.datetime | None

    @classmethod
    def lock(cls, session: Session, node: str) -> _NodeState | None:
        """The node's row, locked (`cloud.chains.locks`), or None if the node is not registered."""
        table = Concentrator.__table__
        found = session.execute(
            select(*(table.c[name] for name in cls.__slots__))
            .where(table.c.node == node)
            .with_for_update()
        ).one_or_none()
        return None if found is None else cls(*found)

    def save(self, session: Session) -> None:
        table = table_of(Concentrator.__table__)
        session.execute(
            table.update()
            .where(table.c.node == self.node)
            .values({name: getattr(self, name) for name in self.__slots__[2:]})
        )


class Ingest:
    """The cloud side of the sync contract; thread-safe (each call uses its own session)."""

    def __init__(
        self, engine: Engine, key: NodeKey, now: Clock, *, patience: float = RETRY_PATIENCE_S
    ) -> None:
        self.engine = engine
        self.key = key
        self._now = now
        self.patience = patience  # how long a batch's transaction is retried (`cloud.db.retry`)
        self._sessions = session_factory(engine)
        self._readers = session_factory(engine, read_only=True)
        # The latest signed operator-log head, carried by every ack (`cloud.server` sets it to
        # `cloud.people.oplog_heads.Anchor.latest`).
        self.oplog_head: Callable[[], OplogHead | None] = lambda: None
        with self._sessions.begin() as session:
            chain_store.ensure_cloud_node(session, key, now())

    # -- uplink batches -------------------------------------------------------------------------
    def handle_batch(self, node: str, payload: bytes) -> bytes:
        """The signed ack for a batch from `vb/{node}/up`, for any bytes: a payload that is no
        batch (`decode_batch` is total) or holds a value the database could not store
        (`prepare_contents`) is `refused`, with an alarm. A lost connection is retried for a
        while (`cloud.db.retry`); database errors after that propagate (the database is down:
        the caller must then not acknowledge, the edge resends)."""
        now = self._now()
        try:
            batch = decode_batch(payload)
            if batch.node != node:
                raise Refused(f"batch of node {batch.node!r} published on {node!r}'s topic")
            contents = prepare_contents(node, batch)
        except (WireError, Refused) as exc:
            return self._refuse(node, str(exc), now)

        def attempt() -> tuple[bytes, bool]:
            try:
                return self._ingest(node, batch, contents, now, careful=False)
            except StoredBefore:  # readings under new outbox ids were stored before after all
                log.warning("node %s: outbox %d..%d holds stored readings", node, batch.first,
                            batch.upto)  # fmt: skip
                return self._ingest(node, batch, contents, now, careful=True)

        try:
            # A batch's storing is idempotent, so a transaction cut by a failover is run again
            # whole against the new primary (`cloud.db.retry`) before the ack is signed.
            ack, moves_due = retrying(attempt, patience=self.patience)
        except DBAPIError:
            forget_known_partitions()  # in case a partition we remember was dropped
            raise
        if moves_due:
            self.issue_due(now)
        return ack

    def _ingest(
        self, node: str, batch: Batch, contents: Contents, now: dt.datetime, *, careful: bool
    ) -> tuple[bytes, bool]:
        """The ack, and whether the batch made a move's command to another node due. `careful`
        stores readings as if any could be stored already, whatever the outbox ids say."""
        if contents.readings:
            ensure_partitions(self.engine, (r[TIME] for r in contents.readings))
        with self._sessions.begin() as session:
            row = None if node == CLOUD_NODE else _NodeState.lock(session, node)
            if row is None:
                answer, reason = AckStatus.REFUSED, f"node {node!r} is not registered"
            elif row.status == NodeStatus.QUARANTINED.value:
                answer, reason = AckStatus.QUARANTINED, row.quarantine_reason
            elif row.status == NodeStatus.RETIRED.value:  # cloud.operations.takeovers
                answer, reason = AckStatus.REFUSED, row.quarantine_reason
                _alarm_once(session, node, "retired_upload", now, reason)
            elif row.status == NodeStatus.RESERVED.value:  # no key yet: nothing to verify with
                answer, reason = AckStatus.REFUSED, f"node {node!r} is not provisioned yet"
            else:
                try:
                    verified, rotations = _verify(session, row, batch)
                except Quarantined as exc:
                    _quarantine_row(session, row, exc, now)
                    answer, reason = AckStatus.QUARANTINED, row.quarantine_reason
                except Refused as exc:  # a key rotation: nothing stored, the key unchanged
                    answer, reason = AckStatus.REFUSED, str(exc)
                    log.warning("node %s: batch refused: %s", node, reason)
                    _alarm_once(session, node, "refused_batch", now, reason)
                else:
                    contents.rotations = rotations
                    answer, reason = self._store(
                        session, row, batch, verified, contents, now, careful=careful
                    )
            if row is not None and answer is not AckStatus.GAP:
                row.save(session)
            head = _Head.of(row)
            moves_due = moves.made_due(session)
        if row is None:
            return self._refuse(node, reason, now), False
        return self._ack(node, head, answer, now, reason), moves_due

    def _store(  # noqa: PLR0917 (one private step of _ingest)
        self,
        session: Session,
        row: _NodeState,
        batch: Batch,
        verified: list[VerifiedEntry],
        contents: Contents,
        now: dt.datetime,
        *,
        careful: bool,
    ) -> tuple[AckStatus, str]:
        """Under the row lock: decide gap / fork / ok and store. Returns the ack status."""
        node, part = row.node, batch.ledger
        fresh = verified
        if part is not None:
            if part.from_seq > row.head_seq + 1:
                log.info("node %s: batch %d..%d after head %d: gap", node, part.from_seq,
                         part.last_seq, row.head_seq)  # fmt: skip
                return AckStatus.GAP, f"ledger continues at seq {row.head_seq + 1}"
            fork = _fork(session, row, part.from_seq, part.prev, verified)
            if fork is not None:
                _quarantine_row(session, row, Quarantined(node, "fork", fork), now)
                return AckStatus.QUARANTINED, row.quarantine_reason
            fresh = [e for e in verified if e.seq > row.head_seq]
        if row.upto and batch.first > row.upto + 1:
            log.info("node %s: outbox %d..%d after upto %d: gap", node, batch.first, batch.upto,
                     row.upto)  # fmt: skip
            return AckStatus.GAP, f"outbox continues after id {row.upto}"
        appended: list[Appended] = []
        if fresh:
            insert_entries(
                session,
                [entry_row(node, e.seq, e.prev_hash, e.hash, e.body, e.transfer, now)
                 for e in fresh],
            )  # fmt: skip
            assert part is not None
            session.execute(
                upsert(session, CheckpointRow.__table__)
                .values(node=node, seq=part.last_seq, head=fresh[-1].hash, key_id=part.key_id,
                        signature=part.signature)
                .on_conflict_do_nothing()
            )  # fmt: skip
            transfers = [e.transfer for e in fresh]
            appended.append(Appended(node, fresh[0].seq, fresh[-1].seq, transfers))
            rollups.add_entries(session, node, fresh)
            posted = self._post_recharges(session, node, fresh, now)
            reactions = settlements.on_entries(session, node, fresh, now)
            if reactions:
                posted += chain_store.append(
                    session, reactions, key=self.key, now=now, project=False
                )
            if posted:
                appended.append(chain_store.appended(posted))
            row.head_seq, row.head_hash = fresh[-1].seq, fresh[-1].hash
        # Outbox ids past `upto` were never stored, nor their readings (`StoredBefore` if so).
        new = not careful and batch.first > row.upto
        _store_contents(session, node, contents, now, new=new)
        rotated = key_rotations.record(session, node, contents.rotations, now)
        if rotated is not None:
            log.info("node %s: node key rotated to %s", node, rotated)
            row.public_key = rotated
        updates.note_events(session, node, contents.events, key=self.key, now=now)
        voids = settlements.on_verdicts(session, node, contents.verdicts, now)
        if voids:
            appended.append(
                chain_store.appended(
                    chain_store.append(session, voids, key=self.key, now=now, project=False)
                )
            )
        project(session, appended)
        row.upto = max(row.upto, batch.upto)
        row.last_seen = now
        log.info(
            "node %s: batch outbox %d..%d, %d new entries, %d readings, %d events: ok, "
            "head %d, upto %d",
            node, batch.first, batch.upto, len(fresh), len(contents.readings),
            len(contents.events), row.head_seq, row.upto,
        )  # fmt: skip
        return AckStatus.OK, ""

    def _post_recharges(
        self, session: Session, node: str, fresh: list[VerifiedEntry], now: dt.datetime
    ) -> list[Entry]:
        """POST the cloud's pending transfer of every recharge the edge has now booked;
        returns the cloud chain's new entries (not yet projected). An entry for a recharge
        the cloud already voided (the edge refused it, then booked it after all) is not
        posted: an alarm asks the operators to reconcile it with the payer's refund."""
        booked = {
            e.transfer.refs["payment"]: e
            for e in fresh
            if e.transfer.code is Code.RECHARGE
            and e.transfer.kind is Kind.SINGLE
            and isinstance(e.transfer.refs.get("payment"), str)
        }
        if not booked:
            return []
        open_or_voided = (RechargeStatus.PENDING.value, RechargeStatus.VOIDED.value)
        pending = session.scalars(
            select(Recharge).where(
                Recharge.payment.in_(list(booked)), Recharge.status.in_(open_or_voided)
            )
        ).all()
        posts = []
        for recharge in sorted(pending, key=lambda r: booked[r.payment].seq):
            entry = booked[recharge.payment]
            if recharge.status == RechargeStatus.VOIDED.value:
                raise_alarm(session, node, "recharge_after_void", now,
                       f"payment {recharge.payment}: edge booked {entry.transfer.amount} fen to "
                       f"{entry.transfer.credit} at seq {entry.seq}, but the cloud voided the "
                       f"recharge ({recharge.reason})")  # fmt: skip
                continue
            amount = entry.transfer.amount
            if amount > recharge.fen or entry.transfer.credit != pocket_id(
                recharge.account, Pocket.PREPAID
            ):
                raise_alarm(session, node, "recharge_mismatch", now,
                       f"payment {recharge.payment}: edge booked {amount} fen to "
                       f"{entry.transfer.credit} at seq {entry.seq}, cloud has {recharge.fen} "
                       f"fen for {recharge.account}")  # fmt: skip
                amount = min(amount, recharge.fen)
            posts.append(post_transfer(recharge, amount, node=node, seq=entry.seq, now=now))
            RECHARGE.fire(recharge, RechargeEvent.BOOKED)
            recharge.posted = now
            log.info("node %s: recharge %s posted (edge seq %d)", node, recharge.payment,
                     entry.seq)  # fmt: skip
        if not posts:
            return []
        return chain_store.append(session, posts, key=self.key, now=now, project=False)

    # -- refusals and quarantine ---------------------------------------------------------------
    def _refuse(self, node: str, reason: str, now: dt.datetime) -> bytes:
        log.warning("node %s: batch refused: %s", node, reason)
        with self._sessions.begin() as session:
            row = session.get(Concentrator, node) if node != CLOUD_NODE else None
            raise_alarm(session, node, "refused_batch", now, reason)
            head = _Head.of(row)
        return self._ack(node, head, AckStatus.REFUSED, now, reason)

    def _ack(
        self, node: str, head: _Head, status: AckStatus, now: dt.datetime, reason: str = ""
    ) -> bytes:
        ack = Ack(node, head.seq, head.head, head.upto, status, now.isoformat(), reason,
                  self.oplog_head())  # fmt: skip
        return sign(ACK_TAG, ack.fields(), self.key)

    # -- presence, inventory and commands ------------------------------------------------------
    def handle_status(self, node: str, payload: bytes) -> list[bytes]:
        """Record presence and check the inventory (`cloud.operations.ownership.claim`); the
        signed commands to (re)send to the node. A status the node's registered key did not
        sign, or that is malformed, is refused with a `refused_status` alarm."""
        now = self._now()
        if node == CLOUD_NODE:
            log.warning("a status on the cloud's own topic ignored")
            return []
        with self._sessions.begin() as session:
            try:
                row = lock(session, node)
            except NotFound:
                log.warning("node %s: status from an unregistered node ignored", node)
                return []
            if row.status == NodeStatus.RESERVED.value:  # pre-assigned: no key to verify with
                log.warning("node %s: status from a node not provisioned yet ignored", node)
                return []
            try:
                key = load_public_key(row.public_key.encode())
                carried = status_rotations(Status.decode(payload))  # a key rotated meanwhile
                status = Status.open(payload, signing_keys(node, carried, [key]))
                if status.node != node:
                    raise WireError(f"status of {status.node!r} published on {node!r}'s topic")
            except WireError as exc:
                log.warning("node %s: status refused: %s", node, exc)
                raise_alarm(session, node, "refused_status", now, str(exc))
                return []
            row.online, row.last_seen = status.online, now
            row.commands_applied = max(row.commands_applied, status.commands)
            inventory = status.extra.get("accounts")
            if inventory is not None:
                ownership.claim(session, node, inventory, now)
            if row.status != NodeStatus.ACTIVE.value or not status.online:
                return []
            commands.expire(session, now, node)
            resend = session.execute(
                select(Command.payload)
                .where(
                    Command.node == node,
                    Command.seq > status.commands,
                    Command.status.in_(commands.OPEN),
                )
                .order_by(Command.seq)
            ).scalars()
            payloads = [bytes(p) for p in resend]
        log.info("node %s: online=%s, applied commands up to %d, %d to send", node,
                 status.online, status.commands, len(payloads))  # fmt: skip
        return payloads

    def issue_due(self, now: dt.datetime | None = None) -> int:
        """Issue the commands to other nodes that ingested entries made due (a move's move_in
        or settle), each in its own transaction; see `cloud.operations.moves`."""
        return moves.issue_due(self._sessions, key=self.key, now=now or self._now())

    def advance_updates(self, now: dt.datetime | None = None) -> int:
        """Move every running fleet update on (`cloud.operations.updates.advance`)."""
        return updates.advance_all(self._sessions, key=self.key, now=now or self._now())

    def expire_commands(self) -> int:
        with self._sessions.begin() as session:
            return commands.expire(session, self._now())

    def deliverable(self) -> list[tuple[str, str, bytes]]:
        """(node, command id, payload) of pending commands for online nodes."""
        with self._readers() as session:
            return [(c.node, c.id, bytes(c.payload))
                    for c in commands.deliverable(session, self._now())]  # fmt: skip

    def mark_delivered(self, command_ids: list[str]) -> int:
        if not command_ids:
            return 0
        now = self._now()
        with self._sessions.begin() as session:
            return sum(commands.mark_delivered(session, c, now) for c in command_ids)


def _verify(
    session: Session, row: _NodeState, batch: Batch
) -> tuple[list[VerifiedEntry], list[KeyRotation]]:
    part = batch.ledger
    if part is None:
        return [], []
    public_key = load_public_key(row.public_key.encode())
    # The registered key is the current one, good for any seq: the stored rotations matter
    # only to a batch signed by another key or carrying rotations.
    stored = (
        key_rotations.of(session, row.node)
        if part.rotations or part.key_id != key_id(public_key)
        else []
    )

    def stored_head(seq: int) -> bytes | None:
        if seq > row.head_seq:
            return None
        found = session.scalar(
            select(LedgerEntry.hash).where(LedgerEntry.node == row.node, LedgerEntry.seq == seq)
        )
        return None if found is None else bytes(found)

    return verify_ledger(row.node, part, public_key, stored, stored_head)


def _fork(
    session: Session, row: _NodeState, from_seq: int, prev: bytes, verified: list[VerifiedEntry]
) -> str | None:
    """Why the batch does not extend the stored chain, or None. Comparing one hash suffices:
    each hash covers every entry before it."""
    anchor = min(verified[-1].seq, row.head_seq)
    if anchor >= from_seq:
        if anchor == row.head_seq:
            stored = bytes(row.head_hash)
        else:
            found = session.scalar(
                select(LedgerEntry.hash).where(
                    LedgerEntry.node == row.node, LedgerEntry.seq == anchor
                )
            )
            stored = bytes(found) if found is not None else b""
        if verified[anchor - from_seq].hash != stored:
            return f"entry {anchor} differs from the stored one"
        return None
    expected = bytes(row.head_hash) if row.head_seq else GENESIS_HASH
    if prev != expected:
        return f"entry {from_seq} does not chain to the stored entry {from_seq - 1}"
    return None


def _store_contents(
    session: Session, node: str, contents: Contents, now: dt.datetime, *, new: bool
) -> None:
    insert_readings(session, contents.readings, new=new)
    states = [contents.latest[m] for m in sorted(contents.latest)]
    update_meter_states(session, node, states, contents.readings)
    upsert_rows(session, Event.__table__, contents.events, index=("node", "event_id"))
    copy_edge_alarms(session, contents.events)
    clear_edge_alarms(session, node, contents.events)
    for outcome in contents.verdicts:
        if commands.record_outcome(
            session, node, outcome.command_id, outcome.status, result=outcome.result, now=now
        ):
            log.info("node %s: command %s %s", node, outcome.command_id, outcome.status)


def _alarm_once(session: Session, node: str, kind: str, now: dt.datetime, detail: str) -> None:
    """An alarm of `kind` for `node` unless one is open (a box that keeps resending raises one)."""
    open_ = session.scalars(
        select(Alarm.id).where(Alarm.node == node, Alarm.kind == kind, Alarm.cleared.is_(False))
    ).first()
    if open_ is None:
        raise_alarm(session, node, kind, now, detail)


def _quarantine_row(
    session: Session, row: Concentrator | _NodeState, exc: Quarantined, now: dt.datetime
) -> None:
    log.error("node %s quarantined: %s: %s", row.node, exc.reason, exc.detail)
    row.status = NodeStatus.QUARANTINED.value
    row.quarantine_reason = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
    raise_alarm(session, row.node, "quarantined", now, row.quarantine_reason)
