"""`voltbook-fw update --root DIR`: the box's updater. Take an offered bundle, or roll back.

The runtime's command desk writes the cloud's signed `update` offer to
`<data>/updates/offer.json` (`edge.sync.update`); this process (`voltbook-updater.service`,
root) does the slow part, so the poll cycle never waits:

    offer ─► refused      (already handled, version not above the installed one, or a version
    │                      that failed here before: the high-water mark, never retried)
    ├─► downloading ─► failed (HTTP error, size or SHA-256 not the offer's: nothing switched)
    ├─► verified    ─► failed (the bundle's release signature or a file hash: `install` refuses,
    │                          nothing switched)
    ├─► switched    (`install`: versions/<N>; the update in flight recorded; units,
    │                `current` → N, `previous` → the old one; then the restart commands)
    ├─► healthy     (the health commands all pass within `--health-timeout`)
    └─► rolled_back (they fail or time out: `current` → the old version again by renaming a
                     symlink, its units copied back, the restart commands again)
        failed      (even the rollback could not be done: the reason says what to do)

Each state goes to `<data>/updates/state.json` (temp file, fsync, rename); the runtime's sync
turns every new one into an `update_state` event, so the cloud sees it as the node's state.
The updater's own memory is `<data>/updates/updater.json`: the offers it finished (by command
id: an offer is applied once) and `failed_above`, the highest version that failed here.

Dying before the verdict (killed, a power loss) loses nothing: before the units and `current`
change, `<data>/updates/pending.json` records the update in flight (`voltbook_fw.inflight`), and
any start of the updater finishes it first (`resume`): the health check again until the recorded
deadline (one check if it passed while the box was off), then healthy or rolled back, reported
like any verdict ("resumed after an interruption: …"). The record goes only once the verdict is
in `updater.json`. Killed before the switch: the old version's units back, `failed` (the version
is not blamed: it may be offered again).

The health command is the NEW version's `voltbook-edge health` (store verifies, buses answer,
a sync round acknowledged; `edge/cli_health.py`); the check runs again every few seconds until
it passes or the bound runs out. Verification and installation are `voltbook_fw.install`'s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.chain import load_public_key
from ledger.errors import LedgerError
from voltbook_fw import inflight, install
from voltbook_fw.errors import BadBundle, BundleError, InstallFailed, WrongBox

DATA = Path("var/lib/voltbook")
SITE = Path("etc/voltbook/site.toml")
UPDATES = "updates"
OFFER = "offer.json"
STATE = "state.json"
MEMORY = "updater.json"
# The states the box reports (edge.sync.update.STATES and the cloud's mirror them).
STATES = ("downloading", "verified", "switched", "healthy", "rolled_back", "failed", "refused")
HEALTH = "{current}/venv/bin/voltbook-edge health --config {config} --since {since}"
SYSTEMD_RESTART = ("systemctl daemon-reload", "systemctl restart voltbook-edge")
HEALTH_EVERY_S = 5.0
ONE_CHECK_S = 60.0  # the least a first health check may take (the deadline may have passed)
LAST_CHECK_S = 1.0  # a later check starts only with this much left before the deadline
DOWNLOAD_TIMEOUT_S = 60.0
CHUNK = 1 << 16
MAX_OFFER_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Offer:
    command: str
    rollout: str
    version: int
    url: str
    sha256: str
    size: int

    @classmethod
    def parse(cls, body: object) -> Offer:
        if not isinstance(body, dict):
            raise ValueError("the offer is not an object")
        fields = {}
        for name, kind in (("command", str), ("rollout", str), ("url", str), ("sha256", str)):
            value = body.get(name)
            if not isinstance(value, kind) or not value:
                raise ValueError(f"the offer's {name} is missing")
            fields[name] = value
        if not fields["url"].startswith(("http://", "https://")):
            raise ValueError("the offer's url is not http(s)")
        for name in ("version", "size"):
            value = body.get(name)
            if type(value) is not int or value < 1:
                raise ValueError(f"the offer's {name} is not a positive integer")
        return cls(version=body["version"], size=body["size"], **fields)


@dataclass(slots=True)
class Settings:
    root: Path
    data: Path
    config: Path
    release_pub: Path
    arch: str | None = None
    health: tuple[str, ...] = (HEALTH,)
    health_timeout_s: float = 1200.0
    restart: tuple[str, ...] = ()
    say: Callable[[str], None] = field(default=print)


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str
    reason: str
    version: int
    seconds: float
    # A failure that says nothing against the version (its download, an interruption before
    # the switch): no high-water mark, the version may be offered again.
    not_the_version: bool = False


def run_once(settings: Settings) -> Outcome | None:
    """Finish the update in flight if there is one, else handle the offer waiting if it is new;
    None when there is nothing to do."""
    folder = settings.data / UPDATES
    try:
        pending = inflight.read(folder)
    except inflight.UnusablePending as exc:
        if not _set_aside(settings, f"is unusable ({exc})"):
            return None
        pending = None
    if pending is not None:
        return resume(settings, pending)
    try:
        raw = (folder / OFFER).read_bytes()
    except FileNotFoundError:
        return None
    try:
        if len(raw) > MAX_OFFER_BYTES:
            raise ValueError("the offer file is too large")
        offer = Offer.parse(json.loads(raw))
    except (ValueError, RecursionError) as exc:  # another process's file: anything may be in it
        settings.say(f"update: the offer file {folder / OFFER} is unusable: {exc}")
        return None
    memory = _memory(folder)
    if offer.command in memory["done"]:
        return None  # handled once; the offer file stays until the next one replaces it
    return _remember(folder, memory, offer, Updater(settings, offer).run(memory))


def resume(settings: Settings, pending: inflight.Pending) -> Outcome | None:
    """The updater died (killed, or the box lost power) with an update in flight: decide it."""
    folder = settings.data / UPDATES
    try:
        offer = Offer.parse(pending.offer)
    except ValueError as exc:
        _set_aside(settings, f"names no usable offer ({exc})")
        return None
    memory = _memory(folder)
    if offer.command in memory["done"]:
        inflight.clear(folder)  # decided and remembered; the process died before this line
        return None
    return _remember(folder, memory, offer, Updater(settings, offer).resume(pending))


def _set_aside(settings: Settings, why: str) -> bool:
    """An unusable record of an update in flight: moved aside for a human, said; False if even
    that failed (then offers wait: nothing is installed over an update nobody can decide)."""
    folder = settings.data / UPDATES
    said = f"update: the record of an update in flight {folder / inflight.PENDING} {why}"
    try:
        aside = inflight.set_aside(folder)
    except OSError as exc:
        settings.say(f"{said}; it cannot be moved aside either ({exc}): remove it by hand")
        return False
    settings.say(f"{said}; moved to {aside}. Check by hand that `current` runs a healthy version")
    return True


def _memory(folder: Path) -> dict[str, Any]:
    memory = _read_json(folder / MEMORY)
    if not isinstance(memory, dict) or not isinstance(memory.get("done"), dict):
        return {"done": {}, "failed_above": 0}
    return memory


def _remember(folder: Path, memory: dict[str, Any], offer: Offer, outcome: Outcome) -> Outcome:
    """The verdict into the updater's memory, durably; only then is the record in flight gone."""
    memory["done"][offer.command] = outcome.state
    # The high-water mark: a version that failed here (not its transport, not an interruption
    # before the switch) is never retried by itself; those may be offered again (a new command).
    if outcome.state in ("rolled_back", "failed") and not outcome.not_the_version:
        memory["failed_above"] = max(int(memory.get("failed_above", 0)), offer.version)
    _write_json(folder / MEMORY, memory)
    inflight.clear(folder)
    return outcome


