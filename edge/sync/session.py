"""The uplink session: which batches to send, and what an acknowledgement allows. Sans-I/O.

The runtime thread drives it: `connected()` / `disconnected()` when the link says so,
`receive_ack(payload, …)` for every message on `vb/{node}/ack`, and `next_batches(…)` on every
tick for what to publish now. It never opens a socket, sleeps or reads a clock: the caller
passes the monotonic time (timeouts, pacing) and the clock guard's time (alarm events).

    cursor ──► the last outbox id sent;  acked ──► the last outbox id the cloud acknowledged

    next_batches: while fewer than `window` batches are unacknowledged and the pacing allows,
                  build the batch after `cursor` and send it
    ack ok        verified (signature, node, head == our entry hash at seq) ──► ONE transaction:
                  acknowledge(seq, head) + prune the outbox up to `upto`; acked = upto
    ack gap       the cloud's copy does not continue: cursor = upto, and the batches after it
                  go again at once (answers still due for batches sent before are ignored;
                  at most `GAP_RESENDS` in a row without progress, then the ack timeout)
    ack refused / quarantined ──► alarm, pause (nothing more goes up until a restart)
    no ack within `ack_timeout_s` ──► cursor = acked (resend everything unacknowledged)

Everything is keyed by outbox ids and ledger seqs; nothing depends on QoS or on what the broker
or paho remember, and a resend is always safe because the cloud stores idempotently. Nothing is
pruned before a verified acknowledgement, and never beyond what this session sent, nor past the
first entry the acknowledged ledger seq does not cover. A forged or malformed acknowledgement
changes nothing but raises an alarm.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.store import Category, Event, Store
from edge.sync.uplink import BatchBuilder, BuiltBatch
from ledger.encoding import GENESIS_HASH
from ledger.signed import ACK_TAG, OplogHead, Rejected, open_signed
from ledger.wire import Ack, AckStatus, WireError, topic

log = logging.getLogger("edge.sync")


class SyncAlarm:
    """Kinds of the alarms the session raises (stored events, category alarm)."""

    ACK_REJECTED = "sync_ack_rejected"  # unsigned, forged, malformed or for another node
    COPY_DIFFERS = "sync_cloud_copy_differs"  # the acknowledged head is not our entry's hash
    REFUSED = "sync_refused"
    QUARANTINED = "sync_quarantined"
    # The cloud's signed operator-log head is behind one it signed before: its log was cut.
    OPLOG_BEHIND = "sync_cloud_oplog_behind"


OPLOG_HEAD_STATE = "sync:oplog_head"
# Resends on `gap` answers in a row without progress, at most; after that the ack timeout
# rewinds (a cloud that answers gap to everything gets no resend storm).
GAP_RESENDS = 3  # the highest signed operator-log head of the cloud seen


@dataclass(frozen=True, slots=True)
class SessionConfig:
    window: int = 4  # batches sent and not yet acknowledged, at most
    ack_timeout_s: float = 60.0  # resend from the last acknowledged item after this
    rate_bytes_s: int = 0  # pacing; 0: none
    alarm_every_s: float = 3600.0  # the same sync alarm at most this often


@dataclass(slots=True)
class InFlight:
    first: int
    upto: int
    last_seq: int | None
    sent_at: float  # monotonic seconds
    size: int


@dataclass(frozen=True, slots=True)
class AckReport:
    """What an acknowledgement did (logs, tests)."""

    accepted: bool
    status: AckStatus | None = None
    seq: int = 0
    upto: int = 0
    pruned: int = 0
    note: str = ""


@dataclass(slots=True)
class _Pacer:
    """A token bucket over bytes: a batch goes when the bucket is not in debt, then its size
    is taken out, so a batch bigger than a second's worth still goes (and waits after)."""

    rate: int
    tokens: float = 0.0
    at: float | None = None

    def ready(self, mono: float) -> bool:
        if self.rate <= 0:
            return True
        if self.at is not None:
            self.tokens = min(float(self.rate), self.tokens + (mono - self.at) * self.rate)
        self.at = mono
        return self.tokens >= 0

    def spend(self, size: int) -> None:
        if self.rate > 0:
            self.tokens -= size


