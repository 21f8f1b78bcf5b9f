"""The console's batch control: which meters a batch means, and what became of its orders.

**Choosing.** A batch names meters three ways: the addresses ticked in the monitoring table
(at most a page), a whole floor, or every meter matching the table's filter, recomputed here
from the filter (`monitoring.matching`), never sent as a list of ids. At most `MAX_METERS`,
as many as `POST /relays` takes.

**Sending** is `cloud.operations.relays.order_and_log` (what `POST /relays` does: a signed
command per concentrator, an operator-log row each), a cut's reason is a power-off notice by
`cloud.notices.power_off.issue` (what `POST /notices/power-off` does), keep-power is the
registry's account write (`PATCH /registry/accounts/{id}`).

**What became of it** is read, not kept: a batch is its commands (its id lists them), and each
meter's outcome is the command's own status (`CommandStatus`: pending, delivered, applied,
failed, expired) and, once applied, the edge's read-back of that meter's relay: the
`relay_confirmed` / `relay_failed` / `relay_still_failing` event of the order the command
made (the edge names the command in the order's reason, `edge.sync.commands.relay`), or the
meter's relay as last read, when the relay already stood there and no order was sent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains.commands import RELAY_ACTIONS
from cloud.db import models
from cloud.db import registry as reg
from cloud.db.models import CommandStatus
from cloud.errors import Invalid, NotFound
from cloud.web import monitoring
from cloud.web.monitoring import MeterFilters
from ledger.signed import CommandKind

MAX_METERS = 1000  # as `POST /relays` takes in one request
MAX_NODES = 100  # commands in one batch id (one per concentrator)
KEEP_ACTIONS = {"keep_on": True, "keep_off": False}
ACTIONS = (*RELAY_ACTIONS, *KEEP_ACTIONS)
SCOPES = ("meters", "floor", "filter")
ADDRESS = re.compile(r"[0-9A-Za-z]{1,32}")
BATCH_ID = re.compile(rf"[0-9a-f]{{32}}(\.[0-9a-f]{{32}}){{0,{MAX_NODES - 1}}}")
WANTED_RELAY = {"trip": 0, "close": 1}  # `meters.relay`: 1 closed, 0 open
READ_BACK = {"relay_confirmed": "confirmed", "relay_failed": "failed",
             "relay_still_failing": "failed"}  # fmt: skip
PENDING = ("pending", "delivered", "applied")  # still on its way: the panel keeps asking


class BatchRefused(Invalid):
    """A batch that cannot be meant; `key` is its catalogue message."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key, self.values = key, values


@dataclass(frozen=True, slots=True)
class Chosen:
    """The meters a batch means, with what the confirm step shows of them."""

    meters: list[tuple[str, str, str, str, str]]  # node, address, account, shop, merchant

    @property
    def addresses(self) -> list[str]:
        return sorted({m[1] for m in self.meters})

    @property
    def accounts(self) -> list[str]:
        return sorted({m[2] for m in self.meters if m[2]})

    @property
    def shops(self) -> list[tuple[str, str]]:
        """(shop, merchant) of the meters, each once."""
        return sorted({(m[3], m[4]) for m in self.meters if m[3]})

    @property
    def nodes(self) -> list[str]:
        return sorted({m[0] for m in self.meters})


def choose(session: Session, scope: str, filters: MeterFilters, ticked: list[str]) -> Chosen:
    """The meters of a batch; `BatchRefused` when none, too many, or an address is unknown."""
    if scope not in SCOPES:
        raise BatchRefused("batch_bad_scope")
    if scope == "meters":
        if not ticked:
            raise BatchRefused("batch_none_ticked")
        if not all(ADDRESS.fullmatch(a) for a in ticked):
            raise BatchRefused("batch_unknown_meter")
        query = monitoring.matching(MeterFilters()).where(
            models.MeterState.address.in_(set(ticked))
        )
    elif scope == "floor":
        if not (filters.building and filters.floor):
            raise BatchRefused("batch_no_floor")
        whole = MeterFilters(site=filters.site, building=filters.building, floor=filters.floor)
        query = monitoring.matching(whole)
    else:
        query = monitoring.matching(filters)
    rows = query.subquery()
    found = [
        (r.node, r.address, r.account, r.shop, r.merchant)
        for r in session.execute(
            select(rows.c.node, rows.c.address, rows.c.account, rows.c.shop, rows.c.merchant)
            .order_by(rows.c.shop, rows.c.node, rows.c.address)
            .limit(MAX_METERS + 1)
        )
    ]
    if scope == "meters" and {r[1] for r in found} != set(ticked):
        raise BatchRefused("batch_unknown_meter")
    if not found:
        raise BatchRefused("batch_none_match")
    if len(found) > MAX_METERS:
        raise BatchRefused("batch_too_many", most=MAX_METERS)
    return Chosen(found)


def shops_by_site(session: Session, accounts: list[str]) -> dict[int, list[str]]:
    """The registry's shop numbers of `accounts`, by site: what a power-off notice names."""
    found: dict[int, list[str]] = defaultdict(list)
    for site, number in session.execute(
        select(reg.Shop.site_id, reg.Shop.number)
        .join(reg.Account, reg.Account.shop_id == reg.Shop.id)
        .where(reg.Account.id.in_(accounts))
        .order_by(reg.Shop.site_id, reg.Shop.number)
    ):
        found[site].append(number)
    return dict(found)


