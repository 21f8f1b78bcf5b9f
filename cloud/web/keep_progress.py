"""What became of a keep-power batch: keep-power is an account's registry field
(`PATCH /registry/accounts/{id}`), which reaches a concentrator only in its next configuration
version (`cloud.registry.site_config.push`, an operator's explicit step) — so each meter's
progress is its concentrator's configuration, read, not kept:

| state          | when                                                                 |
|----------------|----------------------------------------------------------------------|
| `unpushed`     | the node has had no version since the change (version ≤ the one it   |
|                | had when keep-power was written): the change waits for a push        |
| `pushed`       | a later version was issued; its CONFIG command is pending/delivered  |
| `acknowledged` | the node applied that version (its command's result: applied)        |
| `failed`       | the node refused it, or it `expired` undelivered                     |

A batch is its accounts and, per concentrator, the version it had when keep-power was written
(`KeptBatch.after`): a version above that one was built from the registry after the change, so
carries it. Both travel in the progress page's address (`query` / `parse`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import models
from cloud.db import registry as reg
from cloud.db.models import CommandStatus
from cloud.errors import NotFound
from cloud.web import monitoring
from cloud.web.monitoring import MeterFilters

NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_ACCOUNTS = 1000  # as a batch's meters
COMMAND_STATE = {
    CommandStatus.PENDING.value: "pushed",
    CommandStatus.DELIVERED.value: "pushed",
    CommandStatus.APPLIED.value: "acknowledged",
    CommandStatus.FAILED.value: "failed",
    CommandStatus.EXPIRED.value: "failed",
}
SETTLED = ("acknowledged", "failed")


@dataclass(frozen=True, slots=True)
class KeptBatch:
    """The accounts a keep-power batch changed, and each node's version before the change."""

    accounts: tuple[str, ...]
    after: dict[str, int]

    def query(self) -> dict[str, str]:
        return {"accounts": ",".join(self.accounts),
                "after": ",".join(f"{n}:{v}" for n, v in sorted(self.after.items()))}  # fmt: skip


def parse(accounts: str, after: str) -> KeptBatch:
    """A progress page's address back as its batch; `NotFound` for one that is not."""
    names = tuple(a for a in accounts.split(",") if a)
    if not names or len(names) > MAX_ACCOUNTS or not all(NAME.fullmatch(a) for a in names):
        raise NotFound("not a keep-power batch")
    versions: dict[str, int] = {}
    for item in filter(None, after.split(",")):
        node, _, version = item.rpartition(":")
        if not NAME.fullmatch(node) or not version.isdigit() or len(version) > 18:
            raise NotFound("not a keep-power batch")
        versions[node] = int(version)
    return KeptBatch(names, versions)


def nodes_of(session: Session, accounts: list[str]) -> set[str]:
    """The concentrators reading the accounts' meters (as the monitoring table has them)."""
    rows = monitoring.matching(MeterFilters()).where(models.MeterState.account.in_(accounts))
    return {r.node for r in session.execute(rows)}


def versions(session: Session, nodes: set[str]) -> dict[str, int]:
    """Each node's configuration version now (0: never pushed)."""
    found = dict(
        session.execute(select(reg.NodeConfig.node, reg.NodeConfig.version)
                        .where(reg.NodeConfig.node.in_(nodes))).all()
    )  # fmt: skip
    return {node: int(found.get(node, 0)) for node in nodes}


@dataclass(frozen=True, slots=True)
class MeterProgress:
    node: str
    meter: str
    account: str
    shop: str
    state: str  # unpushed | pushed | acknowledged | failed
    version: int  # the version that carries the change (0 while unpushed)


@dataclass(frozen=True, slots=True)
class KeepProgress:
    meters: list[MeterProgress]

    def count(self, *states: str) -> int:
        return sum(m.state in states for m in self.meters)

    @property
    def settled(self) -> bool:
        return all(m.state in SETTLED for m in self.meters)

    @property
    def unpushed(self) -> list[str]:
        return sorted({m.node for m in self.meters if m.state == "unpushed"})


def progress(session: Session, batch: KeptBatch) -> KeepProgress:
    rows = monitoring.matching(MeterFilters()).where(models.MeterState.account.in_(batch.accounts))
    meters = [(r.node, r.address, r.account, r.shop) for r in session.execute(rows)]
    nodes = {m[0] for m in meters}
    configs = {
        node: (int(version), status)
        for node, version, status in session.execute(
            select(reg.NodeConfig.node, reg.NodeConfig.version, models.Command.status)
            .outerjoin(models.Command, models.Command.id == reg.NodeConfig.command_id)
            .where(reg.NodeConfig.node.in_(nodes))
        )
    }
    found = []
    for node, meter, account, shop in sorted(meters, key=lambda m: (m[3] or "", m[0], m[1])):
        version, status = configs.get(node, (0, None))
        if version <= batch.after.get(node, 0):
            found.append(MeterProgress(node, meter, account, shop, "unpushed", 0))
        else:
            state = COMMAND_STATE.get(status or "", "pushed")
            found.append(MeterProgress(node, meter, account, shop, state, version))
    return KeepProgress(found)
