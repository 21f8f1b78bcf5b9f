"""Backups of the SQLite database: SQLite's online backup API takes a consistent copy while the
server keeps writing, and the copy is sealed (`cloud.backups.sealed`) into one file in the
backup repository:

    <repository>/voltbook-20261206T134501Z.vbbak    sealed gzip-compressed tar of
        manifest.json        format, when the copy was taken, its size and SHA-256
        database.sqlite      the copy
        oplog-heads.jsonl    the operator log's signed heads, read before the copy was taken
                             (so the copy reaches every one of them)

A file is written as `.partial` and renamed once complete and synced, so the repository never
holds half a backup under a backup's name. `unpack` opens one into a scratch directory and
checks it (the seal, the SHA-256, `PRAGMA integrity_check`) before anything uses it; `restore`
puts an unpacked copy in the database's place (the database and heads file there before are
kept beside it, renamed, never deleted).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from cloud.backups import BackupError, SealBroken
from cloud.backups.keys import KeySource
from cloud.backups.sealed import open_sealed, seal
from cloud.people.oplog_heads import read_heads
from ledger.signed import OplogHead

SUFFIX = ".vbbak"
NAME = re.compile(r"voltbook-(\d{8}T\d{6}Z)(?:-(\d+))?\.vbbak")
FORMAT = 1
MANIFEST, DATABASE, HEADS = "manifest.json", "database.sqlite", "oplog-heads.jsonl"


@dataclass(frozen=True, slots=True)
class Made:
    path: Path
    sealed_bytes: int
    database_bytes: int
    taken: dt.datetime


@dataclass(frozen=True, slots=True)
class Listed:
    path: Path
    sealed_bytes: int
    taken: dt.datetime


@dataclass(frozen=True, slots=True)
class Unpacked:
    database: Path
    heads: list[OplogHead]
    taken: dt.datetime
    database_bytes: int


def create(
    database: Path, heads_file: Path, repository: Path, key: KeySource, now: dt.datetime
) -> Made:
    """Seal a consistent copy of `database` (and the signed heads) into the repository."""
    if not database.is_file():
        raise BackupError(f"there is no SQLite database at {database} to back up")
    repository.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=repository) as scratch:
        heads = heads_file.read_bytes() if heads_file.is_file() else b""
        copy = Path(scratch) / DATABASE
        _online_copy(database, copy)
        taken = now.astimezone(dt.UTC)
        size, digest = _size_and_digest(copy)
        manifest = {"format": FORMAT, "kind": "sqlite", "taken": taken.isoformat(),
                    "database_bytes": size, "sha256": digest}  # fmt: skip
        bundle = Path(scratch) / "bundle.tar"
        with tarfile.open(bundle, "w:gz", compresslevel=6) as tar:
            _add(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            tar.add(copy, arcname=DATABASE)
            _add(tar, HEADS, heads)
        target = _free_name(repository, stamp)
        partial = Path(scratch) / (target.name + ".partial")
        with bundle.open("rb") as source, partial.open("wb") as sink:
            sealed = seal(source, sink, key)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, target)
    return Made(target, sealed, size, taken)


def list_backups(repository: Path) -> list[Listed]:
    """The sealed backups in the repository, oldest first (by the time in their names)."""
    if not repository.is_dir():
        return []
    found = []
    for path in repository.iterdir():
        match = NAME.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        taken = dt.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        found.append(Listed(path, path.stat().st_size, taken))
    return sorted(found, key=lambda b: (b.taken, b.path.name))


def unpack(sealed: Path, key: KeySource, into: Path) -> Unpacked:
    """Open `sealed` into the directory `into` and check it; `SealBroken` or `BackupError`
    when it does not open or does not hold what its manifest says."""
    bundle = into / "bundle.tar"
    try:
        with sealed.open("rb") as source, bundle.open("wb") as sink:
            open_sealed(source, sink, key)
    except FileNotFoundError:
        raise BackupError(f"there is no backup {sealed}") from None
    except OSError as exc:
        raise BackupError(f"cannot read {sealed}: {exc.strerror or exc}") from exc
    database = into / DATABASE
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            manifest = json.loads(_member(tar, MANIFEST))
            heads_bytes = _member(tar, HEADS)
            member = tar.extractfile(DATABASE)
            if member is None:
                raise KeyError(DATABASE)
            with member, database.open("wb") as out:
                shutil.copyfileobj(member, out)
    except (tarfile.TarError, KeyError, ValueError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SealBroken(f"{sealed} opened but does not hold a backup: {exc}") from exc
    finally:
        bundle.unlink(missing_ok=True)
    size, digest = _size_and_digest(database)
    if manifest.get("format") != FORMAT or manifest.get("sha256") != digest:
        raise SealBroken(f"{sealed}: the database copy does not match its manifest")
    _integrity(database)
    heads_path = into / HEADS
    heads_path.write_bytes(heads_bytes)
    taken = dt.datetime.fromisoformat(manifest["taken"])
    return Unpacked(database, read_heads(heads_path), taken, size)


def restore(
    sealed: Path,
    key: KeySource,
    database: Path,
    heads_file: Path,
    now: dt.datetime,
    *,
    replace: bool = False,
) -> Unpacked:
    """Put the backup in `sealed` in the place of `database` and its heads file. An existing
    database is refused unless `replace`; then it is kept as `<name>.before-restore-<time>`."""
    if database.exists() and not replace:
        raise BackupError(
            f"{database} exists: stop the server and pass --replace to restore over it "
            "(it is kept beside it, renamed)"
        )
    database.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=database.parent) as scratch:
        unpacked = unpack(sealed, key, Path(scratch))
        aside = f".before-restore-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), heads_file):
            if path.exists():
                os.replace(path, path.with_name(path.name + aside))
        heads_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(scratch) / HEADS, heads_file)
        os.replace(unpacked.database, database)
    return Unpacked(database, unpacked.heads, unpacked.taken, unpacked.database_bytes)


def _online_copy(database: Path, copy: Path) -> None:
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(copy)
            try:
                source.backup(target, pages=4096)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy {database}: {exc}") from exc


def _integrity(database: Path) -> None:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            (answer,) = connection.execute("PRAGMA integrity_check").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise SealBroken(f"the restored copy is not a SQLite database: {exc}") from exc
    if answer != "ok":
        raise SealBroken(f"the restored copy fails SQLite's integrity check: {answer}")


def _size_and_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise KeyError(name)
    with member:
        return member.read()


def _free_name(repository: Path, stamp: str) -> Path:
    target = repository / f"voltbook-{stamp}{SUFFIX}"
    number = 1
    while target.exists():
        target = repository / f"voltbook-{stamp}-{number}{SUFFIX}"
        number += 1
    return target
