"""The site configuration documents (meters, shops, accounts, rules, tariffs) in tinydb.

tinydb's own `JSONStorage` rewrites its file in place (seek 0, write, truncate): a power cut in
the middle leaves a truncated or mixed file, and the concentrator would boot without knowing its
meters. `AtomicJSONStorage` instead writes the whole document set to a temporary file in the
same directory (unbuffered `os.write`, so nothing waits in a Python buffer), fsyncs it, renames
it over the old file (`os.replace`, atomic on POSIX) and fsyncs the directory so the rename
itself survives the power cut. A reader therefore sees the old content or the new, never a mix.

A file that is empty, truncated or not the expected JSON shape is refused with `CorruptConfig`
naming the file, and it is never written over: a damaged configuration is evidence, and
silently starting empty would drop every meter.

Each document carries a string `id` (a meter address, a shop or account code, a tariff name)
that `get`, `put` and `remove` use; tinydb's numeric document ids stay internal.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, MutableMapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from tinydb import TinyDB, where
from tinydb.storages import Storage

from edge.store.errors import CorruptConfig, DiskFull, StoreError, StoreUsageError


class ConfigKind(StrEnum):
    METERS = "meters"
    SHOPS = "shops"
    ACCOUNTS = "accounts"
    RULES = "rules"
    TARIFFS = "tariffs"


Documents = dict[str, dict[str, Any]]  # tinydb's raw form: table -> doc id -> document


def _check_shape(path: Path, data: object) -> Documents:
    if not isinstance(data, dict):
        raise CorruptConfig(path, "the top level is not a JSON object of tables")
    for table, docs in data.items():
        if not isinstance(docs, dict):
            raise CorruptConfig(path, f"table {table!r} is not a JSON object of documents")
        for doc_id, doc in docs.items():
            if not isinstance(doc, dict):
                raise CorruptConfig(path, f"document {doc_id} of table {table!r} is not an object")
    return data


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (the rename is a change to the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any moment leaves the old or the new file.

    Raises `DiskFull` on ENOSPC and `StoreError` on any other OS error; in both cases `path` is
    unchanged and the temporary file is removed.
    """
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFull(path, "configuration not changed") from exc
        raise StoreError(
            f"cannot write {path}: {exc}. The previous configuration is intact; check the "
            "directory's permissions and the disk, then retry."
        ) from exc
    try:
        fsync_directory(path.parent)
    except OSError as exc:
        raise StoreError(
            f"{path} was replaced but its directory could not be synced ({exc}): the change may "
            "not survive a power cut. Check the disk, then write the configuration again."
        ) from exc


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files left by a write that a crash interrupted (they never replaced the file)."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


class AtomicJSONStorage(Storage):
    """A tinydb `Storage` that writes atomically and refuses a damaged file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)

    def read(self) -> Documents | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None  # no configuration yet: tinydb starts empty, the first write creates it
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {exc}. Check its permissions.") from exc
        if not raw.strip():
            raise CorruptConfig(self.path, "the file is empty (a write was cut short?)")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptConfig(self.path, f"not valid JSON, perhaps truncated ({exc})") from exc
        return _check_shape(self.path, data)

    def write(self, data: Documents) -> None:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1)
        atomic_write(self.path, text.encode())


class ConfigDB:
    """The configuration documents of one site. Open with `ConfigDB.open`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db = TinyDB(str(path), storage=AtomicJSONStorage)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ConfigDB:
        """Open the configuration at `path` (absent: empty). Refuses a damaged file untouched."""
        where = Path(path)
        if not where.parent.is_dir():
            raise StoreUsageError(f"directory {where.parent} does not exist; create it first")
        AtomicJSONStorage(where).read()  # refuse a damaged file now, not at first use
        remove_stale_temporaries(where)
        return cls(where)

    @property
    def path(self) -> Path:
        return self._path

    def documents(self, kind: ConfigKind) -> list[dict[str, Any]]:
        return [dict(doc) for doc in self._db.table(ConfigKind(kind).value).all()]

    def get(self, kind: ConfigKind, key: str) -> dict[str, Any] | None:
        found = self._db.table(ConfigKind(kind).value).search(where("id") == key)
        return dict(found[0]) if found else None

    def put(self, kind: ConfigKind, document: Mapping[str, Any]) -> None:
        """Insert or replace the document with this `id` (one atomic write)."""
        key = _document_id(document)
        table = self._db.table(ConfigKind(kind).value)
        # Not `upsert`: on a new id it writes the file twice (an update matching nothing, then
        # the insert). Deciding first keeps every put a single atomic write.
        if table.contains(where("id") == key):
            replacement = dict(document)

            def replace(stored: MutableMapping[Any, Any]) -> None:
                stored.clear()  # `update` with a dict would keep fields the new one dropped
                stored.update(replacement)

            table.update(replace, where("id") == key)
        else:
            table.insert(dict(document))

    def remove(self, kind: ConfigKind, key: str) -> bool:
        return bool(self._db.table(ConfigKind(kind).value).remove(where("id") == key))

    def replace_all(self, documents: Mapping[ConfigKind, Iterable[Mapping[str, Any]]]) -> None:
        """Replace the whole configuration (a push from the cloud) in ONE atomic write, so a
        crash never leaves meters of the new configuration with tariffs of the old."""
        data: Documents = {}
        for kind, docs in documents.items():
            table: dict[str, Any] = {}
            seen: set[str] = set()
            for number, doc in enumerate(docs, 1):
                key = _document_id(doc)
                if key in seen:
                    raise StoreUsageError(f"two {ConfigKind(kind).value} documents with id {key}")
                seen.add(key)
                table[str(number)] = dict(doc)
            data[ConfigKind(kind).value] = table
        AtomicJSONStorage(self._path).write(data)
        # tinydb caches tables and their next document id: start from the new file.
        self._db.close()
        self._db = TinyDB(str(self._path), storage=AtomicJSONStorage)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ConfigDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _document_id(document: Mapping[str, Any]) -> str:
    key = document.get("id")
    if not isinstance(key, str) or not key:
        raise StoreUsageError(f"a configuration document needs a string 'id': {document!r}")
    return key
