"""The cloud's tables (SQLAlchemy 2, typed declarative). Alembic migrations create them
(`cloud/migrations/`); never `create_all` outside tests of the migrations themselves.

Money and energy are integers (fen, Wh) in BigInteger columns, as in the ledger. Times are
timezone-aware (`DateTime(timezone=True)`); readings keep the edge's millisecond stamp too.

- `concentrators`: each edge node, its Ed25519 public key, its chain head as the cloud holds it,
  the highest outbox id it stored (`upto`), presence, and quarantine; its site when known (a
  node pre-assigned to a site awaits its box as `reserved`, without a key).
- `node_key_rotations`: the rotations of a concentrator's own key, as its chain recorded them.
- `ledger_entries` / `checkpoints`: every node's chain (the edges' and the cloud's own `cloud`
  chain), verified before they are stored; `balances` is the live projection of all of them.
- `accounts`, `meters`: who owns which account and meter, as money and relay orders are routed
  (`cloud.operations.ownership`: from the registry and the cloud's commands; a concentrator's
  signed inventory is only a claim), with the meters' last state from the readings.
- `readings` (partitioned by month on PostgreSQL), `events`: what the edges uploaded.
- `commands`: the command outbox (pending → delivered → applied | failed | expired).
- `recharges`: operator/payment top-ups; a pending transfer in the cloud chain until the edge's
  entry for the same payment arrives, then posted, or until the edge refuses the command, then
  voided (with the edge's reason).
- `alarms`: what operators must see: the cloud's own alarms (quarantine, forged batch, …) and,
  copied from `events` as they arrive, the concentrators' (`event_id` set: low balance,
  arrears, relay, malicious load, read success low, …); each acknowledged once, with a note.

The tables of the operations issue live in their own modules, imported at the end of this one
so that `Base.metadata` (migrations, tests) always holds every table: `auth` (users, tokens,
logins, the operator log), `registry` (sites … policies), `operations` (refunds, corrections,
swaps, moves, receipts, report templates), `rollups` (consumption per day for reports),
`notices` (the outbox of notices to merchants and their deliveries), `claims` (installers'
one-time tokens that provision a concentrator), `commissioning` (the signed reports of a
building's check before handover), `console` (each staff user's alarm pop-up
preferences).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, UtcDateTime


class NodeStatus(StrEnum):
    ACTIVE = "active"
    QUARANTINED = "quarantined"
    RETIRED = "retired"  # replaced by a takeover (cloud.operations.takeovers): uploads refused
    # Pre-assigned to a site (its registry entry and meters may be written) before its box is
    # provisioned: no key yet (`public_key` empty), so nothing it would sign is accepted.
    RESERVED = "reserved"


class CommandStatus(StrEnum):
    PENDING = "pending"  # stored, not yet handed to the broker (node offline or just issued)
    DELIVERED = "delivered"  # the broker acknowledged the publish (QoS 1)
    APPLIED = "applied"  # the edge reported it applied it
    FAILED = "failed"  # the edge refused it (its result says why)
    EXPIRED = "expired"  # not applied before its expiry


class RechargeStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class Concentrator(Base):
    __tablename__ = "concentrators"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    public_key: Mapped[str] = mapped_column(String(64))  # raw Ed25519, hex
    key_id: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.ACTIVE.value)
    quarantine_reason: Mapped[str] = mapped_column(Text, default="")
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[dt.datetime | None]
    head_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32), default=bytes(32))
    upto: Mapped[int] = mapped_column(BigInteger, default=0)  # highest edge outbox id stored
    commands_applied: Mapped[int] = mapped_column(BigInteger, default=0)  # as the edge reports
    next_command_seq: Mapped[int] = mapped_column(BigInteger, default=1)
    created: Mapped[dt.datetime]
    site_id: Mapped[int | None] = mapped_column(ForeignKey("registry_sites.id"), default=None)


class NodeKeyRotation(Base):
    """A rotation of a concentrator's node key (`ledger.key_rotation`), as its batch carried
    it and ingest followed it (`concentrators.public_key` is then the new key)."""

    __tablename__ = "node_key_rotations"
    __table_args__ = (UniqueConstraint("node", "new_key_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"))  # the unique's lead
    seq: Mapped[int] = mapped_column(BigInteger)
    new_key_id: Mapped[str] = mapped_column(String(16))
    record: Mapped[bytes] = mapped_column(LargeBinary)  # the signed canonical JSON
    received: Mapped[dt.datetime]


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("node", "seq"),
        Index("ledger_by_transfer", "transfer_id"),
        Index("ledger_by_debit", "debit", "id"),
        Index("ledger_by_credit", "credit", "id"),
        Index("ledger_by_code_time", "code", "time"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[str] = mapped_column(String(32))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the canonical bytes that were hashed
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    debit: Mapped[str] = mapped_column(String(96))
    credit: Mapped[str] = mapped_column(String(96))
    amount: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(8))
    pending_id: Mapped[str | None] = mapped_column(String(32))
    time: Mapped[dt.datetime]
    refs: Mapped[dict[str, Any]]


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    head: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class Balance(Base):
    """Live projection of every chain: TigerBeetle's four totals per account."""

    __tablename__ = "balances"

    account: Mapped[str] = mapped_column(String(96), primary_key=True)
    unit: Mapped[str] = mapped_column(String(8))
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportedAccount(Base):
    """A merchant account's home concentrator and place, the cloud's live view
    (`cloud.operations.ownership`; the registry's accounts are `cloud.db.registry.Account`)."""

    __tablename__ = "accounts"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)  # owner, e.g. "A0001"
    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"))
    shop: Mapped[str] = mapped_column(String(64), default="")
    building: Mapped[str] = mapped_column(String(64), default="")
    floor: Mapped[str] = mapped_column(String(32), default="")


