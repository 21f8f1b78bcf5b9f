"""The rotations of a concentrator's node key as the cloud holds them (`ledger.key_rotation`,
table `node_key_rotations`): read for ingest to follow, recorded when a batch brings new ones,
which makes the last one's key the node's registered key (`concentrators.public_key`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.db.models import Concentrator, NodeKeyRotation
from ledger.cloud_trust import public_hex
from ledger.key_rotation import KeyRotation


def of(session: Session, node: str) -> list[KeyRotation]:
    """The node's rotations, in the order they were recorded (verified then: decoded again,
    each checked to be signed by the old key it names)."""
    records = session.scalars(
        select(NodeKeyRotation.record)
        .where(NodeKeyRotation.node == node)
        .order_by(NodeKeyRotation.id)
    )
    return [KeyRotation.decode(bytes(record)) for record in records]


def record(
    session: Session, node: str, rotations: Sequence[KeyRotation], now: dt.datetime
) -> str | None:
    """Store rotations ingest followed; the node's new registered key (hex), if any."""
    if not rotations:
        return None
    session.add_all(
        NodeKeyRotation(node=node, seq=r.seq, new_key_id=r.new_key_id, record=r.payload,
                        received=now)
        for r in rotations
    )  # fmt: skip
    last = rotations[-1]
    session.execute(
        update(Concentrator)
        .where(Concentrator.node == node)
        .values(public_key=public_hex(last.new_key), key_id=last.new_key_id)
    )
    return public_hex(last.new_key)
