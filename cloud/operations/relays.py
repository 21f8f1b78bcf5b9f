"""Remote relay orders: an operator trips or closes the relays of chosen meters, one signed
`relay` command per concentrator (`cloud.chains.commands`); the edge reports each meter's
outcome in the command's result. `order_and_log` is what `POST /relays` and the console's batch
control both do: the orders, and one operator-log row per command."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains import commands
from cloud.db.models import Command, MeterState
from cloud.errors import Invalid, NotFound
from cloud.people import oplog
from ledger.chain import NodeKey
from ledger.signed import CommandKind


def order_relays(  # noqa: PLR0917 (the API calls it as documented)
    session: Session,
    meters: list[str],
    action: str,
    operator: str,
    key: NodeKey,
    now: dt.datetime,
) -> list[Command]:
    """Trip or close the relays of `meters`: one command per concentrator. An unknown meter
    raises NotFound and nothing is issued."""
    if action not in commands.RELAY_ACTIONS:
        raise Invalid(f"action must be one of {', '.join(commands.RELAY_ACTIONS)}, got {action!r}")
    if not meters or not all(isinstance(m, str) and m for m in meters):
        raise Invalid("meters must be a non-empty list of meter addresses")
    wanted = sorted(set(meters))
    found = session.execute(
        select(MeterState.address, MeterState.node).where(MeterState.address.in_(wanted))
    )
    by_node: dict[str, list[str]] = defaultdict(list)
    seen = set()
    for address, node in found:
        by_node[node].append(address)
        seen.add(address)
    missing = [m for m in wanted if m not in seen]
    if missing:
        raise NotFound(f"unknown meter(s): {', '.join(missing)}")
    return [
        commands.issue(
            session,
            node,
            CommandKind.RELAY,
            {"meters": sorted(by_node[node]), "action": action},
            key=key,
            now=now,
            operator=operator,
        )
        for node in sorted(by_node)  # lock order: nodes sorted by id
    ]


def order_and_log(  # noqa: PLR0917 (as order_relays, with who instead of a name)
    session: Session,
    meters: list[str],
    action: str,
    actor: oplog.Actor,
    key: NodeKey,
    now: dt.datetime,
) -> list[Command]:
    """`order_relays`, then one operator-log row per command (per concentrator) naming it."""
    issued = order_relays(session, meters, action, actor.user, key, now)
    session.flush()
    for command in issued:
        after = {"command_id": command.id, **command.args}
        oplog.record(session, actor, f"relay.{action}", f"node:{command.node}", None, after, now)
    return issued
