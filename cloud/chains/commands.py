"""The command outbox: signed commands to concentrators and their life cycle.

    pending ──broker PUBACK──▶ delivered ──edge result──▶ applied | failed
       └──────────────── past `expires`, not applied ──▶ expired

A command gets a random 128-bit id (the edge applies each id once) and the next `seq` of its
target (taken under the node's row lock, so seqs are contiguous per node); its signed payload
is stored and resent verbatim, whoever resends it. Correctness never depends on delivery
counts: the edge deduplicates by id, and after a reconnect it reports the highest seq it
applied so the cloud resends the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.chains.locks import lock_active
from cloud.db.models import Command, CommandStatus, Concentrator, NodeStatus
from cloud.errors import Invalid, NotFound
from ledger import cloud_trust
from ledger.chain import NodeKey
from ledger.errors import InvalidValue
from ledger.signed import Command as SignedCommand
from ledger.signed import CommandKind

REFUSED = (CommandStatus.FAILED, CommandStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class CommandVerdict:
    """An edge's verdict on a command: from its result, or from a `command_rejected` event."""

    command_id: str
    status: CommandStatus
    result: Mapping[str, Any]

    @property
    def refused(self) -> bool:
        """The edge will not apply the command (refused it, or it expired there)."""
        return self.status in REFUSED


log = logging.getLogger(__name__)

DEFAULT_TTL = dt.timedelta(days=3)
OPEN = (CommandStatus.PENDING.value, CommandStatus.DELIVERED.value)
FINAL = (CommandStatus.APPLIED.value, CommandStatus.FAILED.value)
RELAY_ACTIONS = ("trip", "close")
# The money operations' arguments (`ledger.signed.CommandKind`), checked in depth by their
# modules (cloud.operations.corrections, refunds, meter_swaps, moves).
OPERATION_ARGS = {
    CommandKind.CORRECTION: ("account", "fen", "correction", "original", "reason"),
    CommandKind.REFUND: ("account", "refund", "grace_wh", "grace_until"),
    CommandKind.SETTLE: ("pending", "action", "reference"),
    CommandKind.METER_SWAP: ("swap", "old", "final_wh", "meter", "initial_wh"),
    CommandKind.MOVE_OUT: ("account", "move", "to_node"),
    CommandKind.MOVE_IN: ("account", "move", "fen", "from_node"),
}
UPDATE_ARGS = ("rollout", "version", "url", "sha256", "size")


