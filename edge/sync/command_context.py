"""One verified command being applied: its context, and its arguments checked.

Every handler of `edge.sync.commands` gets a `CommandContext` inside the runtime transaction that
also records the command in the inbox. A handler checks everything first and raises `Refusal`
(or `edge.rules.operations.OperationRefused`) before it books anything: the desk then records
the command as refused with that message, and nothing else changes. Only then does it call
`apply(transfers)`, and it stages states and events only if that was the first delivery and
the command was applied.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.rules.operations import Stamp
from edge.rules.times import stamp
from edge.runtime.cycle import Runtime
from edge.runtime.relays import RelayOrder
from edge.store import CommandResult, CommandStatus, Event, Transaction
from ledger.signed import REFERENCE_PATTERN, Command, is_reference
from ledger.transfers import Transfer

MAX_REF_LENGTH = 64
MAX_REASON_LENGTH = 200
_HEX = re.compile(r"[0-9a-f]{32}")


class Refusal(Exception):
    """A validly signed command this concentrator cannot carry out (recorded as refused)."""


def text(args: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str) or not value or len(value) > MAX_REF_LENGTH:
        raise Refusal(f"{name} must be a text of 1-{MAX_REF_LENGTH} characters, got {value!r}")
    return value


def reference(args: Mapping[str, Any], name: str) -> str:
    """An operation's reference (`ledger.signed.REFERENCE_PATTERN`)."""
    value = args.get(name)
    if not is_reference(value):
        raise Refusal(f"{name} must match {REFERENCE_PATTERN}, got {value!r}")
    return value


def long_text(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_REASON_LENGTH:
        raise Refusal(f"{name} must be a text of 1-{MAX_REASON_LENGTH} characters, got {value!r}")
    return value


def hex_id(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not _HEX.fullmatch(value) or not int(value, 16):
        raise Refusal(f"{name} must be a transfer id in 32 lower-case hex digits, got {value!r}")
    return value


def integer(
    args: Mapping[str, Any], name: str, *, low: int = -(2**53) + 1, high: int = 2**53 - 1
) -> int:
    value = args.get(name)
    if type(value) is not int or not low <= value <= high:
        raise Refusal(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def aware_time(args: Mapping[str, Any], name: str) -> dt.datetime:
    value = args.get(name)
    try:
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Refusal(f"{name} must be an ISO time with a zone, got {value!r}")
    return moment


MAX_PERIODS = 240  # twenty years of monthly periods
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def periods(args: Mapping[str, Any], name: str) -> frozenset[str]:
    """An optional list of subsidy periods ("2026-11"); absent: none."""
    value = args.get(name, [])
    if (
        not isinstance(value, list)
        or len(value) > MAX_PERIODS
        or not all(isinstance(p, str) and _PERIOD.fullmatch(p) for p in value)
    ):
        raise Refusal(f"{name} must be a list of up to {MAX_PERIODS} months YYYY-MM, got {value!r}")
    return frozenset(value)


def choice(args: Mapping[str, Any], name: str, options: Sequence[str]) -> str:
    value = args.get(name)
    if value not in options:
        raise Refusal(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return str(value)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """A verified command inside the runtime transaction that records it."""

    runtime: Runtime
    tx: Transaction
    command: Command
    payload: bytes
    now: dt.datetime  # the clock guard's time, in the site's zone

    @property
    def args(self) -> Mapping[str, Any]:
        return self.command.args

    @property
    def stamp(self) -> Stamp:
        return Stamp(stamp(self.now), self.runtime.guard.clock.source, self.command.id)

    def account(self, name: str = "account") -> str:
        """An account this concentrator holds and still bills (not moved out)."""
        owner = text(self.args, name)
        if owner not in self.runtime.site.accounts:
            raise Refusal(f"account {owner!r} is not on this concentrator")
        moved = self.runtime.account_state(owner).moved_out
        if moved is not None:
            raise Refusal(f"account {owner!r} moved out of this concentrator (move {moved})")
        return owner

    def apply(self, transfers: Sequence[Transfer] = ()) -> CommandResult:
        """Record the command with its transfers (all or none; a repeat changes nothing)."""
        return self.tx.apply_command(self.command.id, self.payload, transfers, self.now)

    def event(
        self, *, account: str | None = None, meter: str | None = None, **detail: object
    ) -> None:
        """Record what the command did (an event named after its kind, with its id)."""
        shop = None
        if meter is not None and meter in {m.address for m in self.runtime.site.meters}:
            shop = self.runtime.site.meter(meter).shop
        event = Event(
            time=self.now,
            kind=self.command.kind.value,
            meter=meter,
            shop=shop,
            account=account,
            detail={"command_id": self.command.id, **detail},
        )
        self.tx.add_events([event])


def took_effect(result: CommandResult) -> bool:
    """The first delivery, applied: the moment to stage states and record events."""
    return result.first_delivery and result.status is CommandStatus.APPLIED


Applied = tuple[CommandResult, list[RelayOrder], str]  # the result, relay orders, a log note
