"""`backup verify`: restore a backup into a scratch database nobody uses, and check the books
there (`cloud.backups.books_check`). A backup that does not open, restore or pass is reported
with the reason; the scratch database is removed either way.

- SQLite: the sealed file is opened into a temporary directory (`sqlite_files.unpack`);
- PostgreSQL: pgBackRest restores into a temporary data directory with archiving off, and a
  throwaway server (`cloud.services.postgres`) starts on it on a free loopback port, trusting
  loopback only, replays the WAL archive to the end or to the target time and is promoted.

Either copy is migrated to the current schema first (a backup taken before an upgrade must
still be checkable), then checked. Heads signed after the restored point do not count
(`books_check.heads_until`).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from cloud.backups import BackupError, ToolFailed
from cloud.backups.books_check import BooksCheck, check_books, heads_until
from cloud.backups.keys import KeySource
from cloud.backups.pgbackrest import PgBackRest
from cloud.backups.sqlite_files import unpack
from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.services.errors import ServiceError
from cloud.services.postgres import ThrowawayPostgres
from ledger.signed import OplogHead

PROMOTE_TIMEOUT_S = 120.0
SCRATCH_HBA = "host all all 127.0.0.1/32 trust\n"


@dataclass(frozen=True, slots=True)
class Verified:
    kind: str  # sqlite | postgres
    backup: str  # the sealed file's name, or pgBackRest's label (and the target time)
    point: dt.datetime  # the moment the restored copy stands at
    check: BooksCheck
    restore_seconds: float
    check_seconds: float
    database_bytes: int

    @property
    def ok(self) -> bool:
        return self.check.ok


def verify_sqlite(
    sealed: Path, key: KeySource, cloud_key: Ed25519PublicKey, live_heads: Sequence[OplogHead]
) -> Verified:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vb-verify-") as scratch:
        unpacked = unpack(sealed, key, Path(scratch))
        restored = time.monotonic()
        heads = [*unpacked.heads, *heads_until(live_heads, unpacked.taken)]
        engine = make_engine(f"sqlite:///{unpacked.database}")
        try:
            check = _check(engine, cloud_key, heads)
        finally:
            engine.dispose()
    return Verified("sqlite", sealed.name, unpacked.taken, check, restored - began,
                    time.monotonic() - restored, unpacked.database_bytes)  # fmt: skip


def verify_postgres(
    tool: PgBackRest,
    database: str,
    cloud_key: Ed25519PublicKey,
    live_heads: Sequence[OplogHead],
    *,
    target: dt.datetime | None = None,
    label: str | None = None,
) -> Verified:
    """Restore `label` (default: the latest backup; with `target`, the one before it) into a
    scratch cluster, replay to the end of the archive or to `target`, and check `database`."""
    backups = tool.info()
    if target is not None:
        chosen = [b for b in backups if b.stopped <= target and (label is None or b.label == label)]
    else:
        chosen = [b for b in backups if label is None or b.label == label]
    if not chosen:
        raise BackupError(
            f"no PostgreSQL backup {'labelled ' + label if label else 'in the repository'}"
            + (f" finished before {target:%Y-%m-%d %H:%M:%S}" if target else "")
        )
    backup = chosen[-1]
    point = target or backup.stopped
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="vb-verify-pg-"))
    try:
        data = scratch / "data"
        data.mkdir(mode=0o700)
        hba = scratch / "pg_hba.conf"
        hba.write_text(SCRATCH_HBA)
        if tool.account is not None:
            for path in (scratch, data, hba):
                os.chown(path, tool.account.uid, tool.account.gid)
        tool.restore(data, target=target, label=backup.label, archive=False)
        _complete_config(data, tool)
        server = ThrowawayPostgres(scratch, settings={"archive_mode": "off", "hba_file": str(hba)})
        try:
            server.start()
        except ServiceError as exc:
            raise ToolFailed(f"the restored copy of {backup.label} does not start: {exc}") from exc
        with server:
            url = server.url.rsplit("/", 1)[0] + f"/{database}"
            engine = make_engine(url)
            try:
                _wait_promoted(engine)
                restored = time.monotonic()
                heads = heads_until(live_heads, point)
                check = _check(engine, cloud_key, heads)
                checked = time.monotonic()
            finally:
                engine.dispose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    what = backup.label + (f" to {target.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z" if target else "")
    return Verified("postgres", what, point, check, restored - began, checked - restored,
                    backup.database_bytes)  # fmt: skip


def _complete_config(data: Path, tool: PgBackRest) -> None:
    """Debian keeps postgresql.conf and pg_ident.conf in /etc, not in the data directory: a
    restored copy gets empty ones (every setting the scratch server needs is on its command
    line)."""
    for name in ("postgresql.conf", "pg_ident.conf"):
        path = data / name
        if not path.exists():
            path.write_text("")
            if tool.account is not None:
                os.chown(path, tool.account.uid, tool.account.gid)


def _wait_promoted(engine: Engine) -> None:
    deadline = time.monotonic() + PROMOTE_TIMEOUT_S
    while True:
        try:
            with engine.connect() as connection:
                if not connection.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
                    return
        except SQLAlchemyError as exc:
            if time.monotonic() > deadline:
                raise ToolFailed(f"the restored copy does not answer: {exc}") from exc
        if time.monotonic() > deadline:
            raise ToolFailed(f"the restored copy is still recovering after {PROMOTE_TIMEOUT_S} s")
        time.sleep(0.2)


def _check(engine: Engine, cloud_key: Ed25519PublicKey, heads: Sequence[OplogHead]) -> BooksCheck:
    try:
        upgrade(engine)
        with session_factory(engine, read_only=True)() as session:
            return check_books(session, cloud_key, heads)
    except SQLAlchemyError as exc:
        raise BackupError(
            f"the restored copy cannot be read as the cloud's database: {getattr(exc, 'orig', exc)}"
        ) from exc