def keep_power_of(session: Session, accounts: list[str]) -> dict[str, bool]:
    return dict(
        session.execute(
            select(reg.Account.id, reg.Account.keep_power).where(reg.Account.id.in_(accounts))
        ).all()
    )


# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    node: str
    meter: str
    shop: str
    state: str  # a command status, or `confirmed` / `failed` by the meter's read-back
    detail: str  # the edge's words: a refusal's reason, a read-back failure
    held: tuple[str, ...] = ()  # what still holds the relay open after a close (`RelayCause`)


@dataclass(frozen=True, slots=True)
class Progress:
    action: str
    issued: dt.datetime
    operator: str
    outcomes: list[Outcome]

    def count(self, *states: str) -> int:
        return sum(o.state in states for o in self.outcomes)

    @property
    def settled(self) -> bool:
        return self.count(*PENDING) == 0

    @property
    def retryable(self) -> list[str]:
        return sorted({o.meter for o in self.outcomes if o.state in ("failed", "expired")})


def command_ids(batch: str) -> list[str]:
    """A batch id (its commands' ids joined by dots) as the ids; `NotFound` if it is not one."""
    if not BATCH_ID.fullmatch(batch):
        raise NotFound("not a batch id")
    return batch.split(".")


def batch_id(commands: list[models.Command]) -> str:
    return ".".join(c.id for c in commands)


def progress(session: Session, batch: str) -> Progress:
    """Each meter's outcome in the batch's commands (see the module docstring)."""
    ids = command_ids(batch)
    commands = list(session.scalars(
        select(models.Command)
        .where(models.Command.id.in_(ids), models.Command.kind == CommandKind.RELAY.value)
        .order_by(models.Command.node)
    ))  # fmt: skip
    if len(commands) != len(set(ids)):
        raise NotFound("no such batch")
    pairs = [(c.node, m) for c in commands for m in c.args["meters"]]
    nodes, meters = {n for n, _ in pairs}, {m for _, m in pairs}
    events = _read_back(session, commands, nodes, meters)
    relays = {
        (r.node, r.address): r
        for r in session.execute(
            select(models.MeterState.node, models.MeterState.address, models.MeterState.relay,
                   models.MeterState.last_reading)
            .where(models.MeterState.node.in_(nodes), models.MeterState.address.in_(meters))
        )
    }  # fmt: skip
    shops = _shops(session, nodes, meters)
    outcomes = []
    for command in commands:
        for meter in command.args["meters"]:
            state, detail, held = _outcome(command, meter, events,
                                           relays.get((command.node, meter)))  # fmt: skip
            outcomes.append(Outcome(command.node, meter, shops.get((command.node, meter), ""),
                                    state, detail, held))  # fmt: skip
    outcomes.sort(key=lambda o: (o.shop, o.node, o.meter))
    first = commands[0]
    return Progress(first.args["action"], first.issued, first.operator, outcomes)


def _read_back(
    session: Session, commands: list[models.Command], nodes: set[str], meters: set[str]
) -> dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]]:
    """The edge's events about these meters since the batch, by (node, meter, command id)."""
    tags = {f"(command {c.id[:8]})": c.id for c in commands}
    since = min(c.issued for c in commands) - dt.timedelta(hours=1)  # the edge's clock may lag
    found: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    event = models.Event
    for node, meter, kind, detail in session.execute(
        select(event.node, event.meter, event.kind, event.detail)
        .where(event.node.in_(nodes), event.meter.in_(meters), event.time >= since,
               event.kind.in_([*READ_BACK, "operator_relay"]))
        .order_by(event.time, event.event_id)
    ):  # fmt: skip
        if kind == "operator_relay":
            command = detail.get("command_id")
        else:
            reason = str(detail.get("reason") or "")
            command = next((cid for tag, cid in tags.items() if reason.endswith(tag)), None)
        if command is not None:
            found[node, meter, command].append((kind, detail))
    return found


def _outcome(
    command: models.Command,
    meter: str,
    events: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]],
    relay: Any,
) -> tuple[str, str, tuple[str, ...]]:
    status = command.status
    result = command.result or {}
    if status == CommandStatus.FAILED.value:
        return "failed", str(result.get("reason") or result.get("rejected") or ""), ()
    if status != CommandStatus.APPLIED.value:
        return status, "", ()  # pending, delivered, expired
    said = events.get((command.node, meter, command.id), [])
    held: tuple[str, ...] = ()
    for kind, detail in reversed(said):  # the latest read-back decides
        if kind in READ_BACK:
            said_why = "" if kind == "relay_confirmed" else str(detail.get("message", ""))
            return READ_BACK[kind], said_why, ()
        if kind == "operator_relay" and detail.get("held_by"):
            held = tuple(str(cause) for cause in detail["held_by"])
    wanted = WANTED_RELAY[command.args["action"]]
    if (relay is not None and relay.relay == wanted and relay.last_reading is not None
            and relay.last_reading >= command.issued):  # fmt: skip
        return "confirmed", "", ()
    return "applied", "", held


def _shops(session: Session, nodes: set[str], meters: set[str]) -> dict[tuple[str, str], str]:
    rows = monitoring.matching(MeterFilters()).where(
        models.MeterState.node.in_(nodes), models.MeterState.address.in_(meters)
    )
    return {(r.node, r.address): r.shop for r in session.execute(rows)}
