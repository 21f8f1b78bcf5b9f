"""Row locks on `concentrators`: how writers of one node's state take turns.

Every transaction that changes a node's chain, command sequence or quarantine first locks the
node's `concentrators` row (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the transaction
already holds the database's write lock, see `cloud.db.engine`) and reads the row again after
locking. Lock order, to stay free of deadlocks: edge node rows (sorted by id) before the
`cloud` row, and both before `balances` rows.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.models import Concentrator, NodeStatus
from cloud.errors import Conflict, NotFound, Quarantined


def lock(session: Session, node: str) -> Concentrator:
    """The node's row, locked for this transaction and freshly read; NotFound if unknown."""
    row = session.scalars(
        select(Concentrator)
        .where(Concentrator.node == node)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise NotFound(f"concentrator {node!r} is not registered")
    return row


def lock_active(session: Session, node: str) -> Concentrator:
    """Like `lock`, and Quarantined if the node is quarantined."""
    row = lock(session, node)
    if row.status == NodeStatus.QUARANTINED.value:
        raise Quarantined(node, row.quarantine_reason)
    if row.status == NodeStatus.RETIRED.value:
        raise Conflict(f"concentrator {node} is {row.quarantine_reason}")
    return row
