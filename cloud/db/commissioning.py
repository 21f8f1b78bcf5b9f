"""Commissioning reports: what a concentrator found on its buses before handover
(`cloud.ingest.commissioning`, `POST /concentrators/{node}/commissioning`).

- `commissioning_reports`: one row per signed report a node's key signed (`ledger.commissioning`).
  `body` is the report's canonical JSON exactly as signed and `signature` its Ed25519
  signature (hex), so the row can be verified again at any time with the node's key;
  `digest` (SHA-256 of body, hex) is unique, so uploading the same report twice stores it once.
  `taken_at` is the report's own time, `uploaded` ours; `uploaded_by` the installer;
  `against_registry` what the registry said of that node's meters at upload (JSON:
  `missing`, declared in the registry and not found; `unknown`, found and not in the
  registry); `clean` whether the report and the registry leave nothing to fix.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class CommissioningReport(Base):
    __tablename__ = "commissioning_reports"
    __table_args__ = (Index("commissioning_by_node", "node", "taken_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(ForeignKey("concentrators.node"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of body, hex
    body: Mapped[str] = mapped_column(Text)  # canonical JSON, exactly as signed
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))  # Ed25519, hex
    taken_at: Mapped[dt.datetime]
    uploaded: Mapped[dt.datetime]
    uploaded_by: Mapped[str] = mapped_column(String(64))
    against_registry: Mapped[dict[str, Any]] = mapped_column(JSON)
    clean: Mapped[bool] = mapped_column(Boolean)
