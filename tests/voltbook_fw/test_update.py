"""The box's updater (`voltbook-fw update`): an offered bundle downloaded over real HTTP on
loopback, checked, installed for real (virtualenv, pip with no index), health-checked with the
NEW version's own `voltbook-edge`, and rolled back by itself when that fails.

The running version (2) is laid out as an install leaves it (a signed manifest, its units) but
without a virtualenv, which nothing here runs: that keeps each test to one real install. The
failing version is a real bundle whose project wheel's `voltbook-edge` exits 3, as a broken
release would.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from voltbook_fw import install, platforms, update
from voltbook_fw.bundle import build_bundle
from voltbook_fw.manifest import Manifest, sign

from ledger.chain import NodeKey, public_key_pem
from tests.voltbook_fw.wheelhouse import ROOT, build_wheelhouse, write_wheel

ARCH = platforms.box_arch()
HEALTH = "{current}/venv/bin/voltbook-edge --version"
BROKEN = b"""

def main(argv=None):  # a broken release, on purpose (tests/voltbook_fw/test_update.py)
    print("voltbook-edge: this release is broken", file=sys.stderr)
    return 3
"""


@pytest.fixture(scope="module")
def release() -> NodeKey:
    return NodeKey.generate()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, release: NodeKey) -> dict[str, Path]:
    """`good` and `broken`, both version 3."""
    folder = tmp_path_factory.mktemp("bundles")
    good_wheels = folder / "wheels-good"
    build_wheelhouse(good_wheels)
    broken_wheels = folder / "wheels-broken"
    shutil.copytree(good_wheels, broken_wheels)
    break_runtime(next(broken_wheels.glob("voltbook-*.whl")))
    out = {}
    for name, wheels in (("good", good_wheels), ("broken", broken_wheels)):
        out[name] = folder / f"{name}.tar"
        build_bundle(
            project=ROOT, arch=ARCH, version=3, release_key=release, out=out[name],
            wheelhouse=wheels,
        )  # fmt: skip
    return out


def break_runtime(wheel: Path) -> None:
    """The project's wheel again, with `edge.cli.main` replaced by one that exits 3."""
    with zipfile.ZipFile(wheel) as old:
        files = [
            (n, old.read(n) + (BROKEN if n == "edge/cli.py" else b""))
            for n in old.namelist()
            if not n.endswith("/RECORD")
        ]
        record = next(n for n in old.namelist() if n.endswith("/RECORD"))
    write_wheel(wheel, files, record)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A static file server on loopback (the cloud's `GET /updates/bundles/…` or any host)."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def box(tmp_path: Path, release: NodeKey) -> Path:
    """A box running version 2 (its manifest and units, as `install` leaves them)."""
    root = tmp_path / "root"
    (root / "etc/voltbook").mkdir(parents=True)
    (root / "etc/voltbook/release.pub").write_bytes(public_key_pem(release.public_key))
    (root / "etc/voltbook/site.toml").write_text("[site]\n")
    v2 = root / "opt/voltbook/versions/2"
    (v2 / "units").mkdir(parents=True)
    data, signature = sign(Manifest(2, ARCH, platforms.running_python_tag(), "0.1.0",
                                    release.key_id, ()), release)  # fmt: skip
    (v2 / "manifest.json").write_bytes(data)
    (v2 / "manifest.sig").write_bytes(signature)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in ("voltbook-edge.service", "voltbook-updater.service"):
        (v2 / "units" / name).write_text(f"# version 2's {name}\n")
        (units / name).write_text(f"# version 2's {name}\n")
    (root / "opt/voltbook/current").symlink_to("versions/2")
    return root


def settings(root: Path, **kw: object) -> update.Settings:
    said: list[str] = []
    values: dict[str, object] = {
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


@pytest.mark.slow  # builds the bundles (module fixture)
@pytest.mark.parametrize("version", [1, 2])
def test_a_lower_or_equal_version_is_refused_before_any_download(
    box: Path, bundles: dict[str, Path], version: int
) -> None:
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
