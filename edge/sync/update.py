"""The box's side of an `update` command: record it, hand it to the updater, report its states.

    cloud ──update──► desk (this module's `offer`, in the command's transaction: an
                      `update_offered` event) ──after the commit──► `hand_over`: the offer file
                      <data_dir>/updates/offer.json (temp file, fsync, rename)
    voltbook-updater.service (`voltbook-fw update`, another process, root) reads the offer,
    downloads, verifies, installs, switches, checks health, rolls back; it writes each state to
    <data_dir>/updates/state.json
    sync service, every tick: `report` turns a state it has not reported yet into an
    `update_state` event, which goes up like every event; the cloud's ingest makes it the
    node's state in the rollout.

The poll cycle never waits for a download or an install: the desk only writes a small file.
The updater cannot write the store (the runtime holds its writer lock), hence the state file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from edge.runtime.cycle import Runtime
from edge.store import Category, Event
from edge.sync.command_context import Applied, CommandContext, Refusal, integer, reference
from ledger.signed import Command

log = logging.getLogger("edge.sync")

UPDATES_DIR = "updates"
OFFER_FILE = "offer.json"
STATE_FILE = "state.json"
REPORTED_KEY = "update:reported"  # the last state file content turned into an event
OFFERED = "update_offered"
STATE_EVENT = "update_state"
HANDOVER_FAILED = "update_handover_failed"  # an alarm: the offer file could not be written
MAX_URL = 2048
MAX_BUNDLE_BYTES = 2 << 30
MAX_STATE_BYTES = 16_384
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What the updater may report (voltbook_fw.update.STATES mirrors it; the cloud's too).
STATES = (
    "downloading",
    "verified",
    "switched",
    "healthy",
    "rolled_back",
    "failed",
    "refused",
)


def updates_dir(runtime: Runtime) -> Path:
    return runtime.site.settings.data_dir / UPDATES_DIR


def offer_args(args: dict[str, Any]) -> dict[str, Any]:
    """The update's arguments, checked (Refusal names the wrong one)."""
    url = args.get("url")
    if (
        not isinstance(url, str)
        or len(url) > MAX_URL
        or not url.startswith(("http://", "https://"))
        or any(c.isspace() or ord(c) < 0x20 for c in url)
    ):
        raise Refusal(f"url must be an http(s) URL of up to {MAX_URL} characters, got {url!r}")
    sha256 = args.get("sha256")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise Refusal(f"sha256 must be 64 lower-case hex digits, got {sha256!r}")
    return {
        "rollout": reference(args, "rollout"),
        "version": integer(args, "version", low=1),
        "url": url,
        "sha256": sha256,
        "size": integer(args, "size", low=1, high=MAX_BUNDLE_BYTES),
    }


def offer(d: CommandContext) -> Applied:
    """Check the offer and record it; the updater gets it after the commit (`hand_over`)."""
    checked = offer_args(dict(d.args))
    result = d.apply()
    if result.first_delivery:
        detail = {"command_id": d.command.id, **checked}
        d.tx.add_events([Event(time=d.now, kind=OFFERED, detail=detail)])
    return result, [], f"version {checked['version']} offered to the updater"


def hand_over(runtime: Runtime, command: Command) -> Path:
    """Write the offer for the updater, atomically (it may be reading the previous one)."""
    folder = updates_dir(runtime)
    folder.mkdir(parents=True, exist_ok=True)
    body = {"command": command.id, **offer_args(dict(command.args))}
    path = folder / OFFER_FILE
    partial = folder / f".{OFFER_FILE}.new"
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(body, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    log.info("update %s: version %d handed to the updater", body["rollout"], body["version"])
    return path


def hand_over_or_alarm(runtime: Runtime, command: Command) -> None:
    """`hand_over`; a file that cannot be written (disk full, permissions) is an alarm, not a
    crash of the poll cycle: the command stays applied, the cloud sees the node stay `offered`."""
    try:
        hand_over(runtime, command)
    except OSError as exc:
        log.error("update %s: the offer could not be handed to the updater: %s", command.id, exc)
        alarm = Event(
            time=runtime.guard.judge()[0].now,
            kind=HANDOVER_FAILED,
            category=Category.ALARM,
            detail={"severity": "warning", "command_id": command.id, "message": str(exc)[:200]},
        )
        with runtime.transaction() as tx:
            tx.add_events([alarm])


def read_state(folder: Path) -> dict[str, Any] | None:
    """The updater's last state, if the file holds one we can read (it is another process's)."""
    try:
        raw = (folder / STATE_FILE).read_bytes()
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError("too large")
        state = json.loads(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("update state file unreadable: %s", exc)
        return None
    if not isinstance(state, dict) or state.get("state") not in STATES:
        log.warning("update state file holds no known state: %r", state)
        return None
    return state


def report(runtime: Runtime) -> bool:
    """Turn the updater's state into an `update_state` event once; True if it made one."""
    state = read_state(updates_dir(runtime))
    if state is None or runtime.store.get_state(REPORTED_KEY, None) == state:
        return False
    detail: dict[str, object] = {
        k: state[k]
        for k in ("rollout", "command", "version", "state", "reason", "seconds", "running")
        if k in state
    }
    event = Event(time=runtime.guard.judge()[0].now, kind=STATE_EVENT, detail=detail)
    with runtime.transaction() as tx:
        tx.add_events([event])
        tx.set_state(REPORTED_KEY, state)
    log.info("update %s: %s reported", state.get("rollout"), state["state"])
    return True
