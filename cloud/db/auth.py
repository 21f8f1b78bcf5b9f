"""Users, roles, login tokens, login attempts and the hash-chained operator log.

- `users`: one row per person; `role` is one of `cloud.people.auth.Role`; a merchant user names the
  one account it may see (`account`). Passwords are argon2id hashes, never the password.
  `failed_logins` / `locked_until` implement the lockout.
- `tokens`: bearer tokens, stored as the SHA-256 of the token (a database dump gives no
  working token); revoked at logout, dead after `expires`.
- `login_attempts`: every attempt with the client address, for rate limiting and the audit.
- `operator_log`: append-only; each row's `hash` covers the previous row's hash, so deleting,
  reordering or editing a row breaks the chain (`cloud.people.oplog.verify`). `operator_log_head`
  holds the last seq and hash in a single row that writers lock, so seqs stay contiguous under
  concurrent requests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(64))  # a merchant's own account
    display_name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    created: Mapped[dt.datetime]


class Token(Base):
    __tablename__ = "tokens"
    __table_args__ = (Index("tokens_by_user", "user"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created: Mapped[dt.datetime]
    expires: Mapped[dt.datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("login_attempts_by_address", "address", "time"),
        Index("login_attempts_by_user", "user", "time"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime]
    ok: Mapped[bool] = mapped_column(Boolean)


class OperatorLogEntry(Base):
    __tablename__ = "operator_log"
    __table_args__ = (
        Index("operator_log_by_time", "time"),
        Index("operator_log_by_user", "user", "time"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime]
    user: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    address: Mapped[str] = mapped_column(String(64), default="")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class OperatorLogHead(Base):
    __tablename__ = "operator_log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # always 1
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
