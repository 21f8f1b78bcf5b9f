"""Fixtures of the updater's tests (`test_update.py`, `test_update_site.py`): a release key,
the project's wheelhouse, two real bundles of version 3 (one good, one whose `voltbook-edge`
exits 3), a static file server on loopback, and a box running version 2. `test_bundle.py`
and `test_box_wheel.py` define their own `release`, `wheelhouse` (and `box`), which take
precedence there.

The wheelhouse and bundles are a real site's box's (no simulator) unless the module overrides
`with_simulator`: a module whose installed versions load a simulated site (their health check
does) needs bundles built `--with-simulator`, as a rehearsal box does.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from voltbook_fw import platforms
from voltbook_fw.bundle import build_bundle
from voltbook_fw.manifest import Manifest, sign

from demo.wheelhouse import ROOT, build_wheelhouse, write_wheel
from ledger.chain import NodeKey, public_key_pem

ARCH = platforms.box_arch()
BROKEN = b"""

def main(argv=None):  # a broken release, on purpose (tests/voltbook_fw/test_update.py)
    print("voltbook-edge: this release is broken", file=sys.stderr)
    return 3
"""


@pytest.fixture(scope="module")
def release() -> NodeKey:
    return NodeKey.generate()


@pytest.fixture(scope="module")
def with_simulator() -> bool:
    """Whether this module's wheelhouse and bundles carry the simulator."""
    return False


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, with_simulator: bool) -> Path:
    """The project's wheels and its dependencies', as a release is built from."""
    folder = tmp_path_factory.mktemp("wheels") / "wheels-good"
    build_wheelhouse(folder, with_simulator=with_simulator)
    return folder


@pytest.fixture(scope="module")
def bundles(
    tmp_path_factory: pytest.TempPathFactory,
    release: NodeKey,
    wheelhouse: Path,
    with_simulator: bool,
) -> dict[str, Path]:
    """`good` and `broken`, both version 3."""
    folder = tmp_path_factory.mktemp("bundles")
    good_wheels = wheelhouse
    broken_wheels = folder / "wheels-broken"
    shutil.copytree(good_wheels, broken_wheels)
    break_runtime(next(broken_wheels.glob("voltbook-*.whl")))
    out = {}
    for name, wheels in (("good", good_wheels), ("broken", broken_wheels)):
        out[name] = folder / f"{name}.tar"
        build_bundle(
            project=ROOT, arch=ARCH, version=3, release_key=release, out=out[name],
            wheelhouse=wheels, with_simulator=with_simulator,
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