class Updater:
    """One offer, from download to healthy or rolled back, or the resumption of one."""

    def __init__(self, settings: Settings, offer: Offer) -> None:
        self.s = settings
        self.offer = offer
        self.started = time.monotonic()
        self.base = settings.root / install.BASE
        self.folder = settings.data / UPDATES
        self.pending: inflight.Pending | None = None  # once `install` is about to switch

    def report(self, state: str, reason: str = "", *, not_the_version: bool = False) -> Outcome:
        seconds = round(time.monotonic() - self.started, 3)
        try:
            running = install.installed(self.base)
        except InstallFailed:
            running = 0  # `current` is unreadable: the reason says so
        body = {
            "rollout": self.offer.rollout,
            "command": self.offer.command,
            "version": self.offer.version,
            "state": state,
            "reason": reason[:400],
            "seconds": seconds,
            "running": running,
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        _write_json(self.folder / STATE, body)
        self.s.say(f"update {self.offer.rollout} v{self.offer.version}: {state} {reason}".rstrip())
        return Outcome(state, reason, self.offer.version, seconds, not_the_version)

    def run(self, memory: dict[str, Any]) -> Outcome:
        offer = self.offer
        running = install.installed(self.base)
        if offer.version <= running:
            return self.report(
                "refused", f"version {offer.version} is not above the installed {running}"
            )
        if offer.version <= int(memory.get("failed_above", 0)):
            return self.report(
                "refused",
                f"version {memory['failed_above']} failed here before: versions up to it are "
                "not retried automatically (install a higher one, or by hand)",
            )
        try:
            release_pub = load_public_key(self.s.release_pub.read_bytes())
        except (OSError, LedgerError) as exc:
            return self.report("failed", f"cannot read the release key {self.s.release_pub}: {exc}")
        self.report("downloading", offer.url)
        downloads = self.folder / "downloads"
        try:  # the downloaded file goes whatever happens: the versions folder keeps what counts
            try:
                bundle = download(offer, downloads)
            except DownloadFailed as exc:
                return self.report(
                    "failed", f"download: {exc}; nothing switched", not_the_version=True
                )
            self.report("verified", f"{offer.size} bytes, SHA-256 {offer.sha256[:12]}… as offered")
            done = install.install_bundle(
                bundle, self.s.root, release_pub, arch=self.s.arch, before_switch=self.in_flight
            )
        except (BadBundle, WrongBox) as exc:
            return self.report("failed", f"refused by the installer, nothing switched: {exc}")
        except BundleError as exc:
            return self.report("failed", f"install: {exc}")
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
        self.report("switched", f"from version {done.previous} in {done.seconds:.1f} s")
        assert self.pending is not None  # written by in_flight, under the install lock
        problem = self.restart()
        pending = self.checking(self.pending)
        if problem is not None:
            return self.roll_back(pending, problem)
        return self.verdict(pending)

    def in_flight(self, version: int, previous: int | None) -> None:
        """`install`'s last step before the switch: the record a resumption starts from."""
        if previous is None:
            raise InstallFailed("nothing was installed before: no version to fall back to")
        if version != self.offer.version:
            raise InstallFailed(f"the bundle is version {version}, the offer {self.offer.version}")
        offer = {name: getattr(self.offer, name) for name in inflight.OFFER_FIELDS}
        now = dt.datetime.now(dt.UTC)
        pending = inflight.Pending(offer, version, previous, "switching", now)
        try:
            inflight.write(self.folder, pending)
        except OSError as exc:
            raise InstallFailed(f"cannot record the update in flight: {exc}") from exc
        self.pending = pending

    def checking(self, pending: inflight.Pending) -> inflight.Pending:
        """Restarted: the health bound starts now, as a wall-clock deadline a restart keeps."""
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.s.health_timeout_s)
        pending = pending.to("checking", deadline=deadline)
        inflight.write(self.folder, pending)
        return pending

    def verdict(self, pending: inflight.Pending, resumed: str = "") -> Outcome:
        problem = self.healthy(pending)
        if problem is None:
            return self.report("healthy", f"{resumed}the health check passed")
        return self.roll_back(pending, f"{resumed}{problem}")

    def roll_back(self, pending: inflight.Pending, problem: str) -> Outcome:
        """Back to the previous version; the verdict is recorded first, so that dying halfway
        finishes the rollback rather than checking again."""
        pending = pending.to("rolling_back", problem=problem)
        try:
            inflight.write(self.folder, pending)
            rollback(self.s.root, pending.previous)
            again = self.restart()
        except (OSError, InstallFailed) as exc:
            return self.report("failed", f"{problem}; and the rollback failed: {exc}")
        if again:
            return self.report("failed", f"{problem}; rolled back but {again}")
        return self.report("rolled_back", f"{problem}; back on version {pending.previous}")

    def resume(self, pending: inflight.Pending) -> Outcome:
        """Where the interrupted run left off (`inflight`'s phases). Dying here again resumes
        again: every step is the same whether it ran before or not."""
        said = "resumed after an interruption: "
        try:
            running = install.installed(self.base)
        except InstallFailed as exc:
            return self.report("failed", f"{said}{exc}")
        self.s.say(f"update {self.offer.rollout} v{pending.version}: {said}{pending.phase}")
        if pending.phase == "rolling_back":
            recorded = pending.problem.removeprefix(said)  # said once, however often resumed
            return self.roll_back(pending, f"{said}{recorded}")
        if running == pending.version:
            if pending.phase == "switching":  # switched; the restart may not have run
                problem = self.restart()
                pending = self.checking(pending)
                if problem is not None:
                    return self.roll_back(pending, f"{said}{problem}")
            return self.verdict(pending, said)
        if running == pending.previous and pending.phase == "switching":
            try:
                undo_install(self.s.root, pending.version, pending.previous)
            except (OSError, InstallFailed) as exc:
                return self.report("failed", f"{said}before the switch, and undoing it: {exc}")
            again = self.restart() or ""
            return self.report(
                "failed",
                f"{said}before the switch: nothing switched, version {running} runs with its "
                f"units{again and f' but {again}'}; offer version {pending.version} again",
                not_the_version=True,
            )
        return self.report(
            "failed",
            f"{said}version {running} runs, not {pending.version} as the interrupted update "
            "left it (changed by hand?): nothing done",
            not_the_version=True,
        )

    def restart(self) -> str | None:
        for command in self.s.restart:
            result = _run(command, 120.0)
            if result is not None:
                return f"restart `{command}` {result}"
        return None

    def healthy(self, pending: inflight.Pending) -> str | None:
        """None when every health command passes before the recorded deadline; else the last
        reason. The deadline is wall clock (it outlives the process), never trusted beyond
        `health_timeout_s` from now (a clock set back), and a passed one still gets one check."""
        assert pending.deadline is not None  # phase "checking" or later
        left_s = (pending.deadline - dt.datetime.now(dt.UTC)).total_seconds()
        deadline = time.monotonic() + min(left_s, self.s.health_timeout_s)
        values = {
            "root": str(self.s.root),
            "current": str(self.base / "current"),
            "config": str(self.s.config),
            "since": pending.switched_at.isoformat(),
        }
        problem = "the health check never ran"
        checked = False
        while True:
            left = deadline - time.monotonic()
            if left < LAST_CHECK_S and checked:  # too little left for another fair check
                if left_s <= 0:
                    return (
                        f"the health deadline {pending.deadline:%Y-%m-%d %H:%M:%S} UTC had "
                        f"passed (the box was off or the updater stopped); one check: {problem}"
                    )
                return f"unhealthy after {self.s.health_timeout_s:g} s: {problem}"
            # The first check gets a fair run whatever is left (a resume may start with seconds
            # left, or none); later ones stop at the deadline (a check cut off at once would
            # only hide the last real answer).
            bound = left if checked else max(left, ONE_CHECK_S)
            checked = True
            for template in self.s.health:
                command = template.format(**values)
                problem = _run(command, bound) or ""
                if problem:
                    problem = f"`{shlex.split(command)[0]} …` {problem}"
                    break
            else:
                return None
            time.sleep(min(HEALTH_EVERY_S, max(deadline - time.monotonic(), 0)))