def check_args(kind: CommandKind, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a kind of command needs; Invalid says what is missing or wrong."""
    args = dict(args)
    if kind is CommandKind.RECHARGE:
        fen = args.get("fen")
        if type(fen) is not int or fen <= 0:
            raise Invalid("a recharge command needs args.fen, a positive integer")
        for name in ("account", "payment", "method"):
            if not isinstance(args.get(name), str) or not args[name]:
                raise Invalid(f"a recharge command needs args.{name}, a non-empty string")
    elif kind is CommandKind.RELAY:
        meters = args.get("meters")
        if not isinstance(meters, list) or not all(isinstance(m, str) and m for m in meters):
            raise Invalid("a relay command needs args.meters, a list of meter addresses")
        if not meters:
            raise Invalid("a relay command needs at least one meter")
        if args.get("action") not in RELAY_ACTIONS:
            raise Invalid(f"a relay command needs args.action, one of {', '.join(RELAY_ACTIONS)}")
    elif kind is CommandKind.CONFIG:
        _check_config(args)
    elif kind is CommandKind.UPDATE:  # checked in depth by cloud.operations.updates
        missing = [n for n in UPDATE_ARGS if args.get(n) in (None, "")]
        if missing:
            raise Invalid(f"an update command needs args.{', args.'.join(missing)}")
    elif kind in OPERATION_ARGS:
        missing = [name for name in OPERATION_ARGS[kind] if args.get(name) in (None, "")]
        if missing:
            raise Invalid(f"a {kind.value} command needs args.{', args.'.join(missing)}")
    return args


CONFIG_KINDS = ("meters", "shops", "accounts", "tariffs", "rules")


def _check_config(args: Mapping[str, Any]) -> None:
    """A config command: a version ≥ 1 and documents by kind, each a list of objects with an
    id (the edge's parser checks the rest, `edge/site/documents.py`)."""
    version = args.get("version")
    if type(version) is not int or version < 1:
        raise Invalid("a config command needs args.version, an integer ≥ 1")
    documents = args.get("documents")
    if not isinstance(documents, dict) or not set(documents) <= set(CONFIG_KINDS):
        raise Invalid(f"a config command needs args.documents, lists by {', '.join(CONFIG_KINDS)}")
    for kind, docs in documents.items():
        if not isinstance(docs, list) or not all(
            isinstance(d, dict) and isinstance(d.get("id"), str) and d["id"] for d in docs
        ):
            raise Invalid(f"config documents {kind} must be a list of objects with a text id")
    for name in ("cloud_keys", "retired_cloud_keys"):  # the keys the box trusts (optional)
        if name in args:
            try:
                cloud_trust.parse_keys(args[name], name)
            except InvalidValue as exc:
                raise Invalid(str(exc)) from None


def issue(
    session: Session,
    node: str,
    kind: CommandKind,
    args: Mapping[str, Any],
    *,
    key: NodeKey,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    operator: str = "",
) -> Command:
    """Sign and store a command for `node` (status pending); the worker delivers it."""
    kind = CommandKind(kind)
    if ttl <= dt.timedelta(0):
        raise Invalid("a command's ttl must be positive")
    arguments = check_args(kind, args)
    target = lock_active(session, node)
    seq = target.next_command_seq
    target.next_command_seq = seq + 1
    signed = SignedCommand(
        id=secrets.token_hex(16),
        seq=seq,
        target=node,
        kind=kind,
        issued=now,
        expires=now + ttl,
        args=arguments,
    )
    command = Command(
        id=signed.id,
        node=node,
        seq=seq,
        kind=kind.value,
        args=arguments,
        issued=now,
        expires=signed.expires,
        payload=signed.sign(key),
        status=CommandStatus.PENDING.value,
        result=None,
        operator=operator,
        updated=now,
    )
    session.add(command)
    session.flush()
    log.info("node %s: command %s #%d (%s) issued by %s", node, signed.id, seq, kind, operator)
    return command


def get(session: Session, command_id: str) -> Command:
    command = session.get(Command, command_id)
    if command is None:
        raise NotFound(f"command {command_id!r} does not exist")
    return command


def pending_for(session: Session, node: str) -> list[Command]:
    """The node's commands not yet handed to the broker, in seq order."""
    return list(
        session.scalars(
            select(Command)
            .where(Command.node == node, Command.status == CommandStatus.PENDING.value)
            .order_by(Command.seq)
        )
    )


def deliverable(session: Session, now: dt.datetime, limit: int = 500) -> list[Command]:
    """Pending, unexpired commands of nodes that are online and not quarantined."""
    return list(
        session.scalars(
            select(Command)
            .join(Concentrator, Concentrator.node == Command.node)
            .where(
                Command.status == CommandStatus.PENDING.value,
                Command.expires > now,
                Concentrator.online.is_(True),
                Concentrator.status == NodeStatus.ACTIVE.value,
            )
            .order_by(Command.node, Command.seq)
            .limit(limit)
        )
    )


def mark_delivered(session: Session, command_id: str, now: dt.datetime | None = None) -> bool:
    """pending → delivered (the broker took it); False if it was not pending."""
    result = session.execute(
        update(Command)
        .where(Command.id == command_id, Command.status == CommandStatus.PENDING.value)
        .values(status=CommandStatus.DELIVERED.value, updated=now or dt.datetime.now(dt.UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def expire(session: Session, now: dt.datetime, node: str | None = None) -> int:
    """Mark open commands past their expiry as expired; returns how many."""
    statement = update(Command).where(Command.status.in_(OPEN), Command.expires <= now)
    if node is not None:
        statement = statement.where(Command.node == node)
    result = session.execute(statement.values(status=CommandStatus.EXPIRED.value, updated=now))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        log.info("%d command(s) expired%s", count, f" for {node}" if node else "")
    return count


def record_outcome(
    session: Session,
    node: str,
    command_id: str,
    status: CommandStatus,
    *,
    result: Mapping[str, Any],
    now: dt.datetime,
) -> bool:
    """An edge's verdict on one of its commands. The first final verdict wins; a result also
    overrides `expired` (the edge applied it after all)."""
    outcome = session.execute(
        update(Command)
        .where(Command.id == command_id, Command.node == node, Command.status.not_in(FINAL))
        .values(status=status.value, result=dict(result), updated=now)
    )
    return bool(outcome.rowcount)  # type: ignore[attr-defined]
