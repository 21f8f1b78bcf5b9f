"""The registry of concentrators: who may upload a chain, with which key, and quarantine.

A concentrator is registered with its node id (the CN of its TLS certificate) and its Ed25519
public key (`voltbook-fw` provisions both). Registering again with the same key is a no-op (the
name may change); another key for a known node is refused unless the operator says it is a key
rotation. A quarantined node (its chain forked, or a batch came signed by the wrong key) stays
quarantined until an operator clears it.

A node may be pre-assigned to a site before its box exists (`reserve`): a row `reserved`, with
no key, that the registry's shops and meters can name. Only a claim bound to it provisions it
(`provision_reserved`, called by `cloud.ingest.claims`): the box's key is set and it is active.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.chains.alarm_kinds import severity_of
from cloud.chains.locks import lock
from cloud.db.models import Alarm, Concentrator, NodeStatus
from cloud.errors import Conflict, Invalid, NotFound
from cloud.keys import CLOUD_NODE
from ledger.chain import key_id
from ledger.encoding import GENESIS_HASH

log = logging.getLogger(__name__)

NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
QUARANTINE_ALARM = "quarantined"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_node_id(node: str) -> str:
    if not isinstance(node, str) or not NODE_ID.fullmatch(node):
        raise Invalid(
            f"node id {node!r} must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"
        )
    if node == CLOUD_NODE:
        raise Invalid(f"node id {CLOUD_NODE!r} is the cloud's own chain")
    return node


def register(
    session: Session,
    node: str,
    public_key: Ed25519PublicKey,
    name: str = "",
    now: dt.datetime | None = None,
    *,
    rotate: bool = False,
) -> Concentrator:
    """Register a concentrator or confirm its registration (idempotent for the same key).

    A different key for a known node raises Conflict unless `rotate=True`, which replaces the
    key (checkpoints signed later must use the new one).
    """
    check_node_id(node)
    if not isinstance(public_key, Ed25519PublicKey):
        raise Invalid("public_key must be an Ed25519 public key")
    now = now or _utcnow()
    raw = public_key.public_bytes_raw().hex()
    kid = key_id(public_key)
    row = session.scalars(
        select(Concentrator).where(Concentrator.node == node).with_for_update()
    ).one_or_none()
    if row is None:
        row = Concentrator(
            node=node,
            name=name,
            public_key=raw,
            key_id=kid,
            status=NodeStatus.ACTIVE.value,
            quarantine_reason="",
            online=False,
            head_seq=0,
            head_hash=GENESIS_HASH,
            upto=0,
            commands_applied=0,
            next_command_seq=1,
            created=now,
        )
        session.add(row)
        session.flush()
        log.info("node %s registered (key %s)", node, kid)
        return row
    if row.status == NodeStatus.RESERVED.value:
        raise Conflict(
            f"node {node} is pre-assigned and waits for its box: provision it with a claim "
            f"bound to it (voltbook-fw claim --site … --node {node})"
        )
    if row.public_key != raw:
        if not rotate:
            raise Conflict(
                f"node {node} is registered with key {row.key_id}, not {kid}; "
                "pass rotate=True to replace its key"
            )
        log.warning("node %s: key rotated from %s to %s", node, row.key_id, kid)
        row.public_key, row.key_id = raw, kid
    if name:
        row.name = name
    session.flush()
    return row


def reserve(session: Session, node: str, site_id: int, name: str, now: dt.datetime) -> Concentrator:
    """Pre-assign `node` to the site `site_id` (its box comes later): a `reserved` row without a
    key. A node id already used, reserved or not, is refused (409)."""
    check_node_id(node)
    if session.get(Concentrator, node) is not None:
        raise Conflict(f"node {node} exists already")
    row = Concentrator(
        node=node, name=name, public_key="", key_id="", status=NodeStatus.RESERVED.value,
        quarantine_reason="", online=False, head_seq=0, head_hash=GENESIS_HASH, upto=0,
        commands_applied=0, next_command_seq=1, created=now, site_id=site_id,
    )  # fmt: skip
    session.add(row)
    session.flush()
    log.info("node %s pre-assigned to site %s", node, site_id)
    return row


def provision_reserved(session: Session, node: str, public_key: Ed25519PublicKey) -> Concentrator:
    """Give the reserved `node` its box's key and make it active; `Conflict` (nothing changed)
    if it is not reserved any more (another box took it)."""
    row = session.scalars(
        select(Concentrator).where(Concentrator.node == node).with_for_update()
    ).one_or_none()
    if row is None or row.status != NodeStatus.RESERVED.value:
        raise Conflict(f"node {node} is already provisioned")
    row.public_key, row.key_id = public_key.public_bytes_raw().hex(), key_id(public_key)
    row.status = NodeStatus.ACTIVE.value
    session.flush()
    log.info("node %s provisioned (key %s)", node, row.key_id)
    return row


def get(session: Session, node: str) -> Concentrator:
    row = session.get(Concentrator, node)
    if row is None or node == CLOUD_NODE:
        raise NotFound(f"concentrator {node!r} is not registered")
    return row


def clear_quarantine(
    session: Session, node: str, operator: str, now: dt.datetime | None = None
) -> Concentrator:
    """Lift a quarantine (the operator has found and fixed its cause) and clear its alarms.

    Clearing does not change the stored chain: a node that keeps sending a forked chain is
    quarantined again by its next batch.
    """
    row = lock(session, node)
    if row.status != NodeStatus.QUARANTINED.value:
        return row
    log.warning(
        "node %s: quarantine (%s) cleared by %s", node, row.quarantine_reason, operator or "?"
    )
    row.status, row.quarantine_reason = NodeStatus.ACTIVE.value, ""
    now = now or _utcnow()
    session.execute(
        update(Alarm)  # the cloud's own: the concentrator's alarms are not about its chain
        .where(Alarm.node == node, Alarm.event_id.is_(None), Alarm.cleared.is_(False))
        .values(cleared=True, cleared_at=now)
    )
    session.add(
        Alarm(
            node=node,
            kind="quarantine_cleared",
            severity=severity_of("quarantine_cleared"),
            detail=f"cleared by {operator or 'unknown operator'}",
            facts={},
            time=now,
            cleared=True,
            cleared_at=now,
            note="",
        )
    )
    session.flush()
    return row
