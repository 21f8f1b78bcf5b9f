"""The restore drill's last result: one small JSON file, written by the drill, read at scrape.

The contract (what `voltbook-cloud backup` drill writes, what `/metrics` reads):

    {"ok": true, "finished": "2026-12-06T03:00:12+00:00", "detail": "restored 1.2 GB in 94 s"}

- `ok`: whether the drill restored the backup and the books check passed;
- `finished`: when it ended, ISO 8601 with an offset;
- `detail`: one line for the operator (what failed, or what was proved), at most
  `MAX_DETAIL` characters.

`record_drill(path, result)` writes it atomically (a temporary file renamed over the old one),
so a scrape never sees half a file. `read_drill(path)` gives None when no drill has run (no
file) and raises `DrillStatusError` for a file that is not that shape: the scrape then reports
the drill as failed rather than hiding it. The path is `[metrics] restore_drill` of cloud.toml
(default `restore-drill.json` in the data directory: `cloud.config.CloudConfig.restore_drill`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloud.errors import CloudError

MAX_DETAIL = 500
MAX_FILE_BYTES = 4096  # the file is a few dozen bytes; anything larger is not ours


class DrillStatusError(CloudError):
    """The restore drill's status file exists but cannot be read as a result."""


@dataclass(frozen=True, slots=True)
class DrillResult:
    ok: bool
    finished: dt.datetime  # aware
    detail: str = ""

    def __post_init__(self) -> None:
        if self.finished.tzinfo is None or self.finished.utcoffset() is None:
            raise ValueError("a drill's `finished` must be an aware datetime")


def record_drill(path: Path, result: DrillResult) -> None:
    """Write `result` to `path`, replacing the previous one atomically."""
    body = json.dumps(
        {"ok": result.ok, "finished": result.finished.isoformat(),
         "detail": result.detail[:MAX_DETAIL]},
        ensure_ascii=False,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(body + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_drill(path: Path) -> DrillResult | None:
    """The last drill's result; None when none has run (no file)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DrillStatusError(f"{path} cannot be read ({exc.strerror})") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise DrillStatusError(f"{path} is larger than {MAX_FILE_BYTES} bytes: not a drill result")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DrillStatusError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or type(data.get("ok")) is not bool:
        raise DrillStatusError(f'{path} needs {{"ok": true|false, "finished": "…"}}')
    finished, detail = data.get("finished"), data.get("detail", "")
    try:
        when = dt.datetime.fromisoformat(finished) if isinstance(finished, str) else None
    except ValueError:
        when = None
    if when is None or when.utcoffset() is None:
        raise DrillStatusError(f"{path}: `finished` must be an ISO 8601 time with an offset")
    if not isinstance(detail, str):
        raise DrillStatusError(f"{path}: `detail` must be text")
    return DrillResult(ok=data["ok"], finished=when, detail=detail[:MAX_DETAIL])
