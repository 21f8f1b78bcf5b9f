"""Fleet updates: a signed runtime bundle offered to concentrators in waves (`cloud.operations.
updates`, `/updates`).

- `update_rollouts`: one offer of one bundle (version, url, sha256, size) to a set of nodes,
  paced in waves of `wave_size` nodes at least `wave_every_s` apart; `state` running → done |
  stopped (a node failed or rolled back: no later wave is offered), with the reason.
- `update_nodes`: one row per node of a rollout: its wave, its state (waiting → offered →
  downloading → verified → switched → healthy | rolled_back | failed), the reason the box gave,
  the `update` command that offered it, and when the state last changed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class UpdateRollout(Base):
    __tablename__ = "update_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(String(2048))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    wave_size: Mapped[int] = mapped_column(Integer)
    wave_every_s: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # running | done | stopped
    reason: Mapped[str] = mapped_column(String(400), default="")
    created: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    updated: Mapped[dt.datetime]


class UpdateNode(Base):
    __tablename__ = "update_nodes"
    __table_args__ = (
        UniqueConstraint("rollout_id", "node"),
        Index("update_nodes_by_node", "node", "rollout_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("update_rollouts.id"))
    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"))
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(400), default="")
    command_id: Mapped[str | None] = mapped_column(String(32))
    offered: Mapped[dt.datetime | None]
    updated: Mapped[dt.datetime]
