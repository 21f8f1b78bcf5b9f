"""`voltbook-fw release-key` and `voltbook-fw bundle`: make the release key, build a bundle.

A bundle (format in `voltbook_fw.manifest` and `voltbook_fw.archive`, docs/architecture.md §6.7)
is everything a concentrator of one arch needs to run Voltbook with no network: the pinned wheels
of `requirements-edge.txt` and what they pull in, the box's own `voltbook` wheel, and the systemd
units of `edge/systemd/`, listed with their SHA-256 and size in a manifest the release key signs.
The box's wheel holds only what a concentrator runs (`ledger`, `edge`, `voltbook_fw`; the
commands voltbook-edge and voltbook-fw: `voltbook_fw.box_wheel`); `--with-simulator` adds the
meter simulator (`demo`, voltbook-demo) for rehearsal and test boxes only, and the manifest says
so. The wheels come from `pip download --platform …` (the laptop has the network; the box never
needs it), or from `--wheelhouse DIR` for an offline builder; the box's wheel is built from the
checkout unless the wheelhouse holds one, which must then be the box's (checked).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ledger.chain import NodeKey, public_key_pem
from ledger.errors import LedgerError
from voltbook_fw import platforms
from voltbook_fw.archive import write_bundle
from voltbook_fw.box_wheel import (
    PROJECT,
    REQUIREMENTS,
    box_wheel,
    check_box_wheel,
    normalise,
    pip_wheel_project,
    read_pins,
)
from voltbook_fw.errors import BuildFailed, BundleError
from voltbook_fw.manifest import ARCHES, FileEntry, Manifest, sign

UNITS_DIR = Path("edge/systemd")
RUNTIME_UNIT = "voltbook-edge.service"
UPDATER_UNIT = "voltbook-updater.service"
FAILED = 2


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    path: Path
    manifest: Manifest
    size: int


def build_bundle(
    *,
    project: Path,
    arch: str,
    version: int,
    release_key: NodeKey,
    out: Path,
    wheelhouse: Path | None = None,
    python: str = platforms.DEFAULT_PYTHON,
    extra_index_urls: tuple[str, ...] = (),
    with_simulator: bool = False,
) -> BuiltBundle:
    """Collect the wheels and units, hash them, sign the manifest, write `out`."""
    if arch not in ARCHES:
        raise BuildFailed(f"unknown arch {arch!r} (one of {', '.join(ARCHES)})")
    if version < 1:
        raise BuildFailed("the bundle version is a positive integer, higher than the last one")
    tag = platforms.python_tag(python)
    pins = read_pins(project / REQUIREMENTS)
    units = runtime_units(project / UNITS_DIR)
    box = box_wheel(project, with_simulator=with_simulator)
    with tempfile.TemporaryDirectory(prefix="voltbook-bundle-") as work:
        wheels_dir = Path(work) / "wheels"
        wheels_dir.mkdir()
        if wheelhouse is None:
            pip_download(project / REQUIREMENTS, wheels_dir, arch, python, extra_index_urls)
        else:
            copy_fitting_wheels(wheelhouse, wheels_dir, arch, tag)
        if not project_wheels(wheels_dir):
            pip_wheel_project(project, wheels_dir, box)
        wheels = sorted(wheels_dir.glob("*.whl"))
        project_version = check_wheels(wheels, pins, arch, tag)
        check_box_wheel(project_wheels(wheels_dir)[0], box)
        check_closure(wheels_dir, arch, python)
        files = [(f"wheels/{w.name}", w) for w in wheels]
        files += [(f"units/{u.name}", u) for u in units]
        files.sort()
        manifest = Manifest(
            version=version,
            arch=arch,
            python=tag,
            project=project_version,
            key_id=release_key.key_id,
            files=tuple(_entry(name, path) for name, path in files),
            simulator=with_simulator,
        )
        data, signature = sign(manifest, release_key)
        write_bundle(out, data, signature, files)
    return BuiltBundle(out, manifest, out.stat().st_size)


def project_wheels(folder: Path) -> list[Path]:
    """The project's wheels in `folder` (a wheelhouse's, or the one just built)."""
    return sorted(w for w in folder.glob("*.whl") if normalise(w.name.split("-")[0]) == PROJECT)


def _entry(name: str, path: Path) -> FileEntry:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            digest.update(chunk)
    return FileEntry(name, digest.hexdigest(), path.stat().st_size)


def runtime_units(folder: Path) -> list[Path]:
    """The units a bundle carries; the runtime's must keep its watchdog."""
    units = {p.name: p for p in sorted(folder.glob("*.service"))}
    for needed in (RUNTIME_UNIT, UPDATER_UNIT):
        if needed not in units:
            raise BuildFailed(f"{folder / needed} is missing")
    runtime = units[RUNTIME_UNIT].read_text(encoding="utf-8")
    if not re.search(r"^WatchdogSec=[1-9]", runtime, re.MULTILINE):
        raise BuildFailed(f"{units[RUNTIME_UNIT]} has no WatchdogSec: a hung runtime must restart")
    return list(units.values())


def target_options(arch: str, python: str) -> list[str]:
    """pip's options for wheels of another box: binary only, its Python, ABIs and platforms."""
    tag = platforms.python_tag(python)
    options = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    options += ["--abi", tag, "--abi", "abi3", "--abi", "none"]
    for platform_tag in platforms.pip_platforms(arch):
        options += ["--platform", platform_tag]
    return options


