"""The cloud's command keys as the nodes are told them: every configuration pushed carries the
key the cloud signs with, the staged next one and the retired ones (`ledger.cloud_trust`), so a
box trusts old and new during a rotation and drops the old after it with no site.toml edit.

    voltbook-cloud keys rotate-command-key            `staged`: the next key, state `next`
    (`POST /registry/push`: every node is marked; once a box applied its configuration, it
    accepts commands signed by the next key)
    voltbook-cloud keys rotate-command-key --switch   `switched`: the old key `retired`, the
                                                      next one the cloud's (no row); refused
                                                      while `not_yet_trusting` names a node
                                                      (unless --force, in the operator log)
    (restart the cloud, push again: the boxes trust the new key only)

The private keys stay in files (`cloud.keys`); these rows hold public keys, for the pushes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cloud.db.models import Command, CommandKey, CommandStatus, Concentrator, NodeStatus
from cloud.db.registry import NodeConfig
from cloud.keys import CLOUD_NODE
from ledger.chain import NodeKey
from ledger.cloud_trust import public_hex
from ledger.signed import CommandKind

NEXT, RETIRED = "next", "retired"


def _put(session: Session, key: Ed25519PublicKey, state: str, now: dt.datetime) -> None:
    row = session.get(CommandKey, public_hex(key))
    if row is None:
        session.add(CommandKey(public_key=public_hex(key), state=state, since=now))
    elif row.state != state:
        row.state, row.since = state, now
    session.flush()


def _mark_every_node(session: Session) -> None:
    """Every node's configuration marked changed: `POST /registry/push` sends the keys to all."""
    session.execute(update(NodeConfig).values(dirty=True))


def staged(session: Session, next_key: Ed25519PublicKey, now: dt.datetime) -> None:
    """The next command key is staged: pushed from now on beside the current one."""
    _put(session, next_key, NEXT, now)
    _mark_every_node(session)


def switched(
    session: Session, old: Ed25519PublicKey, new: Ed25519PublicKey, now: dt.datetime
) -> None:
    """The cloud signs with `new` now: `old` is retired (the boxes drop it at the next push)."""
    session.execute(delete(CommandKey).where(CommandKey.public_key == public_hex(new)))
    _put(session, old, RETIRED, now)
    _mark_every_node(session)


def config_args(session: Session, key: NodeKey) -> dict[str, Any]:
    """The `cloud_keys` and `retired_cloud_keys` arguments of a `config` signed by `key`."""
    current = public_hex(key.public_key)
    rows = session.execute(select(CommandKey.public_key, CommandKey.state)).all()
    staged_keys = sorted(k for k, state in rows if state == NEXT and k != current)
    retired = sorted(k for k, state in rows if state == RETIRED and k != current)
    return {"cloud_keys": [current, *staged_keys], "retired_cloud_keys": retired}


def not_yet_trusting(session: Session, key: Ed25519PublicKey) -> list[str]:
    """The active concentrators that have not applied a configuration carrying `key` among its
    `cloud_keys`: a switch to `key` would leave them unable to open the cloud's commands."""
    wanted = public_hex(key)
    staged_since = session.scalar(select(CommandKey.since).where(CommandKey.public_key == wanted))
    configs = select(Command.node, Command.args).where(
        Command.kind == CommandKind.CONFIG.value, Command.status == CommandStatus.APPLIED.value
    )
    if staged_since is not None:  # none before the key was staged can carry it
        configs = configs.where(Command.issued >= staged_since)
    trusting = {node for node, args in session.execute(configs)
                if wanted in (args or {}).get("cloud_keys", ())}  # fmt: skip
    active = session.scalars(
        select(Concentrator.node)
        .where(Concentrator.status == NodeStatus.ACTIVE.value, Concentrator.node != CLOUD_NODE)
        .order_by(Concentrator.node)
    )
    return [node for node in active if node not in trusting]
