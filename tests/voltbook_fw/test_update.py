"""The box's updater (`voltbook-fw update`): an offered bundle downloaded over real HTTP on
loopback, checked, installed for real (virtualenv, pip with no index), health-checked with the
NEW version's own `voltbook-edge`, and rolled back by itself when that fails.

The running version (2) is laid out as an install leaves it (a signed manifest, its units) but
without a virtualenv, which nothing here runs: that keeps each test to one real install. The
failing version is a real bundle whose project wheel's `voltbook-edge` exits 3, as a broken
release would. Fixtures: `conftest.py`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from voltbook_fw import inflight, install, platforms, update

from ledger.chain import NodeKey, public_key_pem

ARCH = platforms.box_arch()
HEALTH = "{current}/venv/bin/voltbook-edge --version"


def settings(root: Path, **kw: object) -> update.Settings:
    said: list[str] = []
    values: dict[str, Any] = {
        "root": root, "data": root / "var/lib/voltbook", "config": root / "etc/voltbook/site.toml",
        "release_pub": root / "etc/voltbook/release.pub", "arch": ARCH, "health": (HEALTH,),
        "health_timeout_s": 30.0, "say": said.append,
    }  # fmt: skip
    values.update(kw)
    return update.Settings(**values)


def offer(root: Path, url: str, bundle: bytes, version: int = 3, command: str = "c1") -> None:
    folder = root / "var/lib/voltbook/updates"
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "command": command.ljust(32, "0"), "rollout": "r1", "version": version, "url": url,
        "sha256": hashlib.sha256(bundle).hexdigest(), "size": len(bundle),
    }  # fmt: skip
    (folder / "offer.json").write_text(json.dumps(body))


def serve(server: tuple[str, Path], name: str, data: bytes) -> str:
    (server[1] / name).write_bytes(data)
    return f"{server[0]}/{name}"


def state(root: Path) -> dict[str, object]:
    body: dict[str, object] = json.loads((root / "var/lib/voltbook/updates/state.json").read_text())
    return body


def tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted((root / "opt").rglob("*")) + sorted((root / "etc").rglob("*")):
        key = path.relative_to(root).as_posix()
        out[key] = (
            "-> " + str(path.readlink()) if path.is_symlink()
            else hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        )  # fmt: skip
    return out


@pytest.mark.slow  # one real install, ~10 s
@pytest.mark.timeout(180)
def test_an_offer_is_installed_once_and_found_healthy(
    box: Path, bundles: dict[str, Path], server: tuple[str, Path]
) -> None:
    data = bundles["good"].read_bytes()
    offer(box, serve(server, "good.tar", data), data)
    started = time.monotonic()
    outcome = update.run_once(settings(box))
    took = time.monotonic() - started
    assert outcome is not None and outcome.state == "healthy", outcome
    base = box / "opt/voltbook"
    assert (base / "current").readlink() == Path("versions/3")
    assert (base / "previous").readlink() == Path("versions/2")
    assert state(box)["state"] == "healthy" and state(box)["running"] == 3
    assert "WatchdogSec" in (box / "etc/systemd/system/voltbook-edge.service").read_text()
    assert update.run_once(settings(box)) is None  # the same offer again: applied once
    print(f"update to a healthy version: {took:.1f} s (install {outcome.seconds:.1f} s)")


@pytest.mark.slow  # one real install, ~10 s
@pytest.mark.timeout(180)
def test_a_version_failing_its_health_check_rolls_back_by_itself(
    box: Path, bundles: dict[str, Path], server: tuple[str, Path]
) -> None:
    before = tree(box)
    data = bundles["broken"].read_bytes()
    url = serve(server, "broken.tar", data)
    offer(box, url, data)
    restarts = box / "restarts.log"
    restart = f"sh -c 'echo restart >> {restarts}'"
    outcome = update.run_once(settings(box, health_timeout_s=3.0, restart=(restart,)))
    assert outcome is not None and outcome.state == "rolled_back", outcome
    assert "exited 3" in outcome.reason and "back on version 2" in outcome.reason
    base = box / "opt/voltbook"
    assert (base / "current").readlink() == Path("versions/2")
    assert not (base / "previous").exists()
    after = tree(box)
    kept = {k: v for k, v in after.items() if "versions/3" not in k and "install.lock" not in k}
    assert kept == before
    assert restarts.read_text() == "restart\nrestart\n"  # after the switch and after the rollback
    assert state(box)["state"] == "rolled_back" and state(box)["running"] == 2
    # The high-water mark: the same version offered again is not retried.
    offer(box, url, data, command="c2")
    again = update.run_once(settings(box))
    assert again is not None and again.state == "refused"
    assert "failed here before" in again.reason
    assert (base / "current").readlink() == Path("versions/2")
    print(f"update that failed its health check, rolled back: {outcome.seconds:.1f} s")


@pytest.mark.parametrize("version", [1, 2])
def test_a_lower_or_equal_version_is_refused_before_any_download(box: Path, version: int) -> None:
    before = tree(box)
    offer(box, "http://127.0.0.1:9/never", b"x", version=version)
    outcome = update.run_once(settings(box))
    assert outcome is not None and outcome.state == "refused"
    assert f"version {version} is not above the installed 2" in outcome.reason
    assert tree(box) == before


@pytest.mark.parametrize(
    ("served", "why"),
    [
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "SHA-256 is not the offer's"),
        (lambda b: b + b"x", "more than the"),
        (lambda b: b[:-1], "bytes, the offer says"),
    ],
)
@pytest.mark.slow  # builds the bundles (module fixture)
def test_a_damaged_download_is_refused_and_nothing_switched(
    box: Path,
    bundles: dict[str, Path],
    server: tuple[str, Path],
    served: Callable[[bytes], bytes],
    why: str,
) -> None:
    before = tree(box)
    data = bundles["good"].read_bytes()
    offer(box, serve(server, "damaged.tar", served(data)), data)
    outcome = update.run_once(settings(box))
    assert outcome is not None and outcome.state == "failed"
    assert outcome.reason.startswith("download") and why in outcome.reason, outcome.reason
    assert tree(box) == before
    assert not (box / "var/lib/voltbook/updates/downloads").exists()
    assert install.installed(box / "opt/voltbook") == 2


@pytest.mark.slow  # builds the bundles (module fixture)
def test_a_bundle_signed_by_another_key_is_refused_though_its_hash_was_offered(
    box: Path, bundles: dict[str, Path], server: tuple[str, Path], tmp_path: Path
) -> None:
    members = bundles["good"].read_bytes()
    # The offer is only a hash: the box still checks the release signature (install's job).
    other = NodeKey.generate()
    (box / "etc/voltbook/release.pub").write_bytes(public_key_pem(other.public_key))
    before = tree(box)
    offer(box, serve(server, "other.tar", members), members)
    outcome = update.run_once(settings(box))
    assert outcome is not None and outcome.state == "failed"
    assert "refused by the installer" in outcome.reason
    assert tree(box) == before


@hsettings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300) | st.just(b"[" * 5000) | st.builds(
    lambda d: json.dumps(d).encode(),
    st.dictionaries(st.sampled_from(["command", "rollout", "version", "url", "sha256", "size"]),
                    st.none() | st.integers() | st.text(max_size=10) | st.just("http://x/"),
                    max_size=6),
))  # fmt: skip
def test_any_offer_file_is_an_offer_or_a_sentence(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "var/lib/voltbook/updates").mkdir(parents=True)
        (root / "var/lib/voltbook/updates/offer.json").write_bytes(raw)
        outcome = update.run_once(settings(root))  # no release key: nothing is downloaded
        assert outcome is None or outcome.state in update.STATES


def test_the_verdict_is_the_last_real_answer_not_a_check_cut_off_at_the_deadline(
    tmp_path: Path,
) -> None:
    """A check that fails after 0.6 s, a 5.7 s bound, a check every 5 s: the second would start
    with 0.1 s left and be cut off at once; the verdict must be the first's "exited 3"."""
    config = settings(tmp_path, health=("sh -c 'sleep 0.6; echo broken; exit 3'",),
                      health_timeout_s=5.7)  # fmt: skip
    updater = update.Updater(config, update.Offer("c" * 32, "r1", 3, "http://x/", "0" * 64, 1))
    now = dt.datetime.now(dt.UTC)
    checking = inflight.Pending({}, 3, 2, "checking", now, deadline=now + dt.timedelta(seconds=5.7))
    problem = updater.healthy(checking)
    assert problem is not None and problem.endswith("exited 3: broken"), problem


@pytest.mark.parametrize(
    ("script", "said"),
    [
        # `voltbook-edge health`: its checks on stdout, a logged warning on stderr.
        (
            "echo verdict: no cycle; echo 'warning: key unencrypted' >&2; exit 1",
            "verdict: no cycle",
        ),
        ("echo 'Job for voltbook-edge.service failed' >&2; exit 1", "voltbook-edge.service failed"),
        ("exit 4", "exited 4: "),
    ],
)
def test_a_failing_health_check_is_reported_by_what_it_printed(
    tmp_path: Path, script: str, said: str
) -> None:
    checker = tmp_path / "check.sh"
    checker.write_text(script + "\n")
    config = settings(tmp_path, health=(f"sh {checker}",), health_timeout_s=0.5)
    updater = update.Updater(config, update.Offer("c" * 32, "r1", 3, "http://x/", "0" * 64, 1))
    now = dt.datetime.now(dt.UTC)
    checking = inflight.Pending({}, 3, 2, "checking", now, deadline=now + dt.timedelta(seconds=0.5))
    problem = updater.healthy(checking)
    assert problem is not None and problem.startswith("unhealthy after 0.5 s: `sh …`"), problem
    assert said in problem and "warning" not in problem, problem
