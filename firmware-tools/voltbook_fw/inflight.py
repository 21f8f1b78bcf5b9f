"""The updater's record of an update in flight: `<data>/updates/pending.json`.

RAUC and Home Assistant OS mark a slot "pending" before booting it and fall back unless it is
confirmed healthy; this is the same for `current`. The record is written (temp file, fsync,
rename) under the install lock just before `install` copies the new units and renames
`current`, so there is no moment when `current` names an unconfirmed version without it. Its
phase says how far the update went:

    switching    written before the units and the switch (deadline not set yet)
    checking     the restart commands ran; the health bound runs to `deadline` (wall clock)
    rolling_back the verdict was "unhealthy" (`problem`); the rollback may not have finished

The updater removes it only once the verdict is in `state.json` and `updater.json`; until then
any start of the updater (a kill, a power loss) resumes from it (`voltbook_fw.update`). The
file is another run's: anything unreadable in it is a sentence, never a crash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voltbook_fw.install import _fsync_dir as fsync_dir

PENDING = "pending.json"
UNUSABLE = "pending.unusable.json"  # where an unreadable record is moved, for a human
PHASES = ("switching", "checking", "rolling_back")
OFFER_FIELDS = ("command", "rollout", "version", "url", "sha256", "size")
MAX_BYTES = 16_384


class UnusablePending(ValueError):
    """pending.json holds no record this updater can resume from (the sentence says why)."""


@dataclass(frozen=True, slots=True)
class Pending:
    offer: dict[str, Any]  # the offer as received (voltbook_fw.update.Offer parses it)
    version: int  # the version `current` is switched to
    previous: int  # the version to fall back to
    phase: str
    switched_at: dt.datetime  # the health commands' {since}
    deadline: dt.datetime | None = None  # set with phase "checking"
    problem: str = ""  # set with phase "rolling_back"

    def to(self, phase: str, **changes: Any) -> Pending:
        return dataclasses.replace(self, phase=phase, **changes)

    def encode(self) -> dict[str, Any]:
        return {
            "offer": self.offer,
            "version": self.version,
            "previous": self.previous,
            "phase": self.phase,
            "switched_at": self.switched_at.isoformat(),
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "problem": self.problem,
        }

    @classmethod
    def decode(cls, raw: bytes) -> Pending:
        if len(raw) > MAX_BYTES:
            raise UnusablePending(f"larger than {MAX_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise UnusablePending(f"not JSON (written halfway?): {str(exc)[:80]}") from None
        if not isinstance(body, dict):
            raise UnusablePending("not a JSON object")
        offer = body.get("offer")
        if not isinstance(offer, dict) or set(offer) != set(OFFER_FIELDS):
            raise UnusablePending(f"its offer must have exactly {', '.join(OFFER_FIELDS)}")
        numbers = {}
        for name in ("version", "previous"):
            value = body.get(name)
            if type(value) is not int or value < 1:
                raise UnusablePending(f"its {name} is not a positive integer")
            numbers[name] = value
        if body.get("phase") not in PHASES:
            raise UnusablePending(f"its phase is not one of {', '.join(PHASES)}")
        problem = body.get("problem")
        if not isinstance(problem, str):
            raise UnusablePending("its problem is not a string")
        switched_at = _moment(body.get("switched_at"), "switched_at")
        deadline = None if body.get("deadline") is None else _moment(body["deadline"], "deadline")
        if body["phase"] != "switching" and deadline is None:
            raise UnusablePending(f"phase {body['phase']} without a deadline")
        return cls(offer, phase=body["phase"], switched_at=switched_at, deadline=deadline,
                   problem=problem, **numbers)  # fmt: skip


def _moment(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise UnusablePending(f"its {name} is not a time")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UnusablePending(f"its {name} is not an ISO time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise UnusablePending(f"its {name} has no time zone")
    return moment


def read(folder: Path) -> Pending | None:
    """The record in `folder`, None if there is none; UnusablePending if it cannot be read."""
    try:
        raw = (folder / PENDING).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnusablePending(f"cannot be read: {exc}") from exc
    return Pending.decode(raw)


def set_aside(folder: Path) -> Path:
    """Move an unusable record out of the way (kept for a human), durably."""
    aside = folder / UNUSABLE
    os.replace(folder / PENDING, aside)
    fsync_dir(folder)
    return aside


def write(folder: Path, pending: Pending) -> None:
    write_json(folder / PENDING, pending.encode())


def clear(folder: Path) -> None:
    """The update is decided and remembered: forget the record, durably."""
    (folder / PENDING).unlink(missing_ok=True)
    if folder.is_dir():
        fsync_dir(folder)


def write_json(path: Path, body: object) -> None:
    """Temp file, fsync, rename, fsync the folder: after a power loss, the old or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.new")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(body, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)
