"""The updater survives dying mid-update (`voltbook_fw.inflight`, `update.resume`).

The real command (`python -m voltbook_fw.cli update`) is started as its own process group,
installs a real bundle over loopback HTTP and is killed with SIGKILL, with its health command,
the moment that command starts (it touches a file, then sleeps): what a power loss leaves, the
switch done and no verdict. Started again, it must finish the update: the new version's own
`voltbook-edge` decides, within what is left of the recorded deadline. The box, the server, the
bundles and the helpers are `conftest.py`'s and `test_update.py`'s.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from voltbook_fw import inflight, platforms, update
from voltbook_fw.manifest import Manifest, sign

from demo.wheelhouse import ROOT
from ledger.chain import NodeKey
from tests.voltbook_fw.test_update import HEALTH, offer, serve, settings, state, tree

ARCH = platforms.box_arch()
FW = Path(update.__file__).resolve().parents[1]  # firmware-tools/
UPDATES = Path("var/lib/voltbook/updates")


def updater(box: Path, *args: str) -> subprocess.Popen[bytes]:
    """`voltbook-fw update` as the unit runs it, in a session of its own (killed as a whole)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(FW.parent), str(FW)))}
    env["PYTHONUNBUFFERED"] = "1"  # its log up to the kill (the health commands get no PYTHON*)
    command = [sys.executable, "-m", "voltbook_fw.cli", "update", "--root", str(box)]
    command += ["--arch", ARCH, "--restart", f"sh -c 'echo restart >> {box}/restarts.log'"]
    log = (box / "updater.log").open("ab")
    return subprocess.Popen(
        [*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def killed_while_checking(box: Path, bundle: bytes, url: str, bound_s: float) -> float:
    """Offer `bundle`, let the updater switch to it and kill it (SIGKILL, the whole group) as
    its health command starts; returns the monotonic time of the kill."""
    offer(box, url, bundle)
    marker = box / "health-started"
    process = updater(
        box, "--health", f"sh -c 'touch {marker}; exec sleep 600'", "--health-timeout", str(bound_s)
    )
    limit = time.monotonic() + 150  # a real install first: ~10 s idle, more when loaded
    while not marker.exists():
        assert process.poll() is None, (box / "updater.log").read_text()
        assert time.monotonic() < limit, "the health command never started"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    killed = time.monotonic()
    process.wait(10)
    pending = json.loads((box / UPDATES / "pending.json").read_text())
    assert pending["phase"] == "checking" and (pending["version"], pending["previous"]) == (3, 2)
    assert (box / "opt/voltbook/current").readlink() == Path("versions/3")
    assert state(box)["state"] == "switched"  # no verdict: what the restart must supply
    return killed


def restarted(box: Path, *args: str) -> tuple[int, float]:
    """The updater started again (systemd after a crash, or at boot): exit code, seconds."""
    with (box / "updater.log").open("a") as log:
        log.write("--- started again ---\n")
    started = time.monotonic()
    process = updater(box, *args)
    code = process.wait(120)
    return code, time.monotonic() - started


def memory(box: Path) -> dict[str, object]:
    body: dict[str, object] = json.loads((box / UPDATES / "updater.json").read_text())
    return body


@pytest.mark.slow  # one real install, ~10 s
@pytest.mark.timeout(240)
def test_killed_during_the_health_check_it_resumes_and_rolls_a_broken_version_back(
    box: Path, bundles: dict[str, Path], server: tuple[str, Path]
) -> None:
    before = tree(box)
    data = bundles["broken"].read_bytes()
    killed_while_checking(box, data, serve(server, "broken-a.tar", data), bound_s=6.0)
    code, took = restarted(box, "--health", HEALTH, "--health-timeout", "6")
    assert code == 1, (box / "updater.log").read_text()
    verdict = state(box)
    assert verdict["state"] == "rolled_back" and verdict["running"] == 2
    reason = str(verdict["reason"])
    assert reason.startswith("resumed after an interruption: ") and "exited 3" in reason
    assert "back on version 2" in reason
    base = box / "opt/voltbook"
    assert (base / "current").readlink() == Path("versions/2")
    assert not (base / "previous").exists()
    kept = {k: v for k, v in tree(box).items() if "versions/3" not in k and "install.lock" not in k}
    assert kept == before  # version 2's units back too
    # One restart after the switch, one after the rollback; the resume itself restarts nothing.
    assert (box / "restarts.log").read_text() == "restart\nrestart\n"
    assert not (box / UPDATES / "pending.json").exists()
    assert memory(box)["failed_above"] == 3
    assert memory(box)["done"] == {"c1".ljust(32, "0"): "rolled_back"}
    print(f"restart after a kill to rolled_back: {took:.1f} s (6 s health bound)")


@pytest.mark.slow  # one real install, ~10 s
@pytest.mark.timeout(240)
def test_killed_during_the_health_check_it_resumes_and_keeps_a_healthy_version(
    box: Path, bundles: dict[str, Path], server: tuple[str, Path]
) -> None:
    data = bundles["good"].read_bytes()
    killed_while_checking(box, data, serve(server, "good-b.tar", data), bound_s=60.0)
    installed = (box / "opt/voltbook/versions/3/venv/pyvenv.cfg").stat().st_mtime_ns
    code, took = restarted(box, "--health", HEALTH, "--health-timeout", "60")
    assert code == 0, (box / "updater.log").read_text()
    verdict = state(box)
    assert verdict["state"] == "healthy" and verdict["running"] == 3
    assert verdict["reason"] == "resumed after an interruption: the health check passed"
    assert (box / "opt/voltbook/current").readlink() == Path("versions/3")
    assert (box / "opt/voltbook/previous").readlink() == Path("versions/2")
    assert not (box / UPDATES / "pending.json").exists()
    # Nothing installed twice: the same virtualenv, no second download, no second restart.
    assert (box / "opt/voltbook/versions/3/venv/pyvenv.cfg").stat().st_mtime_ns == installed
    assert "downloading" not in (box / "updater.log").read_text().split("--- started again ---")[-1]
    assert (box / "restarts.log").read_text() == "restart\n"
    assert memory(box) == {"done": {"c1".ljust(32, "0"): "healthy"}, "failed_above": 0}
    assert update.run_once(settings(box)) is None  # decided once
    print(f"restart after a kill to healthy: {took:.1f} s")


@pytest.mark.slow  # one real install, ~10 s
@pytest.mark.timeout(240)
def test_a_deadline_passed_while_the_box_was_off_gets_one_check_then_the_verdict(
    box: Path, bundles: dict[str, Path], server: tuple[str, Path]
) -> None:
    data = bundles["broken"].read_bytes()
    killed_while_checking(box, data, serve(server, "broken-c.tar", data), bound_s=4.0)
    deadline = dt.datetime.fromisoformat(
        json.loads((box / UPDATES / "pending.json").read_text())["deadline"]
    )
    time.sleep(max((deadline - dt.datetime.now(dt.UTC)).total_seconds(), 0) + 0.5)  # "off"
    runs = box / "runs.log"
    counted = f"sh -c 'echo run >> {runs}; exec {{current}}/venv/bin/voltbook-edge --version'"
    code, took = restarted(box, "--health", counted, "--health-timeout", "60")
    assert code == 1, (box / "updater.log").read_text()
    assert runs.read_text() == "run\n"  # one check, not the 60 s of this run's bound
    reason = str(state(box)["reason"])
    assert state(box)["state"] == "rolled_back"
    assert "had passed" in reason and "one check" in reason and "exited 3" in reason, reason
    assert (box / "opt/voltbook/current").readlink() == Path("versions/2")
    assert not (box / UPDATES / "pending.json").exists()
    assert took < 30


def fake_version(box: Path, release: NodeKey, version: int) -> Path:
    """`versions/<version>` as `install` places it, without a virtualenv (nothing runs it)."""
    folder = box / f"opt/voltbook/versions/{version}"
    (folder / "units").mkdir(parents=True)
    manifest = Manifest(version, ARCH, platforms.running_python_tag(), "0.1.0", release.key_id, ())
    data, signature = sign(manifest, release)
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(signature)
    for name in ("voltbook-edge.service", "voltbook-updater.service"):
        (folder / "units" / name).write_text(f"# version {version}'s {name}\n")
    return folder


def record(box: Path, phase: str, **extra: object) -> None:
    offered = {"command": "c1".ljust(32, "0"), "rollout": "r1", "version": 3,
               "url": "http://127.0.0.1:9/never", "sha256": "ab" * 32, "size": 10}  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    body = {"offer": offered, "version": 3, "previous": 2, "phase": phase,
            "switched_at": now.isoformat(), "deadline": None, "problem": "", **extra}  # fmt: skip
    inflight.write_json(box / UPDATES / "pending.json", body)


def test_killed_between_the_record_and_the_switch_nothing_is_switched_and_it_may_come_again(
    box: Path, release: NodeKey
) -> None:
    """The record is written under the install lock just before `install` copies the units and
    renames `current`: milliseconds no kill from outside can hit on purpose. So this writes by
    hand what a death there leaves: the record (phase `switching`), the new version's folder,
    its units already copied over version 2's, `current` still on 2."""
    before = tree(box)
    v3 = fake_version(box, release, 3)
    for unit in (v3 / "units").iterdir():
        (box / "etc/systemd/system" / unit.name).write_bytes(unit.read_bytes())
    record(box, "switching")
    restarts = box / "restarts.log"
    outcome = update.run_once(settings(box, restart=(f"sh -c 'echo restart >> {restarts}'",)))
    assert outcome is not None and outcome.state == "failed" and outcome.not_the_version
    assert "before the switch: nothing switched, version 2 runs" in outcome.reason
    assert state(box)["state"] == "failed" and state(box)["running"] == 2
    assert {k: v for k, v in tree(box).items() if "install.lock" not in k} == before
    assert restarts.read_text() == "restart\n"  # the old units may have been loaded: again
    assert not (box / UPDATES / "pending.json").exists()
    assert memory(box)["failed_above"] == 0
    # Not the version's fault: offered again (a new command), it is tried (here: no server).
    offer(box, "http://127.0.0.1:9/never", b"x", command="c2")
    again = update.run_once(settings(box))
    assert again is not None and again.state == "failed" and again.reason.startswith("download")


def test_killed_during_the_rollback_it_finishes_the_rollback(box: Path, release: NodeKey) -> None:
    before = tree(box)
    fake_version(box, release, 3)
    for name in ("voltbook-edge.service", "voltbook-updater.service"):
        (box / "etc/systemd/system" / name).write_text(f"# version 3's {name}\n")
    (box / "opt/voltbook/previous").symlink_to("versions/2")
    (box / "opt/voltbook/current").unlink()
    (box / "opt/voltbook/current").symlink_to("versions/3")
    deadline = dt.datetime.now(dt.UTC).isoformat()
    record(box, "rolling_back", deadline=deadline, problem="`voltbook-edge …` exited 3: broken")
    outcome = update.run_once(settings(box))
    assert outcome is not None and outcome.state == "rolled_back", outcome
    assert outcome.reason == (
        "resumed after an interruption: `voltbook-edge …` exited 3: broken; back on version 2"
    )
    assert (box / "opt/voltbook/current").readlink() == Path("versions/2")
    kept = {k: v for k, v in tree(box).items() if "versions/3" not in k and "install.lock" not in k}
    assert kept == before
    assert memory(box)["failed_above"] == 3
    assert not (box / UPDATES / "pending.json").exists()


def test_a_resume_with_seconds_left_gives_its_first_check_a_fair_run(
    box: Path, release: NodeKey
) -> None:
    """Restarted with 0.2 s left of the deadline, a health check that needs 1.5 s to say yes
    is waited for (at least `ONE_CHECK_S`), not cut off at 0.2 s and the version rolled back."""
    fake_version(box, release, 3)
    (box / "opt/voltbook/previous").symlink_to("versions/2")
    (box / "opt/voltbook/current").unlink()
    (box / "opt/voltbook/current").symlink_to("versions/3")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.2)
    record(box, "checking", deadline=soon.isoformat())
    outcome = update.run_once(settings(box, health=("sh -c 'sleep 1.5'",)))
    assert outcome is not None and outcome.state == "healthy", outcome
    assert (box / "opt/voltbook/current").readlink() == Path("versions/3")
    assert not (box / UPDATES / "pending.json").exists()


def test_a_verdict_remembered_before_the_record_went_is_not_given_twice(box: Path) -> None:
    record(box, "checking", deadline=dt.datetime.now(dt.UTC).isoformat())
    remembered = {"done": {"c1".ljust(32, "0"): "healthy"}, "failed_above": 0}
    inflight.write_json(box / UPDATES / "updater.json", remembered)
    before = tree(box)
    assert update.run_once(settings(box)) is None
    assert not (box / UPDATES / "pending.json").exists()
    assert not (box / UPDATES / "state.json").exists()
    assert tree(box) == before


OFFERED = {"command": "c" * 32, "rollout": "r1", "version": 3, "url": "http://x/b.tar",
           "sha256": "ab" * 32, "size": 10}  # fmt: skip
VALID = {
    "offer": OFFERED,
    "version": 3, "previous": 2, "phase": "checking", "switched_at": "2026-12-06T00:00:00+00:00",
    "deadline": "2026-12-06T00:20:00+00:00", "problem": "",
}  # fmt: skip
FIELDS = [*VALID, *(f"offer.{name}" for name in OFFERED)]
JUNK = st.none() | st.integers() | st.text(max_size=12) | st.just("2026-12-06T00:00:00")


def changed(field: str, value: object, drop: bool) -> bytes:
    body = json.loads(json.dumps(VALID))
    where, name = (body["offer"], field[6:]) if field.startswith("offer.") else (body, field)
    if drop:
        where.pop(name)
    else:
        where[name] = value
    return json.dumps(body).encode()


WHOLE = json.dumps(VALID).encode()


@hsettings(max_examples=200, deadline=None)
@given(
    raw=st.binary(max_size=300)
    | st.just(b"[" * 5000)
    | st.just(b" " * 20_000)
    | st.integers(0, len(WHOLE)).map(lambda n: WHOLE[:n])  # written halfway
    | st.builds(changed, st.sampled_from(FIELDS), JUNK, st.booleans())
)
def test_any_pending_file_is_resumed_or_set_aside_with_a_sentence(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / UPDATES).mkdir(parents=True)
        (root / UPDATES / "pending.json").write_bytes(raw)
        said: list[str] = []
        outcome = update.run_once(settings(root, say=said.append, health=("false",)))
        assert outcome is None or outcome.state in update.STATES
        assert not (root / UPDATES / "pending.json").exists()  # never the same trouble again
        if outcome is None:
            assert any("pending.json" in line and "moved to" in line for line in said), said
            assert (root / UPDATES / "pending.unusable.json").read_bytes() == raw
        else:  # a record that reads: nothing installed here, so a failure that says why
            assert outcome.state == "failed" and outcome.reason, outcome


def test_at_boot_the_updater_starts_by_itself_and_nothing_of_the_runtime_holds_it_back() -> None:
    """After a power loss mid-update the runtime may be the broken new version: the updater,
    which rolls it back, must start at boot whatever that runtime does (hang, fail)."""
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((ROOT / "edge/systemd/voltbook-updater.service").read_text())
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert unit["Service"]["Restart"] == "always" and unit["Unit"]["StartLimitIntervalSec"] == "0"
    for ordering in ("After", "Requires", "BindsTo", "Requisite", "Wants", "PartOf"):
        assert "voltbook-edge" not in unit["Unit"].get(ordering, ""), ordering
    assert " update --root / --watch " in unit["Service"]["ExecStart"]