@dataclass(slots=True)
class UplinkSession:
    store: Store
    builder: BatchBuilder
    cloud_keys: Mapping[str, Ed25519PublicKey]
    config: SessionConfig = field(default_factory=SessionConfig)
    online: bool = False
    paused: str = ""  # why nothing more goes up (refused, quarantined, copy differs)
    cursor: int = 0  # the last outbox id sent
    acked: int = 0  # the last outbox id acknowledged (and pruned)
    highest_sent: int = 0  # the highest outbox id this session has sent
    in_flight: list[InFlight] = field(default_factory=list)
    sent_ahead: set[int] = field(default_factory=set)  # alarms carried ahead of order
    _gap_at: int | None = None  # the outbox id the last gap rewound to
    _gap_resends: int = 0  # gap rewinds since the last progress
    _stale_due: int = 0  # answers still due for batches sent before the last gap rewind
    _pacer: _Pacer = field(init=False)
    _alarmed: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pacer = _Pacer(self.config.rate_bytes_s)

    # -- the link ---------------------------------------------------------------------------
    def connected(self, mono: float) -> None:
        """The link is up: send again; what was in flight gets a fresh timeout (paho resends
        its own copies; if those are lost too, the timeout rewinds)."""
        self.online = True
        for batch in self.in_flight:
            batch.sent_at = mono

    def disconnected(self) -> None:
        self.online = False

    # -- sending ----------------------------------------------------------------------------
    def next_batches(self, mono: float) -> list[BuiltBatch]:
        """The batches to publish now (none while offline or paused)."""
        if not self.online or self.paused:
            return []
        self._check_timeout(mono)
        out: list[BuiltBatch] = []
        while len(self.in_flight) < self.config.window and self._pacer.ready(mono):
            built = self.builder.build(self.cursor, sent_ahead=self.sent_ahead)
            if built is None:
                break
            size = len(built.payload)
            self.in_flight.append(InFlight(built.first, built.upto, built.last_seq, mono, size))
            self.cursor = built.upto
            self.highest_sent = max(self.highest_sent, built.upto)
            self.sent_ahead.update(built.ahead)
            self._pacer.spend(size)
            out.append(built)
        return out

    def not_sent(self, built: BuiltBatch) -> None:
        """The link would not take `built` (it just went offline): send it again later."""
        self.in_flight = [b for b in self.in_flight if b.first < built.first]
        self.cursor = max(self.acked, built.first - 1)
        self.sent_ahead.difference_update(built.ahead)

    def _check_timeout(self, mono: float) -> None:
        if not self.in_flight or mono - self.in_flight[0].sent_at < self.config.ack_timeout_s:
            return
        oldest = self.in_flight[0]
        log.warning(
            "sync: no acknowledgement for batch %d..%d within %g s: resending from %d",
            oldest.first,
            oldest.upto,
            self.config.ack_timeout_s,
            self.acked + 1,
        )
        self._rewind(self.acked)
        self._gap_at, self._gap_resends, self._stale_due = None, 0, 0

    def _rewind(self, upto: int) -> None:
        self.cursor = max(upto, self.acked)
        self.in_flight.clear()
        self.sent_ahead.clear()

    # -- acknowledgements -------------------------------------------------------------------
    def receive_ack(self, payload: bytes, mono: float, wall: dt.datetime) -> AckReport:
        """Verify and act on one message from `vb/{node}/ack`."""
        try:
            ack = Ack.from_fields(open_signed(ACK_TAG, payload, self.cloud_keys))
        except (Rejected, WireError) as exc:
            reason = exc.reason if isinstance(exc, Rejected) else "malformed"
            return self._refuse_ack(f"acknowledgement rejected ({reason}): {exc}", mono, wall)
        if ack.node != self.store.node:
            return self._refuse_ack(
                f"acknowledgement for node {ack.node!r}, not {self.store.node!r}", mono, wall
            )
        if ack.oplog is not None:
            self._keep_oplog_head(ack.oplog, mono, wall)
        if ack.status in (AckStatus.OK, AckStatus.GAP) and not self._head_matches(ack):
            self.paused = f"the cloud's copy differs from this chain at seq {ack.seq}"
            self._alarm(
                SyncAlarm.COPY_DIFFERS,
                f"cloud copy differs: its head at seq {ack.seq} is {ack.head.hex()[:16]}…, "
                "not this chain's; nothing is pruned and uplink is paused",
                mono,
                wall,
            )
            return AckReport(False, ack.status, ack.seq, ack.upto, note=self.paused)
        if ack.status is AckStatus.OK:
            return self._accept(ack)
        if ack.status is AckStatus.GAP:
            return self._gap(ack)
        kind = SyncAlarm.REFUSED if ack.status is AckStatus.REFUSED else SyncAlarm.QUARANTINED
        self.paused = f"the cloud answered {ack.status.value}: {ack.reason or 'no reason given'}"
        self._alarm(kind, f"{self.paused}; uplink is paused", mono, wall)
        return AckReport(False, ack.status, ack.seq, ack.upto, note=self.paused)

    def _refuse_ack(self, why: str, mono: float, wall: dt.datetime) -> AckReport:
        why = f"{topic(self.store.node, 'ack')}: {why:.300}"
        self._alarm(SyncAlarm.ACK_REJECTED, why + "; nothing changed", mono, wall)
        return AckReport(False, note=why)

    def _head_matches(self, ack: Ack) -> bool:
        if ack.seq == 0:
            return ack.head == GENESIS_HASH
        if ack.seq < self.store.anchor()[0]:
            return True  # pruned: a newer verified ack covered it (a late duplicate)
        return self.store.head_at(ack.seq) == ack.head

    def _accept(self, ack: Ack) -> AckReport:
        self._stale_due = max(0, self._stale_due - 1)
        # Prune only what this session sent (a cloud cannot acknowledge ids not yet written),
        # and only below the first entry the acknowledged seq does not cover.
        safe = min(ack.upto, self.highest_sent)
        uncovered = self.store.outbox_id_of_entry_after(ack.seq)
        if uncovered is not None and uncovered <= safe:
            log.warning(
                "sync: ack upto %d covers entries after seq %d: pruning only to %d",
                ack.upto,
                ack.seq,
                uncovered - 1,
            )
            safe = uncovered - 1
        pruned = 0
        if safe > self.acked or ack.seq > self.store.acknowledged()[0]:
            with self.store.transaction() as tx:
                if ack.seq > 0:
                    tx.acknowledge(ack.seq, ack.head)
                if safe > self.acked:
                    pruned = tx.prune_outbox(safe)
        if safe > self.acked:
            self.acked = safe
            self.cursor = max(self.cursor, safe)
            self.in_flight = [b for b in self.in_flight if b.upto > safe]
            self.sent_ahead = {i for i in self.sent_ahead if i > safe}
            self._gap_at, self._gap_resends = None, 0
            log.info("sync: ack seq %d upto %d, pruned %d", ack.seq, ack.upto, pruned)
        return AckReport(True, ack.status, ack.seq, ack.upto, pruned)

    def _gap(self, ack: Ack) -> AckReport:
        stale, self._stale_due = self._stale_due > 0, max(0, self._stale_due - 1)
        if stale and self._gap_at is not None and ack.upto <= self._gap_at:
            # The answer to a batch sent before the rewind: the resend is already under way.
            return AckReport(True, ack.status, ack.seq, ack.upto, note="gap already rewound")
        if self._gap_resends >= GAP_RESENDS:
            log.warning("sync: the cloud still holds only up to %d after %d resends: "
                        "waiting for the ack timeout", ack.upto, GAP_RESENDS)  # fmt: skip
            return AckReport(True, ack.status, ack.seq, ack.upto, note="gap: resends exhausted")
        log.warning(
            "sync: the cloud holds up to %d (seq %d): resending from %d",
            ack.upto,
            ack.seq,
            max(ack.upto, self.acked) + 1,
        )
        # The cloud answers in order: the batch this answers is at the earliest the first in
        # flight that does not continue its copy; the ones after it are still to be answered.
        answered = next(
            (k for k, b in enumerate(self.in_flight) if b.first > ack.upto + 1), len(self.in_flight)
        )
        self._stale_due = max(0, len(self.in_flight) - answered - 1)
        self._gap_at = ack.upto
        self._gap_resends += 1
        self._rewind(ack.upto)
        return AckReport(True, ack.status, ack.seq, ack.upto, note="rewound")

    # -- alarms -----------------------------------------------------------------------------
    def _keep_oplog_head(self, head: OplogHead, mono: float, wall: dt.datetime) -> None:
        """Keep the cloud's signed operator-log head if it is the highest seen (a copy of the
        cloud's anchor outside its database, `cloud.people.oplog_heads`); one that verifies
        but is behind the kept one means the cloud's log lost rows: an alarm."""
        try:
            head.verify(self.cloud_keys)
        except Rejected as exc:
            log.warning("sync: the ack's operator-log head is not the cloud's: %s", exc)
            return
        kept = self.store.get_state(OPLOG_HEAD_STATE)
        kept_seq, kept_hash = (kept["seq"], kept["hash"]) if isinstance(kept, dict) else (-1, "")
        if head.seq > kept_seq:
            with self.store.transaction() as tx:
                tx.set_state(OPLOG_HEAD_STATE, head.fields())
            return
        if head.seq < kept_seq:
            problem = f"is at row {head.seq}, behind row {kept_seq} it signed before"
        elif head.hash.hex() != kept_hash:
            problem = f"row {head.seq} differs from the one it signed before"
        else:
            return
        message = f"the cloud's operator log {problem} ({head.time}): rows were cut or rewritten"
        self._alarm(SyncAlarm.OPLOG_BEHIND, message, mono, wall)

    def _alarm(self, kind: str, message: str, mono: float, wall: dt.datetime) -> None:
        log.error("sync: %s", message)
        last = self._alarmed.get(kind)
        if last is not None and mono - last < self.config.alarm_every_s:
            return
        self._alarmed[kind] = mono
        event = Event(
            time=wall,
            kind=kind,
            category=Category.ALARM,
            detail={"severity": "critical", "message": message},
        )
        with self.store.transaction() as tx:
            tx.add_events([event])
