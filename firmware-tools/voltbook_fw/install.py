"""`voltbook-fw install BUNDLE --root DIR`: put a verified bundle on a box, beside what runs.

Nothing under `--root` is touched until `voltbook_fw.verify` has checked the whole bundle. Then:

    <root>/opt/voltbook/versions/<N>/   manifest.json, manifest.sig, wheels/, units/, venv/
    <root>/opt/voltbook/current         → versions/<N>   (symlink, replaced by rename: atomic)
    <root>/opt/voltbook/previous        → the version `current` named before (kept for rollback)
    <root>/etc/systemd/system/*.service the bundle's units (each replaced by rename)
    <root>/etc/voltbook/release.pub     the release key, written once if the box had none

The virtualenv is made with this Python (`python -m venv`) and filled by `pip install
--no-index --find-links wheels/` with pip's configuration and environment ignored: the box never
needs the network. A failure before the switch removes `versions/<N>` and leaves `current` as it
was. Versions older than `previous` are removed after the switch. Starting the new version
(`systemctl daemon-reload`, restart) is the caller's step, and the updater's (issue 16 item 3).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import key_id, load_public_key, public_key_pem
from ledger.errors import LedgerError
from voltbook_fw import platforms
from voltbook_fw.errors import BadBundle, BundleError, InstallFailed, WrongBox
from voltbook_fw.manifest import MANIFEST, SIGNATURE, decode
from voltbook_fw.verify import Box, VerifiedBundle, verify_bundle

BASE = Path("opt/voltbook")
UNITS = Path("etc/systemd/system")
RELEASE_PUB = Path("etc/voltbook/release.pub")
REFUSED = 2
FAILED = 3
PIP_TIMEOUT_S = 600


@dataclass(frozen=True, slots=True)
class Installed:
    version: int
    project: str
    path: Path
    previous: int | None
    seconds: float


def install_bundle(
    bundle: Path,
    root: Path,
    release_pub: Ed25519PublicKey,
    *,
    arch: str | None = None,
    before_switch: Callable[[int, int | None], None] | None = None,
) -> Installed:
    """Verify `bundle` whole, then install it side by side under `root` and switch to it.

    `before_switch(version, previous)` runs under the install lock once the new version is in
    place, before its units are copied and `current` renamed (the updater records the update in
    flight there); if it raises, the new version's folder goes and nothing is switched."""
    started = time.monotonic()
    root = root.absolute()  # the venv's scripts name their Python by absolute path
    base = root / BASE
    trusted = root / RELEASE_PUB
    check_trusted_key(trusted, release_pub)
    box = Box(arch or platforms.box_arch(), platforms.running_python_tag(), installed(base))
    with tempfile.TemporaryDirectory(prefix="voltbook-install-") as staging:
        checked = verify_bundle(bundle, release_pub, box, Path(staging))
        # Only now is anything under root written.
        base.mkdir(parents=True, exist_ok=True)
        with _install_lock(base / "install.lock"):
            if (now := installed(base)) != box.installed:  # another install won the race
                raise WrongBox(f"version {now} was installed meanwhile; run again")
            target = base / "versions" / str(checked.manifest.version)
            try:
                place(checked, target)
                make_venv(target)
                if before_switch is not None:
                    before_switch(checked.manifest.version, box.installed or None)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            install_units(target / "units", root / UNITS)
            previous = switch(base, checked.manifest.version)
            prune(base, keep={checked.manifest.version, previous})
    if not trusted.exists():
        trusted.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(trusted, public_key_pem(release_pub))
    return Installed(
        checked.manifest.version,
        checked.manifest.project,
        target,
        previous,
        time.monotonic() - started,
    )


def check_trusted_key(trusted: Path, release_pub: Ed25519PublicKey) -> None:
    """A box that trusts a release key installs nothing signed by another one."""
    if not trusted.exists():
        return
    try:
        theirs = load_public_key(trusted.read_bytes())
    except (OSError, LedgerError) as exc:
        raise InstallFailed(f"cannot read the box's release key {trusted}: {exc}") from exc
    if key_id(theirs) != key_id(release_pub):
        raise WrongBox(
            f"this box trusts release key {key_id(theirs)} ({trusted}), not "
            f"{key_id(release_pub)}: use that key's bundles, or replace {trusted} by hand"
        )


