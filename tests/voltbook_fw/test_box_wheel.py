"""The box's `voltbook` wheel (`voltbook_fw.box_wheel`): a concentrator carries `ledger`, `edge`
and `voltbook_fw` and their two commands, nothing of the server; `--with-simulator` adds `demo`.

The installs are real (`install_bundle` into a throwaway root: a virtualenv, pip with no index)
and what they installed is run. The wheels come from `demo/wheelhouse.py` (no network), but for
one test of the wheel `pip wheel` builds from the generated pyproject, which needs setuptools
from pip's index for its build isolation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from voltbook_fw import platforms
from voltbook_fw.box_wheel import RUNTIME, SIMULATOR, box_pyproject, box_wheel
from voltbook_fw.bundle import build_bundle
from voltbook_fw.cli import build_parser, main
from voltbook_fw.errors import BuildFailed
from voltbook_fw.install import install_bundle
from voltbook_fw.manifest import decode

from demo.site import write_demo_site
from demo.wheelhouse import ROOT, build_wheelhouse, write_wheel
from ledger.chain import NodeKey, public_key_pem

ARCH = platforms.box_arch()
SERVER_ONLY = ("cloud", "voltbook-cloud")
SIMULATOR_ONLY = ("demo", "voltbook-demo", "voltbook.simulation")


@pytest.fixture(scope="module")
def release() -> NodeKey:
    return NodeKey.generate()


@pytest.fixture(scope="module")
def wheelhouses(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """By `with_simulator`: the edge's wheels and the box's project wheel."""
    folder = tmp_path_factory.mktemp("wheelhouses")
    for simulator in (False, True):
        build_wheelhouse(folder / str(simulator), with_simulator=simulator)
    return {simulator: folder / str(simulator) for simulator in (False, True)}


@pytest.fixture(scope="module")
def bundles(
    tmp_path_factory: pytest.TempPathFactory, wheelhouses: dict[bool, Path], release: NodeKey
) -> dict[bool, Path]:
    """By `with_simulator`: a signed bundle, version 2, for this machine."""
    folder = tmp_path_factory.mktemp("bundles")
    out = {}
    for simulator, wheels in wheelhouses.items():
        out[simulator] = folder / f"voltbook-2-{ARCH}-{simulator}.tar"
        build_bundle(project=ROOT, arch=ARCH, version=2, release_key=release, out=out[simulator],
                     wheelhouse=wheels, with_simulator=simulator)  # fmt: skip
    return out


def installed(bundle: Path, release: NodeKey, tmp_path: Path) -> Path:
    """`bundle` installed into a fresh root that trusts `release`; its virtualenv's bin/."""
    root = tmp_path / "root"
    (root / "etc/voltbook").mkdir(parents=True)
    (root / "etc/voltbook/release.pub").write_bytes(public_key_pem(release.public_key))
    install_bundle(bundle, root, release.public_key, arch=ARCH)
    return root / "opt/voltbook/current/venv/bin"


def project_wheel_of(bundle: Path, into: Path) -> Path:
    with tarfile.open(bundle) as tar:
        (member,) = [m for m in tar if m.name.startswith("wheels/voltbook-")]
        out = into / Path(member.name).name
        out.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return out


def manifest_of(bundle: Path) -> dict[str, object]:
    with tarfile.open(bundle) as tar:
        body: dict[str, object] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    return body


