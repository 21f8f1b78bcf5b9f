"""The `update` command on the box: recorded once, handed to the updater as a file, never run in
the poll cycle's thread; the updater's states reported once each; `voltbook-edge health` on a
real store (a demo site's runtime, simulated meters).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.cli_health import health
from edge.store import CommandStatus
from edge.sync import update
from ledger.signed import CommandKind
from tests.edge.sync.operations_kit import Node, write_site

OFFER = {
    "rollout": "rollout-7",
    "version": 7,
    "url": "http://127.0.0.1:9/updates/bundles/" + "ab" * 32,
    "sha256": "ab" * 32,
    "size": 1234,
}


@pytest.fixture
def site_toml(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site", meters=2)


@pytest.fixture
def node(site_toml: Path) -> Iterator[Node]:
    running = Node.boot(site_toml)
    try:
        running.cycles(1)
        yield running
    finally:
        running.close()


def offer_file(node: Node) -> Path:
    return update.updates_dir(node.runtime) / update.OFFER_FILE


def test_an_update_is_recorded_once_and_handed_to_the_updater(node: Node) -> None:
    payload = node.command(CommandKind.UPDATE, OFFER)
    first = node.desk.handle(payload)
    assert first.result is not None and first.result.status is CommandStatus.APPLIED
    handed = json.loads(offer_file(node).read_bytes())
    assert handed == {"command": first.command_id, **OFFER}
    events = [e.event for e in node.store.events() if e.event.kind == update.OFFERED]
    assert [e.detail["version"] for e in events] == [7]
    offer_file(node).unlink()
    again = node.desk.handle(payload)  # the broker delivers it again
    assert again.outcome == "repeated"
    assert not offer_file(node).exists()  # handed over once
    assert len([e for e in node.store.events() if e.event.kind == update.OFFERED]) == 1


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"url": "file:///etc/shadow"}, "url"),
        ({"url": "http://x/\nHost: y"}, "url"),
        ({"sha256": "AB" * 32}, "sha256"),
        ({"version": 0}, "version"),
        ({"size": -1}, "size"),
        ({"rollout": "a b"}, "rollout"),
    ],
)
def test_a_bad_offer_is_refused_and_nothing_handed_over(
    node: Node, change: dict[str, object], word: str
) -> None:
    handled = node.send(CommandKind.UPDATE, {**OFFER, **change})
    assert handled.outcome == "refused", handled.message
    assert handled.result is not None and word in handled.result.reason
    assert not offer_file(node).exists()


def test_each_state_of_the_updater_is_reported_once(node: Node) -> None:
    folder = update.updates_dir(node.runtime)
    folder.mkdir(parents=True, exist_ok=True)
    assert update.report(node.runtime) is False  # no state yet
    for state in ("downloading", "switched", "rolled_back"):
        body = {"rollout": "rollout-7", "command": "c" * 32, "version": 7, "state": state}
        (folder / update.STATE_FILE).write_text(json.dumps({**body, "reason": "why"}))
        assert update.report(node.runtime) is True
        assert update.report(node.runtime) is False
    (folder / update.STATE_FILE).write_text('{"state": "exploded"}')
    assert update.report(node.runtime) is False  # an unknown state is not reported
    reported = [e.event.detail for e in node.store.events() if e.event.kind == update.STATE_EVENT]
    assert [d["state"] for d in reported] == ["downloading", "switched", "rolled_back"]
    assert reported[-1]["reason"] == "why"


def test_health_needs_a_cycle_after_the_switch_and_a_sound_store(
    node: Node, site_toml: Path
) -> None:
    switched = node.clock.true_now()
    node.booted.close()  # as the updater sees it: the old runtime stopped
    before = health(site_toml, switched)
    assert before["store"]["ok"] is True
    assert before["buses"] == {"ok": False, "why": f"no cycle ran since {switched.isoformat()}"}
    again = Node.boot(site_toml, start=switched + dt.timedelta(minutes=1))
    try:
        again.cycles(1)
    finally:
        again.close()
    after = health(site_toml, switched)
    assert all(check["ok"] for check in after.values()), after
    assert after["sync"]["why"] == "skipped: no [cloud] in site.toml"


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=200) | st.just(b"[" * 5000) | st.just(b'{"state": "healthy"}'))
def test_any_state_file_is_a_state_or_nothing(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / update.STATE_FILE).write_bytes(raw)
        state = update.read_state(Path(folder))
        assert state is None or state["state"] in update.STATES


def test_an_offer_that_cannot_be_handed_over_is_an_alarm_not_a_crash(node: Node) -> None:
    folder = update.updates_dir(node.runtime)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the folder should be")  # the offer cannot be written
    handled = node.send(CommandKind.UPDATE, OFFER)
    assert handled.result is not None and handled.result.status is CommandStatus.APPLIED
    alarms = [e.event for e in node.store.events() if e.event.kind == update.HANDOVER_FAILED]
    assert len(alarms) == 1 and alarms[0].detail["command_id"] == handled.command_id
