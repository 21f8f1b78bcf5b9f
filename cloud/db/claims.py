"""Claim tokens: an installer's one-time permission for one concentrator to join one site
(`cloud.ingest.claims`, `POST /claims` and `POST /provision`).

- `claims`: one row per token. Only the token's SHA-256 is stored (`token_hash`, hex): the
  token itself is shown once, to the installer who asked, and a copy of the database lets
  nobody provision a box. `site_id` and `installer` bind it; `expires` bounds it; `redeemed`
  is set exactly once, by a conditional update (the one redeemer whose update matched wins),
  together with the node id it gave (`node`, unique) and the serial of the certificate issued
  (`certificate_serial`, hex). A claim not yet used can be revoked (`revoked`, `revoked_by`):
  it is then refused like a used one. A claim may be bound to a node pre-assigned to its site
  (`for_node`): the box that redeems it takes that node id.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class Claim(Base):
    __tablename__ = "claims"
    __table_args__ = (Index("claims_by_site", "site_id", "created"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the token, hex
    site_id: Mapped[int] = mapped_column(ForeignKey("registry_sites.id"))
    installer: Mapped[str] = mapped_column(String(64))  # the user who asked for it
    created: Mapped[dt.datetime]
    expires: Mapped[dt.datetime]
    redeemed: Mapped[dt.datetime | None]
    node: Mapped[str | None] = mapped_column(String(64), unique=True)  # the node id it gave
    certificate_serial: Mapped[str | None] = mapped_column(String(40))
    revoked: Mapped[dt.datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    # the pre-assigned node the box redeeming it takes (None: the next free `<site>-<n>`)
    for_node: Mapped[str | None] = mapped_column(ForeignKey("concentrators.node"), default=None)