def pip_download(
    requirements: Path, into: Path, arch: str, python: str, extra_index_urls: tuple[str, ...]
) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-cache-dir"]
    command += target_options(arch, python)
    for url in extra_index_urls:
        command += ["--extra-index-url", url]
    command += ["-d", str(into), "-r", str(requirements)]
    _run(command, f"no {arch} wheel for every package of {requirements.name}")


def check_closure(wheels_dir: Path, arch: str, python: str) -> None:
    """Resolve the wheels among themselves for the box, as its offline install will: a wheel's
    dependency missing from the bundle stops the build, not the box."""
    with tempfile.TemporaryDirectory(prefix="voltbook-resolve-") as target:
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--no-index", "--find-links", str(wheels_dir), "--target", target]
        command += target_options(arch, python)
        command += sorted(str(w) for w in wheels_dir.glob("*.whl"))
        # The user's pip configuration may add wheel folders; the box will have none.
        _run(command, f"the {arch} wheels do not install offline", {"PIP_CONFIG_FILE": os.devnull})


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    full_env = None if env is None else {**os.environ, **env}
    result = subprocess.run(command, capture_output=True, text=True, env=full_env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise BuildFailed(
            f"{what} (pip {command[3]} exited {result.returncode}):\n{tail}\n"
            "an armv7l build may need --extra-index-url https://www.piwheels.org/simple, "
            "or wheels built on a Pi in --wheelhouse DIR"
        )


def copy_fitting_wheels(wheelhouse: Path, into: Path, arch: str, tag: str) -> None:
    if not wheelhouse.is_dir():
        raise BuildFailed(f"--wheelhouse {wheelhouse} is not a folder")
    for wheel in sorted(wheelhouse.glob("*.whl")):
        if platforms.wheel_fits(wheel.name, arch, tag):
            shutil.copyfile(wheel, into / wheel.name)


def check_wheels(wheels: list[Path], pins: dict[str, str], arch: str, tag: str) -> str:
    """Each pin has its wheel, one wheel per distribution, all fit; the project's version."""
    found: dict[str, str] = {}
    for wheel in wheels:
        if not platforms.wheel_fits(wheel.name, arch, tag):
            raise BuildFailed(f"{wheel.name} does not install on {arch} with {tag}")
        name, version = wheel.name.split("-")[:2]
        key = normalise(name)
        if key in found:
            raise BuildFailed(f"two wheels of {name} ({found[key]} and {version}): keep one")
        found[key] = version
    for name, version in sorted(pins.items()):
        if found.get(name) != version:
            raise BuildFailed(
                f"no {arch} wheel of {name}=={version} (found {found.get(name, 'none')}); "
                "add it to the wheelhouse"
            )
    return found[PROJECT]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = commands.add_parser(
        "release-key",
        help="make an Ed25519 release key and print its public key",
        description="Write a new Ed25519 release key (PEM, mode 0600) and print its public key "
        "(PEM) on stdout: install that as /etc/voltbook/release.pub on every box. Keep the "
        "private key offline; whoever holds it can put software on every concentrator.",
    )
    key.add_argument("--out", type=Path, required=True, help="the private key file to create")
    key.set_defaults(run=run_release_key)

    parser = commands.add_parser(
        "bundle",
        help="build a signed runtime bundle for one arch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", required=True, choices=ARCHES)
    parser.add_argument("--out", type=Path, required=True, help="the bundle file to write")
    parser.add_argument("--release-key", type=Path, required=True, help="Ed25519 key (PEM)")
    parser.add_argument(
        "--version", type=int, required=True, help="integer, higher than every earlier bundle"
    )
    parser.add_argument("--wheelhouse", type=Path, help="take wheels from here, not pip download")
    parser.add_argument("--project", type=Path, default=Path(), help="project folder (default .)")
    parser.add_argument("--python", default=platforms.DEFAULT_PYTHON, help="default 3.11")
    parser.add_argument(
        "--extra-index-url", action="append", default=[], help="also look here for wheels"
    )
    parser.add_argument(
        "--with-simulator",
        action="store_true",
        help="also pack the meter simulator (demo, voltbook-demo) that a site of simulated "
        "buses needs: for rehearsal and test boxes only, never a real site's",
    )
    parser.set_defaults(run=run_bundle)


def load_release_key(path: Path) -> NodeKey:
    try:
        return NodeKey.from_pem(path.read_bytes())
    except OSError as exc:
        raise BuildFailed(f"cannot read the release key {path}: {exc}") from exc
    except (LedgerError, ValueError, TypeError) as exc:
        raise BuildFailed(f"{path} is not an Ed25519 private key (PEM): {exc}") from exc


def run_release_key(args: argparse.Namespace) -> int:
    out: Path = args.out
    key = NodeKey.generate()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {out} exists; a release key is never overwritten", file=sys.stderr)
        return FAILED
    except OSError as exc:
        print(f"error: cannot create {out}: {exc}", file=sys.stderr)
        return FAILED
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_pem())
    sys.stdout.write(public_key_pem(key.public_key).decode("ascii"))
    print(f"{out}: release key {key.key_id} written", file=sys.stderr)
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    try:
        built = build_bundle(
            project=args.project,
            arch=args.arch,
            version=args.version,
            release_key=load_release_key(args.release_key),
            out=args.out,
            wheelhouse=args.wheelhouse,
            python=args.python,
            extra_index_urls=tuple(args.extra_index_url),
            with_simulator=args.with_simulator,
        )
    except (BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    m = built.manifest
    print(
        f"{built.path}: bundle version {m.version} for {m.arch} ({m.python}), voltbook "
        f"{m.project}, {len(m.files)} files, {built.size} bytes, release key {m.key_id}"
        + (", with the simulator (rehearsal and test boxes only)" if m.simulator else "")
    )
    return 0
