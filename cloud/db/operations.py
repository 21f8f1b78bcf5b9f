"""Money operations beyond recharges: corrections, refunds, meter swaps, tenant moves,
their receipts, and saved report column templates.

- `corrections`: a compensating transfer for an operator's mistake; pending in the cloud chain
  until the edge's correction entry arrives (posted) or the edge refuses it (failed, voided).
- `refunds`: the prepaid balance paid back; requested → reserved (the edge's pending entry,
  with the amount) → paid (finance) | cancelled; failed when the edge refuses.
- `meter_swaps`, `ir_readings`: a replaced meter's final and the new meter's initial register;
  the final may come from an infrared handheld's export.
- `moves`: a tenant changing shop; across concentrators a two-phase move of the balance.
- `receipts`, `receipt_counters`: printed receipts, numbered `YYYY-NNNNNN`, contiguous per year;
  a receipt keeps what was true when it was issued (site, merchant, shop); whether it is booked,
  pending or void and the balance after it are read from the ledger and the operation's row.

Every operation's primary key is its reference (the id the contract's commands carry, see
`ledger.signed.CommandKind`), so the same reference twice is one operation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, synonym

from cloud.db.base import Base

ROW_ID = BigInteger().with_variant(Integer, "sqlite")


class Correction(Base):
    __tablename__ = "corrections"
    __table_args__ = (
        Index("corrections_by_account", "account", "created"),
        Index("corrections_by_command", "command_id"),
        Index("corrections_by_payment", "payment"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the correction reference
    account: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    shop: Mapped[str] = mapped_column(String(64), default="")
    fen: Mapped[int] = mapped_column(BigInteger)  # signed: > 0 credits the account
    original: Mapped[str] = mapped_column(String(64))  # as the operator named it
    original_transfer: Mapped[str] = mapped_column(String(32))  # hex id of the transfer corrected
    payment: Mapped[str | None] = mapped_column(String(64))  # the recharge it corrects, if one
    reason: Mapped[str] = mapped_column(Text)
    operator: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # states.CorrectionStatus
    pending_transfer: Mapped[str] = mapped_column(String(32))  # cloud chain (once approved)
    edge_transfer: Mapped[str] = mapped_column(String(32))  # the entry the edge will write
    command_id: Mapped[str | None] = mapped_column(String(32))  # None while held for approval
    approved_by: Mapped[str | None] = mapped_column(String(64))  # the second user, when needed
    receipt: Mapped[str | None] = mapped_column(String(16))
    created: Mapped[dt.datetime]
    resolved: Mapped[dt.datetime | None]


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        Index("refunds_by_account", "account", "created"),
        Index("refunds_by_command", "command_id"),
        Index("refunds_by_pending", "pending_transfer"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(64))
    shop: Mapped[str] = mapped_column(String(64), default="")
    method: Mapped[str] = mapped_column(String(16))  # cash, card, original
    grace_wh: Mapped[int] = mapped_column(BigInteger)
    grace_until: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))  # states.RefundStatus
    fen: Mapped[int | None] = mapped_column(BigInteger)  # known once the edge reserved it
    pending_transfer: Mapped[str] = mapped_column(String(32))  # the edge's pending, hex
    settle_transfer: Mapped[str | None] = mapped_column(String(32))  # the edge's post/void
    payout_transfer: Mapped[str | None] = mapped_column(String(32))  # cloud chain
    sources: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{payment, fen}] "original"
    command_id: Mapped[str] = mapped_column(String(32))
    settle_command_id: Mapped[str | None] = mapped_column(String(32))
    operator: Mapped[str] = mapped_column(String(64))
    paid_by: Mapped[str | None] = mapped_column(String(64))
    receipt: Mapped[str | None] = mapped_column(String(16))
    created: Mapped[dt.datetime]
    reserved: Mapped[dt.datetime | None]
    closed: Mapped[dt.datetime | None]
    settled: Mapped[dt.datetime | None]  # the edge's settle entry arrived


class IrReading(Base):
    """A register read from a meter with an infrared handheld (`cloud.operations.handheld`)."""

    __tablename__ = "ir_readings"
    __table_args__ = (UniqueConstraint("address", "read_at"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    address: Mapped[str] = mapped_column(String(32))
    read_at: Mapped[dt.datetime]
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(200))
    operator: Mapped[str] = mapped_column(String(64))
    imported: Mapped[dt.datetime]


class MeterSwap(Base):
    __tablename__ = "meter_swaps"
    __table_args__ = (
        Index("meter_swaps_by_old", "old", "created"),
        Index("meter_swaps_by_command", "command_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(64))
    shop: Mapped[str] = mapped_column(String(64), default="")
    old: Mapped[str] = mapped_column(String(32))
    final_wh: Mapped[int] = mapped_column(BigInteger)
    ir_reading: Mapped[int | None] = mapped_column(BigInteger)
    new_address: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(32))
    multiplier: Mapped[int] = mapped_column(Integer)
    initial_wh: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # states.MeterSwapStatus
    limit_wh: Mapped[int | None] = mapped_column(BigInteger)  # plausible final register, Wh
    command_id: Mapped[str | None] = mapped_column(String(32))  # None while held
    operator: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))  # who overrode the limit
    receipt: Mapped[str | None] = mapped_column(String(16))
    created: Mapped[dt.datetime]
    resolved: Mapped[dt.datetime | None]


class Move(Base):
    __tablename__ = "moves"
    __table_args__ = (
        Index("moves_by_account", "account", "created"),
        Index("moves_by_out", "out_transfer"),
        Index("moves_by_in", "in_transfer"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    from_node: Mapped[str] = mapped_column(String(64))
    from_shop: Mapped[str] = mapped_column(String(64))
    to_node: Mapped[str] = mapped_column(String(64))
    to_shop: Mapped[str] = mapped_column(String(64))
    # states.MoveStatus: requested → in_transit → arrived → settled; failed, voided
    status: Mapped[str] = mapped_column(String(16))
    fen: Mapped[int | None] = mapped_column(BigInteger)
    out_transfer: Mapped[str | None] = mapped_column(String(32))  # source's pending, hex
    in_transfer: Mapped[str | None] = mapped_column(String(32))  # destination's entry, hex
    out_command_id: Mapped[str | None] = mapped_column(String(32))
    in_command_id: Mapped[str | None] = mapped_column(String(32))
    settle_command_id: Mapped[str | None] = mapped_column(String(32))
    operator: Mapped[str] = mapped_column(String(64))
    created: Mapped[dt.datetime]
    updated: Mapped[dt.datetime]


class Receipt(Base):
    __tablename__ = "receipts"
    __table_args__ = (
        UniqueConstraint("kind", "ref"),
        Index("receipts_by_account", "account", "time"),
    )

    number: Mapped[str] = mapped_column(String(16), primary_key=True)  # 2026-000001
    kind: Mapped[str] = mapped_column(String(16))  # recharge, correction, refund, meter_swap
    ref: Mapped[str] = mapped_column(String(64))  # payment / correction / refund / swap id
    account: Mapped[str] = mapped_column(String(64))
    shop: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(Integer)  # the registry's site (its print setting)
    site: Mapped[str] = mapped_column(String(200), default="")  # its name when issued
    merchant: Mapped[str] = mapped_column(String(200), default="")  # the account's merchant
    fen: Mapped[int] = mapped_column(BigInteger)  # as booked at the desk (a swap's: its bill)
    method: Mapped[str] = mapped_column(String(16))
    operator: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime]
    transfer: Mapped[str] = mapped_column(String(32))  # the ledger transfer it vouches for
    detail: Mapped[dict[str, Any]]


class ReceiptCounter(Base):
    """The last receipt number of a year; locked by the writer so numbers stay contiguous."""

    __tablename__ = "receipt_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(BigInteger)


class Takeover(Base):
    """A dead concentrator replaced (`cloud.operations.takeovers`): one per old node, asked for
    by `operator` and approved by a second user (`approved_by`); `status` is a
    `cloud.operations.states.TakeoverStatus`. `plan` is what the `takeover` command carries
    (`ledger.takeover.Plan.args`; while it waits, the plan as it stood when asked for);
    `command_id` the last command sent (None while it waits), `commands` every one, oldest
    first; `voided` the old node's open commands failed at the approval; `recovered` the
    reconciliation of its store, if it was recovered later
    (`ledger.takeover.Reconciliation.report`)."""

    __tablename__ = "takeovers"
    __table_args__ = (Index("takeovers_by_new", "new_node"),)

    old_node: Mapped[str] = mapped_column(String(64), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    new_node: Mapped[str] = mapped_column(String(64))
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="issued")
    command_id: Mapped[str | None] = mapped_column(String(32))
    commands: Mapped[list[Any] | None] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    voided: Mapped[list[Any]] = mapped_column(JSON)
    operator: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[dt.datetime]
    resolved: Mapped[dt.datetime | None]
    recovered: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recovered_at: Mapped[dt.datetime | None]
    recovered_by: Mapped[str | None] = mapped_column(String(64))
    # the box the command goes to: what `cloud.operations.four_eyes` locks
    node: Mapped[str] = synonym("new_node")