def installed(base: Path) -> int:
    """The version `current` runs, 0 if none."""
    current = base / "current"
    if not current.is_symlink():
        if current.exists():
            raise InstallFailed(f"{current} is not a symlink: move it away and run again")
        return 0
    try:
        return decode((current / MANIFEST).read_bytes()).version
    except (OSError, BadBundle) as exc:
        raise InstallFailed(
            f"cannot tell the installed version from {current / MANIFEST}: {exc}"
        ) from exc


def place(checked: VerifiedBundle, target: Path) -> None:
    # A `versions/N` above `current` is an interrupted or rolled-back install: redo it.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for folder in ("wheels", "units"):
        source = checked.staging / folder
        if source.is_dir():
            shutil.copytree(source, target / folder)
    (target / MANIFEST).write_bytes(checked.manifest_bytes)
    (target / SIGNATURE).write_bytes(checked.signature)


def make_venv(target: Path) -> None:
    """With the Python running this installer: the one whose tag the bundle was checked for."""
    venv = target / "venv"
    _run(
        [sys.executable, "-m", "venv", str(venv)],
        "making the virtualenv (on Debian: apt install python3-venv)",
    )
    wheels = sorted(str(w) for w in (target / "wheels").glob("*.whl"))
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index"]
    command += ["--no-cache-dir", "--disable-pip-version-check", "--no-warn-script-location"]
    command += ["--find-links", str(target / "wheels"), *wheels]
    _run(command, "installing the bundle's wheels (a wheel missing from the bundle?)")


def _run(command: list[str], what: str) -> None:
    # pip reads config files and PIP_* variables (index URLs, constraints): none may apply here.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"{what}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise InstallFailed(f"{what} failed; nothing was switched:\n{tail}")


def install_units(source: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for unit in sorted(source.glob("*")):
        _write_atomic(into / unit.name, unit.read_bytes())


def switch(base: Path, version: int) -> int | None:
    """Point `current` at `versions/<version>`; `previous` at what it named (set first, so a
    crash between the two renames never loses the old version)."""
    previous = installed(base) or None
    if previous is not None:
        _replace_link(base / "previous", f"versions/{previous}")
    _replace_link(base / "current", f"versions/{version}")
    _fsync_dir(base)
    return previous


def _replace_link(path: Path, target: str) -> None:
    """A new symlink renamed over `path`: readers see the old link or the new, never none."""
    link = path.with_name(f".{path.name}.new")
    link.unlink(missing_ok=True)
    os.symlink(target, link)
    os.replace(link, path)


def prune(base: Path, keep: set[int | None]) -> None:
    for folder in (base / "versions").iterdir():
        if folder.name.isdigit() and int(folder.name) not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.new")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _install_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a file for the switch: two installs never interleave."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallFailed(f"another install holds {path}; wait for it") from None
        yield
    finally:
        os.close(fd)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "install",
        help="verify a bundle and install it beside the running version",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, help="the bundle file (voltbook-fw bundle)")
    parser.add_argument("--root", type=Path, default=Path("/"), help="install under (default /)")
    parser.add_argument(
        "--release-pub",
        type=Path,
        help="release public key (PEM or hex; default <root>/etc/voltbook/release.pub)",
    )
    parser.add_argument("--arch", help="this box's arch (default: the running Python's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    pub_path: Path = args.release_pub or root / RELEASE_PUB
    try:
        release_pub = load_public_key(pub_path.read_bytes())
    except OSError as exc:
        print(
            f"error: cannot read the release public key {pub_path}: {exc}; pass --release-pub",
            file=sys.stderr,
        )
        return REFUSED
    except LedgerError as exc:
        print(f"error: {pub_path}: {exc}", file=sys.stderr)
        return REFUSED
    try:
        done = install_bundle(args.bundle, root, release_pub, arch=args.arch)
    except (BadBundle, WrongBox) as exc:
        print(f"error: {args.bundle}: refused, nothing installed: {exc}", file=sys.stderr)
        return REFUSED
    except BundleError as exc:
        print(f"error: {args.bundle}: {exc}", file=sys.stderr)
        return FAILED
    kept = f"; version {done.previous} kept for rollback" if done.previous else ""
    print(
        f"installed bundle version {done.version} (voltbook {done.project}) in {done.path} "
        f"in {done.seconds:.1f} s{kept}\n"
        "next: systemctl daemon-reload && systemctl restart voltbook-edge"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m voltbook_fw.install`: the installer alone, for a box with no Voltbook yet."""
    parser = argparse.ArgumentParser(prog="voltbook-fw")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["install", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