class DownloadFailed(Exception):
    """The bundle could not be fetched as offered (HTTP, size, SHA-256)."""


def download(offer: Offer, folder: Path) -> Path:
    """Fetch the offered bundle (stdlib urllib), refusing more bytes than offered, and check
    its size and SHA-256 before anything else reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{offer.sha256}.tar"
    digest = hashlib.sha256()
    size = 0
    try:
        # The offer is signed by the cloud and its URL checked to be http(s) by the desk.
        opened = urllib.request.urlopen(offer.url, timeout=DOWNLOAD_TIMEOUT_S)
        with opened as answer, out.open("wb") as handle:
            while chunk := answer.read(CHUNK):
                size += len(chunk)
                if size > offer.size:
                    raise DownloadFailed(f"more than the {offer.size} bytes offered")
                digest.update(chunk)
                handle.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadFailed(f"{offer.url}: {exc}") from exc
    if size != offer.size:
        raise DownloadFailed(f"got {size} bytes, the offer says {offer.size}")
    if digest.hexdigest() != offer.sha256:
        raise DownloadFailed("the SHA-256 is not the offer's: damaged in transit or altered")
    return out


def rollback(root: Path, version: int) -> None:
    """`current` back to `versions/<version>` (a symlink renamed over it), its units copied back;
    `previous` is dropped: it named the version now running."""
    base = root / install.BASE
    target = base / "versions" / str(version)
    if not (target / "manifest.json").is_file():
        raise InstallFailed(f"{target} is gone: reinstall a bundle by hand")
    with install._install_lock(base / "install.lock"):  # never beside a manual install
        install._replace_link(base / "current", f"versions/{version}")
        (base / "previous").unlink(missing_ok=True)
        install._fsync_dir(base)
        install.install_units(target / "units", root / install.UNITS)


def undo_install(root: Path, version: int, previous: int) -> None:
    """An install interrupted between its record and its switch: `previous`'s units back (the
    new ones may have been copied), the never-switched `versions/<version>` removed."""
    base = root / install.BASE
    kept = base / "versions" / str(previous)
    if not (kept / "manifest.json").is_file():
        raise InstallFailed(f"{kept} is gone: reinstall a bundle by hand")
    with install._install_lock(base / "install.lock"):
        install.install_units(kept / "units", root / install.UNITS)
        shutil.rmtree(base / "versions" / str(version), ignore_errors=True)


def _run(command: str, timeout: float) -> str | None:
    """None when the command exits 0 within `timeout`; else what went wrong, briefly."""
    # The installed version runs as installed: no PYTHONPATH or PYTHONHOME of ours leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        result = subprocess.run(
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {timeout:.0f} s"
    except OSError as exc:
        return f"could not start: {exc}"
    if result.returncode == 0:
        return None
    # Its verdict: the last line it printed, stdout's before stderr's (where warnings and logs
    # go: `voltbook-edge health` prints its checks on stdout, a key warning on stderr).
    tail = (result.stdout.strip() or result.stderr.strip()).splitlines()[-1:] or [""]
    return f"exited {result.returncode}: {tail[0][:200]}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


_write_json = inflight.write_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "update",
        help="the box's updater: install an offered bundle, check its health, roll back",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=Path("/"), help="the box's root (default /)")
    parser.add_argument(
        "--data", type=Path, help="the runtime's data folder (<root>/var/lib/voltbook)"
    )
    parser.add_argument("--config", type=Path, help="site.toml (default <root>/etc/voltbook/)")
    parser.add_argument("--release-pub", type=Path, help="default <root>/etc/voltbook/release.pub")
    parser.add_argument("--arch", help="this box's arch (default: the running Python's)")
    parser.add_argument(
        "--health",
        action="append",
        help="a health command, run until it exits 0 ({current} {config} {since} {root} are "
        f"filled in; repeatable; default: {HEALTH!r})",
    )
    parser.add_argument(
        "--health-timeout",
        type=float,
        default=1200.0,
        help="seconds (1200: above a 900 s poll interval, as the first cycle waits for the grid)",
    )
    parser.add_argument(
        "--restart",
        action="append",
        help="a command run after a switch and a rollback (repeatable; default on root /: "
        "systemctl daemon-reload, systemctl restart voltbook-edge; elsewhere none)",
    )
    parser.add_argument(
        "--watch", type=float, metavar="S", help="look for an offer every S seconds (the unit)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root: Path = args.root.absolute()
    settings = Settings(
        root=root,
        data=args.data or root / DATA,
        config=args.config or root / SITE,
        release_pub=args.release_pub or root / install.RELEASE_PUB,
        arch=args.arch,
        health=tuple(args.health or (HEALTH,)),
        health_timeout_s=args.health_timeout,
        restart=tuple(
            args.restart
            if args.restart is not None
            else SYSTEMD_RESTART
            if root == Path("/")
            else ()
        ),
    )
    while True:
        outcome = run_once(settings)
        if args.watch is None:
            return 0 if outcome is None or outcome.state in ("healthy", "refused") else 1
        if outcome is not None and outcome.state == "healthy":
            return 0  # systemd starts the updater again, from the version now current
        time.sleep(args.watch)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voltbook-fw")
    register(parser.add_subparsers(required=True))
    return int(run(parser.parse_args(["update", *(sys.argv[1:] if argv is None else argv)])))
