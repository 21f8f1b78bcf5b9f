"""Signed cloud commands (`vb/{node}/cmd`), applied exactly once, in the runtime's thread.

    payload ──► open_command (signature by a cloud key, target = this node, not expired by the
                clock guard's time) ──► Rejected: a `command_rejected` alarm, nothing applied
            ──► one runtime transaction: the inbox (`apply_command` / `refuse_command`, keyed
                by command id) + what the command does + the highest command seq applied
            ──► after the commit: relay orders sent, the cloud's time given to the clock guard,
                a new configuration written and run; the caller PUBACKs only now

- `recharge` {account, fen, payment, method}: the runtime's recharge transfer (id derived from
  the payment reference, cash in transit → the account's prepaid pocket). An account this
  concentrator does not hold, or bad arguments: a `refused` result with the reason.
- `relay` {meters, action: trip | close}: an operator's override (`edge.runtime.operator`): a
  trip holds the relay open until an operator closes it; a close also clears lockouts. Sent at
  once, confirmed by read-back like any relay command.
- `time`: the command's `issued` time is the cloud's clock; the clock guard trusts it.
- `correction`, `refund`, `settle`, `move_out`, `move_in`: `edge.sync.money`.
- `config`, `meter_swap`: `edge.sync.configure`.
- `update` {rollout, version, url, sha256, size}: recorded, then handed to the updater after
  the commit (`edge.sync.update`); the download and install never run in this thread.

Every handler checks its arguments and the state before it books anything, so a refused
command changes nothing but its inbox row (with the reason, which goes up as its result).

A delivery of a command already in the inbox (the same bytes) returns its stored result and
changes nothing, even after the command expired, so the broker, paho or the cloud may deliver
a command any number of times, however late.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.rules.decisions import RelayCommand
from edge.rules.operations import OperationRefused
from edge.runtime.cycle import Runtime
from edge.runtime.relays import RelayOrder
from edge.store import Category, CommandConflict, CommandResult, CommandStatus, Event
from edge.store.writes import Transaction
from edge.sync import configure, money, takeover, update
from edge.sync.command_context import Applied, CommandContext, Refusal, integer, text
from edge.sync.trust import CloudKeyRing
from ledger.errors import DecodeError, LedgerError
from ledger.signed import Command, CommandKind, Rejected, open_command
from ledger.untrusted import load_json
from ledger.wire import topic

log = logging.getLogger("edge.sync")

COMMAND_SEQ_KEY = "sync:command_seq"  # the highest command seq applied (Status.commands)
REJECTED = "command_rejected"
OPERATOR_RELAY = "operator_relay"
MAX_DETAIL_LENGTH = 200  # of a rejection's message: the payload it quotes is anyone's
_COMMAND_ID = re.compile(r"[0-9a-f]{32}")
# What Python raises when code meets data of a shape it did not expect (never a store error).
UNREADABLE = (TypeError, ValueError, LookupError, AttributeError, RecursionError)


@dataclass(frozen=True, slots=True)
class Handled:
    """What one delivery did; `outcome` is applied, refused, repeated or rejected."""

    outcome: str
    command_id: str | None
    kind: str | None
    message: str
    result: CommandResult | None = None


def _command_id(payload: bytes) -> str | None:
    """The id a payload claims, if it is one (32 hex digits); None for anything else."""
    try:
        fields = load_json(payload)
    except DecodeError:
        return None
    value = fields.get("id") if isinstance(fields, dict) else None
    return value if isinstance(value, str) and _COMMAND_ID.fullmatch(value) else None


def recharge(d: CommandContext) -> Applied:
    account = d.account()
    fen = integer(d.args, "fen", low=1)
    transfer = d.runtime.recharge_transfer(
        account, fen, text(d.args, "payment"), method=text(d.args, "method", "cloud")
    )
    return d.apply([transfer]), [], f"{account} {fen} fen"


def cloud_time(d: CommandContext) -> Applied:
    return d.apply(), [], f"cloud time {d.command.issued.isoformat()}"


def relay(d: CommandContext) -> Applied:
    runtime, command = d.runtime, d.command
    meters, action = d.args.get("meters"), d.args.get("action")
    if not isinstance(meters, list) or not meters or not all(isinstance(m, str) for m in meters):
        raise Refusal(f"meters must be a non-empty list of meter addresses, got {meters!r}")
    known = {m.address for m in runtime.site.meters}
    unknown = [m for m in meters if m not in known]
    if unknown:
        raise Refusal(f"meters {unknown} are not on this concentrator")
    if action not in (RelayCommand.TRIP.value, RelayCommand.CLOSE.value):
        raise Refusal(f"action must be trip or close, got {action!r}")
    note = f"{action} {', '.join(meters)}"
    result = d.apply()
    if not result.first_delivery:
        return result, [], note
    command_relay = RelayCommand(action)
    reason = f"operator {action} (command {command.id[:8]})"
    orders, done = runtime.operator_relay(d.tx, meters, command_relay, reason)
    events = []
    for address, changed in done.items():
        meter = runtime.site.meter(address)
        still = sorted(cause.value for cause in changed.still_held)
        events.append(
            Event(
                time=d.now,
                kind=OPERATOR_RELAY,
                meter=address,
                shop=meter.shop,
                account=meter.account,
                detail={"command_id": command.id, "action": action, "held_by": still},
            )
        )
        if command_relay is RelayCommand.CLOSE and still:
            log.warning(
                "meter %s: operator close recorded, relay still held open by %s",
                address,
                ", ".join(still),
            )
    d.tx.add_events(events)
    return result, orders, note


HANDLERS: Mapping[CommandKind, Callable[[CommandContext], Applied]] = {
    CommandKind.RECHARGE: recharge,
    CommandKind.RELAY: relay,
    CommandKind.TIME: cloud_time,
    CommandKind.CONFIG: configure.config,
    CommandKind.CORRECTION: money.correction,
    CommandKind.REFUND: money.refund,
    CommandKind.SETTLE: money.settle,
    CommandKind.METER_SWAP: configure.meter_swap,
    CommandKind.MOVE_OUT: money.move_out,
    CommandKind.MOVE_IN: money.move_in,
    CommandKind.UPDATE: update.offer,
    CommandKind.TAKEOVER: takeover.takeover,
}


class CommandDesk:
    """Applies the commands of one concentrator; owns nothing but a reference to the runtime."""

    def __init__(self, runtime: Runtime, cloud_keys: Mapping[str, Ed25519PublicKey]) -> None:
        """`cloud_keys`: the site.toml's; the desk trusts those and the ones the cloud pushed
        (`edge.sync.trust`)."""
        self.runtime = runtime
        self.cloud_keys = CloudKeyRing(runtime.store, cloud_keys)

    @property
    def highest_seq(self) -> int:
        return int(self.runtime.store.get_state(COMMAND_SEQ_KEY, 0))

    def handle(self, payload: bytes) -> Handled:
        """Verify and apply one delivery; its effects are durable when this returns."""
        runtime = self.runtime
        known = _command_id(payload)
        stored = None if known is None else runtime.store.command_delivered(known, payload)
        if stored is not None:  # a redelivery, however late: the inbox answers
            message = f"command {stored.command_id[:8]}… repeated ({stored.status.value} before)"
            log.info("%s", message)
            return Handled("repeated", stored.command_id, None, message, stored)
        now = runtime.guard.judge()[0].now.astimezone(runtime.site.zone)
        try:
            command = open_command(payload, self.cloud_keys, runtime.store.node, now)
        except Rejected as exc:
            return self._reject(known, exc.reason, exc.detail)
        orders: list[RelayOrder] = []
        try:
            with runtime.transaction() as tx:
                result, orders, note = self._apply(tx, command, payload, now)
                if result.first_delivery and command.seq > self.highest_seq:
                    tx.set_state(COMMAND_SEQ_KEY, command.seq)
        except CommandConflict as exc:
            return self._reject(command.id, "conflict", str(exc))
        except UNREADABLE as exc:
            # A signed command whose arguments a handler's checks let through and then choked
            # on: a bug of ours, shown with its traceback, but the message must not block the
            # queue. Its transaction rolled back; it goes up as rejected, like a forged one.
            log.error("command %s: %s unreadable", command.id, command.kind.value, exc_info=exc)
            return self._reject(command.id, "unreadable", f"{type(exc).__name__}: {exc}")
        if result.first_delivery:
            if command.kind is CommandKind.TIME:
                runtime.guard.cloud_time(command.issued)
            if command.kind is CommandKind.UPDATE and result.status is CommandStatus.APPLIED:
                update.hand_over_or_alarm(runtime, command)
            runtime.send_orders(orders)
        outcome = result.status.value if result.first_delivery else "repeated"
        words = [f"command {command.id[:8]}…", command.kind.value, note, outcome]
        message = " ".join(w for w in words if w)
        if result.reason:
            message += f" ({result.reason})"
        log.info("%s", message)
        return Handled(outcome, command.id, command.kind.value, message, result)

    def _apply(
        self, tx: Transaction, command: Command, payload: bytes, received: dt.datetime
    ) -> Applied:
        delivery = CommandContext(self.runtime, tx, command, payload, received)
        try:
            return HANDLERS[command.kind](delivery)
        except (Refusal, OperationRefused, LedgerError) as exc:
            refused = tx.refuse_command(command.id, payload, str(exc), received)
            return refused, [], ""

    def _reject(self, command_id: str | None, reason: str, detail: str) -> Handled:
        runtime = self.runtime
        detail = detail[:MAX_DETAIL_LENGTH]
        now = runtime.guard.judge()[0].now
        event = Event(
            time=now,
            kind=REJECTED,
            category=Category.ALARM,
            detail={
                "severity": "warning",
                "command_id": command_id,
                "reason": reason,
                "message": detail,
            },
        )
        with runtime.transaction() as tx:
            tx.add_events([event])
        where = topic(runtime.store.node, "cmd")
        message = f"{where}: command {command_id or '(no id)'} rejected ({reason}): {detail}"
        log.warning("%s", message)
        return Handled("rejected", command_id, None, message)


__all__ = ["COMMAND_SEQ_KEY", "CommandDesk", "CommandStatus", "Handled", "Refusal"]