class MeterState(Base):
    """A meter on a concentrator: its account (`cloud.operations.ownership`), and relay,
    register and last reading as its readings last said (the registry's meters are
    `cloud.db.registry.Meter`)."""

    __tablename__ = "meters"
    __table_args__ = (Index("meters_by_account", "account"),)

    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"), primary_key=True)
    address: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), default="")
    protocol: Mapped[str] = mapped_column(String(32), default="")
    relay: Mapped[int | None] = mapped_column(Integer)  # 1 closed, 0 open, as last read
    energy_wh: Mapped[int | None] = mapped_column(BigInteger)
    last_reading: Mapped[dt.datetime | None]


class Reading(Base):
    """Partitioned by month of `time` on PostgreSQL (the migration creates the parent table;
    `cloud.db.partitions` adds a month's partition before rows for it are inserted)."""

    __tablename__ = "readings"
    __table_args__ = (Index("readings_by_meter_time", "meter", "time"),)

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    meter: Mapped[str] = mapped_column(String(32), primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(primary_key=True)
    energy_wh: Mapped[int | None] = mapped_column(BigInteger)
    tariff_wh: Mapped[str | None] = mapped_column(String(80))
    voltage: Mapped[float | None]
    current: Mapped[float | None]
    power: Mapped[float | None]
    pf: Mapped[float | None]
    relay: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(80))
    extra: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("events_by_time", "time"),)

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the edge's id
    kind: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    meter: Mapped[str | None] = mapped_column(String(32))
    shop: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(64))
    time: Mapped[dt.datetime]
    detail: Mapped[dict[str, Any]]


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (UniqueConstraint("node", "seq"), Index("commands_by_status", "status"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]]
    issued: Mapped[dt.datetime]
    expires: Mapped[dt.datetime]
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the signed bytes, resent verbatim
    status: Mapped[str] = mapped_column(String(16), default=CommandStatus.PENDING.value)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    operator: Mapped[str] = mapped_column(String(64), default="")
    updated: Mapped[dt.datetime]


class CommandKey(Base):
    """A command key of the cloud's besides the one it signs with: the staged next one (`next`)
    or one a rotation retired (`retired`); `cloud.chains.command_keys` pushes them to the
    nodes with their configuration (`ledger.cloud_trust`)."""

    __tablename__ = "command_keys"

    public_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # 64 hex, raw Ed25519
    state: Mapped[str] = mapped_column(String(8))  # next | retired
    since: Mapped[dt.datetime]


class Recharge(Base):
    __tablename__ = "recharges"
    __table_args__ = (
        Index("recharges_by_account_status", "account", "status"),
        Index("recharges_by_created", "created"),  # the deposits report reads by creation time
        # …and an area's deposits account by account (migration 0035 says why the INCLUDE)
        Index("recharges_by_account_created", "account", "created",
              postgresql_include=["payment", "fen", "method", "operator", "status"]),
    )  # fmt: skip

    payment: Mapped[str] = mapped_column(String(64), primary_key=True)  # payment/order id
    account: Mapped[str] = mapped_column(String(64))
    fen: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(16))  # cash, card, wechat, alipay, …
    operator: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default=RechargeStatus.PENDING.value)
    pending_transfer: Mapped[str] = mapped_column(String(32))  # id in the cloud chain
    command_id: Mapped[str | None] = mapped_column(String(32))
    created: Mapped[dt.datetime]
    posted: Mapped[dt.datetime | None]
    voided: Mapped[dt.datetime | None]  # the concentrator refused it: the payer is owed a refund
    reason: Mapped[str] = mapped_column(Text, default="")  # why it refused (as its result says)


# The rows `alarms_one_open_silence` covers: a node's `node_silent` alarm not cleared yet.
OPEN_SILENCE = text("kind = 'node_silent' AND NOT cleared")


class Alarm(Base):
    __tablename__ = "alarms"
    __table_args__ = (
        UniqueConstraint("node", "event_id", name="alarms_by_edge_event"),
        Index("alarms_by_time", "time"),
        # One open silence per node (`cloud.operations.silence`): two sweeps racing raise one.
        Index("alarms_one_open_silence", "node", unique=True,
              postgresql_where=OPEN_SILENCE, sqlite_where=OPEN_SILENCE),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    node: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(BigInteger)  # the edge's event; None: the cloud's
    kind: Mapped[str] = mapped_column(String(64))  # quarantined, low_balance, bus_down, …
    severity: Mapped[str] = mapped_column(String(16), default="warning")  # info|warning|critical
    meter: Mapped[str | None] = mapped_column(String(32))
    shop: Mapped[str | None] = mapped_column(String(64))  # the shop's number, as the edge names it
    account: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the edge's detail
    time: Mapped[dt.datetime]
    cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    cleared_at: Mapped[dt.datetime | None]  # when the condition was over (an edge event's time)
    acknowledged: Mapped[dt.datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")


# Registered on `Base.metadata` by importing them (they import `Base` from `cloud.db.base`).
from cloud.db import (  # noqa: E402
    auth,
    backups,
    claims,
    commissioning,
    console,
    faults,
    notices,
    operations,
    payments,
    reconciliations,
    registry,
    rollups,
    updates,
)  # fmt: skip

__all__ = [
    "Base",
    "UtcDateTime",
    "auth",
    "backups",
    "claims",
    "commissioning",
    "console",
    "faults",
    "notices",
    "operations",
    "payments",
    "reconciliations",
    "registry",
    "rollups",
    "updates",
]