def tops_and_entry_points(wheel: Path) -> tuple[set[str], str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        points = archive.read("voltbook-0.1.0.dist-info/entry_points.txt").decode()
    return {n.split("/")[0] for n in names}, points


def run(command: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """As on the box: no PYTHONPATH to this checkout, and (with `cwd`) away from it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=cwd)  # fmt: skip


def test_the_default_bundle_carries_no_server_and_no_simulator(
    bundles: dict[bool, Path], tmp_path: Path
) -> None:
    tops, points = tops_and_entry_points(project_wheel_of(bundles[False], tmp_path))
    assert tops == {"ledger", "edge", "voltbook_fw", "voltbook-0.1.0.dist-info"}
    for name in (*SERVER_ONLY, *SIMULATOR_ONLY):
        assert name not in points
    assert "voltbook-edge = edge.cli:main" in points
    assert "voltbook-fw = voltbook_fw.cli:main" in points
    body = manifest_of(bundles[False])
    assert "simulator" not in body and body["project"] == "0.1.0"


def test_the_simulator_bundle_adds_demo_and_says_so(
    bundles: dict[bool, Path], tmp_path: Path
) -> None:
    tops, points = tops_and_entry_points(project_wheel_of(bundles[True], tmp_path))
    assert tops == {"ledger", "edge", "voltbook_fw", "demo", "voltbook-0.1.0.dist-info"}
    assert "cloud" not in tops and "voltbook-cloud" not in points
    assert "[voltbook.simulation]\ndemo = demo.sim.simulation:SIMULATOR" in points
    assert "voltbook-demo = demo.cli:main" in points
    assert manifest_of(bundles[True])["simulator"] is True
    assert decode(json.dumps(manifest_of(bundles[True]), sort_keys=True,
                             separators=(",", ":")).encode()).simulator  # fmt: skip


def with_server_package(wheel: Path, out: Path) -> Path:
    """A wheelhouse whose project wheel also carries `cloud` (its RECORD redone)."""
    with zipfile.ZipFile(wheel) as old:
        files = [(n, old.read(n)) for n in old.namelist() if not n.endswith("/RECORD")]
    out.mkdir()
    for other in wheel.parent.glob("*.whl"):
        if other != wheel:
            (out / other.name).write_bytes(other.read_bytes())
    files.append(("cloud/__init__.py", b""))
    write_wheel(out / wheel.name, files, "voltbook-0.1.0.dist-info/RECORD")
    return out


NOT_THE_BOX_S = {  # case: (the wheelhouse's wheel has the simulator, bundle asks for it, error)
    "the server's package": (False, False, r"carries cloud; a concentrator carries only"),
    "the simulator, not asked for": (True, False, r"carries demo \(the simulator: .*--with-sim"),
    "no simulator, asked for": (False, True, r"lacks demo"),
}


@pytest.mark.parametrize("case", sorted(NOT_THE_BOX_S))
def test_a_wheelhouse_project_wheel_that_is_not_the_box_s_is_refused(
    case: str, wheelhouses: dict[bool, Path], release: NodeKey, tmp_path: Path
) -> None:
    has_simulator, asked, match = NOT_THE_BOX_S[case]
    wheels = wheelhouses[has_simulator]
    if case == "the server's package":
        wheels = with_server_package(next(wheels.glob("voltbook-*.whl")), tmp_path / "wheels")
    out = tmp_path / "b.tar"
    with pytest.raises(BuildFailed, match=match):
        build_bundle(project=ROOT, arch=ARCH, version=1, release_key=release, out=out,
                     wheelhouse=wheels, with_simulator=asked)  # fmt: skip
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.timeout(300)  # a real install, ~10 s, more on a loaded runner
def test_the_installed_default_box_runs_its_commands_without_the_server(
    bundles: dict[bool, Path], release: NodeKey, tmp_path: Path
) -> None:
    bin_ = installed(bundles[False], release, tmp_path)
    assert not (bin_ / "voltbook-cloud").exists() and not (bin_ / "voltbook-demo").exists()
    for package in ("cloud", "demo"):
        imported = run([bin_ / "python", "-c", f"import {package}"], cwd=tmp_path)
        assert f"No module named '{package}'" in imported.stderr
    assert run([bin_ / "voltbook-edge", "--version"]).stdout.strip() == (
        "voltbook-edge 0.1.0 (bundle 2)"
    )
    fw = bin_ / "voltbook-fw"
    commands = sorted(
        next(
            a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
        )._name_parser_map
    )
    for argv in (["--help"], *([name, "--help"] for name in commands)):
        done = run([fw, *argv])
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stdout.startswith("usage: voltbook-fw")
    assert "update" in commands and "ir-import" in commands
    (tmp_path / "ir.csv").write_text("address,read_at,energy_kwh\n")
    refused = run([fw, "ir-import", tmp_path / "ir.csv"])
    assert refused.returncode == 2
    assert "ir-import runs on the laptop with the full project" in refused.stderr
    # A site of simulated buses is refused in words: this box has no simulator.
    site = write_demo_site(tmp_path / "site", meters=2)
    loaded = run([bin_ / "voltbook-edge", "accounts", "--config", site.site_toml])
    assert loaded.returncode != 0
    assert "no meter simulator is installed" in loaded.stderr
    assert "--with-simulator" in loaded.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)  # a real install, ~10 s, more on a loaded runner
def test_a_box_installed_with_the_simulator_runs_a_demo_site(
    bundles: dict[bool, Path], release: NodeKey, tmp_path: Path
) -> None:
    bin_ = installed(bundles[True], release, tmp_path)
    imported = run([bin_ / "python", "-c", "import cloud"], cwd=tmp_path)
    assert "No module named 'cloud'" in imported.stderr
    # A rehearsal, all with the installed commands: a simulated site, a run, its accounts.
    written = run([bin_ / "voltbook-demo", "site", "--dir", tmp_path / "site", "--meters", "3"])
    assert written.returncode == 0, written.stderr
    site_toml = json.loads(written.stdout)["site"]
    ran = run([bin_ / "voltbook-edge", "run", "--config", site_toml, "--speed", "3600",
               "--cycles", "2"])  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["failed_cycles"] == 0
    accounts = run([bin_ / "voltbook-edge", "accounts", "--config", site_toml, "--json"])
    assert accounts.returncode == 0, accounts.stderr
    listed = json.loads(accounts.stdout)["accounts"]
    assert [a["id"] for a in listed] == ["A0001", "A0002", "A0003"]
    assert all(a["meters"][0]["register_wh"] > 0 for a in listed)


@pytest.mark.slow  # resolves the wheels (about a second)
def test_the_bundle_command_says_it_packed_the_simulator(
    wheelhouses: dict[bool, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "release.pem"
    assert main(["release-key", "--out", str(key)]) == 0
    argv = ["bundle", "--arch", ARCH, "--release-key", str(key), "--version", "5",
            "--project", str(ROOT)]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "a.tar"),
                 "--wheelhouse", str(wheelhouses[True]), "--with-simulator"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert said.rstrip().endswith("with the simulator (rehearsal and test boxes only)")
    assert main([*argv, "--out", str(tmp_path / "b.tar"),
                 "--wheelhouse", str(wheelhouses[False])]) == 0  # fmt: skip
    assert "simulator" not in capsys.readouterr().out


def checkout_modules(simulator: bool) -> set[str]:
    """The modules of the box's packages in this checkout, as paths inside a wheel."""
    out = set()
    for part in (*RUNTIME, SIMULATOR) if simulator else RUNTIME:
        base = ROOT / part.folder
        for path in (base / part.package).rglob("*.py"):
            if (path.parent / "__init__.py").exists():
                out.add(path.relative_to(base).as_posix())
    return out


@pytest.mark.slow  # `pip wheel`: a build environment and setuptools, ~10 s
@pytest.mark.timeout(300)
def test_the_wheel_pip_builds_from_the_generated_pyproject_is_the_box_s(
    wheelhouses: dict[bool, Path], release: NodeKey, tmp_path: Path
) -> None:
    """With no project wheel in the wheelhouse the bundle builds it from the checkout."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for wheel in wheelhouses[False].glob("*.whl"):
        if not wheel.name.startswith("voltbook-"):
            (wheels / wheel.name).write_bytes(wheel.read_bytes())
    out = tmp_path / "b.tar"
    try:
        build_bundle(project=ROOT, arch=ARCH, version=1, release_key=release, out=out,
                     wheelhouse=wheels)  # fmt: skip
    except BuildFailed as exc:
        if "for setuptools" in str(exc) and os.environ.get("REQUIRE_REAL_SERVICES") != "1":
            pytest.skip(f"no setuptools from pip's index for the build: {exc}")
        raise
    with zipfile.ZipFile(project_wheel_of(out, tmp_path)) as archive:
        names = set(archive.namelist())
    assert {n for n in names if n.endswith(".py")} == checkout_modules(simulator=False)
    assert "voltbook_fw/firstrun.sh" in names
    assert not [n for n in names if n.startswith(("cloud/", "demo/"))]


def test_the_generated_pyproject_reads_back_as_the_table_says() -> None:
    box = box_wheel(ROOT, with_simulator=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    written = tomllib.loads(box_pyproject(box, ["demo", "demo.sim", "edge", "ledger"]))
    meta = written["project"]
    for field in ("name", "version", "requires-python"):
        assert meta[field] == project["project"][field]
    assert meta["dependencies"] == ["cryptography", "pyserial", "pymodbus", "paho-mqtt",
                                    "tinydb", "schedule", "prometheus-client"]  # fmt: skip
    assert set(meta["scripts"]) == {"voltbook-edge", "voltbook-fw", "voltbook-demo"}
    assert meta["scripts"]["voltbook-edge"] == project["project"]["scripts"]["voltbook-edge"]
    assert meta["entry-points"] == {
        "voltbook.simulation": {"demo": "demo.sim.simulation:SIMULATOR"}
    }
    assert written["tool"]["setuptools"] == {
        "packages": ["demo", "demo.sim", "edge", "ledger"],
        "package-data": {"voltbook_fw": ["firstrun.sh"]},
    }
    assert written["build-system"] == project["build-system"]
    default = tomllib.loads(box_pyproject(box_wheel(ROOT), ["edge"]))
    assert "entry-points" not in default["project"]
    assert set(default["project"]["scripts"]) == {"voltbook-edge", "voltbook-fw"}
