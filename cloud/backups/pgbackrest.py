"""PostgreSQL backups through pgBackRest (Debian's `pgbackrest` package): full, differential
and incremental backups, the WAL archive (PostgreSQL's `archive_command` pushes every segment,
`archive_command_for`), point-in-time restore, and a repository encrypted with AES-256
(`repo1-cipher-type`, its pass in pgBackRest's own configuration file, never in the repository).

`PgBackRest` runs the program with one configuration file and stanza; as root it runs it as the
`postgres` user (pgBackRest must read the cluster's files and refuses root). `config_text` is
the configuration we write for a cluster (the tests' and `docs`' example), `parse_info` reads
`pgbackrest info --output=json` into `PgBackup`s.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.backups import BackupError, ToolFailed
from cloud.services import runas

PROGRAM = "pgbackrest"
KINDS = ("full", "diff", "incr")
TIMEOUT_S = 900
NOT_FOUND = (
    "pgBackRest is not installed: `apt-get install pgbackrest` (Debian's package), then point "
    "[backup] pgbackrest_config at its configuration file"
)


def config_text(
    *,
    stanza: str,
    pg_path: Path,
    pg_port: int,
    socket_dir: Path,
    repository: Path,
    cipher_pass: str,
    work: Path,
    pg_user: str = "postgres",
) -> str:
    """A pgBackRest configuration: an encrypted local repository, fast checkpoints, logs and
    locks under `work`."""
    settings: dict[str, Mapping[str, object]] = {
        "global": {
            "repo1-path": repository,
            "repo1-cipher-type": "aes-256-cbc",
            "repo1-cipher-pass": cipher_pass,
            "repo1-retention-full": 2,
            "start-fast": "y",
            "compress-type": "zst",
            "archive-timeout": 60,
            "lock-path": work / "lock",
            "log-path": work / "log",
            "log-level-console": "warn",
            "log-level-file": "info",
        },
        stanza: {
            "pg1-path": pg_path,
            "pg1-port": pg_port,
            "pg1-socket-path": socket_dir,
            "pg1-user": pg_user,
        },
    }
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{name}={value}" for name, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def archive_command_for(config: Path, stanza: str) -> str:
    """PostgreSQL's `archive_command` that pushes each WAL segment into the repository."""
    return f"{PROGRAM} --config={shlex.quote(str(config))} --stanza={stanza} archive-push %p"


@dataclass(frozen=True, slots=True)
class PgBackup:
    label: str
    kind: str
    started: dt.datetime
    stopped: dt.datetime
    database_bytes: int  # the cluster as backed up
    changed_bytes: int  # what this backup copied (all of it for a full one)
    repository_bytes: int  # this backup's own files in the repository, compressed, encrypted


def parse_info(text: str, stanza: str) -> list[PgBackup]:
    """The backups of `stanza` in `pgbackrest info --output=json`, oldest first."""
    try:
        stanzas = json.loads(text)
        (entry,) = [s for s in stanzas if s.get("name") == stanza]
        backups = [_backup(b) for b in entry.get("backup", [])]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ToolFailed(f"pgbackrest info answered what we cannot read: {exc}") from exc
    return sorted(backups, key=lambda b: b.stopped)


def _backup(raw: dict[str, Any]) -> PgBackup:
    stamp = raw["timestamp"]
    info = raw["info"]
    return PgBackup(
        label=str(raw["label"]),
        kind=str(raw["type"]),
        started=dt.datetime.fromtimestamp(int(stamp["start"]), dt.UTC),
        stopped=dt.datetime.fromtimestamp(int(stamp["stop"]), dt.UTC),
        database_bytes=int(info["size"]),
        changed_bytes=int(info["delta"]),
        repository_bytes=int(info["repository"]["delta"]),
    )


class PgBackRest:
    """pgBackRest with one configuration file and stanza."""

    def __init__(self, config: Path, stanza: str, user: str = "postgres") -> None:
        self.config = config
        self.stanza = stanza
        self.account = runas.service_account((user,))

    def run(self, *args: str, timeout: float = TIMEOUT_S) -> str:
        """Run `pgbackrest --config … --stanza … ARGS`; its standard output."""
        program = shutil.which(PROGRAM)
        if program is None:
            raise BackupError(NOT_FOUND)
        command = [program, f"--config={self.config}", f"--stanza={self.stanza}", *args]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=timeout, cwd="/",
                **runas.popen_kwargs(self.account),
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise ToolFailed(f"pgbackrest {args[-1]} took longer than {timeout:.0f} s") from exc
        except OSError as exc:
            raise ToolFailed(f"cannot run {program}: {exc}") from exc
        if result.returncode != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise ToolFailed(f"pgbackrest {' '.join(args)} failed (exit {result.returncode}): "
                             f"{output}")  # fmt: skip
        return str(result.stdout)

    def stanza_create(self) -> None:
        self.run("stanza-create")

    def check(self) -> None:
        """pgBackRest's own check: the cluster reachable, a WAL segment archived."""
        self.run("check")

    def backup(self, kind: str = "incr") -> PgBackup:
        """Take a backup (`full`, `diff` or `incr`; pgBackRest makes the first one full);
        the backup made."""
        if kind not in KINDS:
            raise BackupError(f"a PostgreSQL backup is one of {', '.join(KINDS)}, not {kind!r}")
        before = {b.label for b in self.info()}
        self.run("backup", f"--type={kind}")
        made = [b for b in self.info() if b.label not in before]
        if not made:
            raise ToolFailed("pgbackrest backup finished but no new backup is listed")
        return made[-1]

    def info(self) -> list[PgBackup]:
        return parse_info(self.run("info", "--output=json"), self.stanza)

    def restore(
        self,
        data_dir: Path | None = None,
        *,
        target: dt.datetime | None = None,
        label: str | None = None,
        delta: bool = False,
        archive: bool = True,
    ) -> None:
        """Restore into `data_dir` (default: the stanza's pg1-path, which must be stopped),
        replaying the WAL archive to its end, or to `target` (point-in-time), from backup
        `label` (default: the latest one before the target). `archive=False` restores with
        archiving off (a scratch copy)."""
        args: list[str] = []
        if data_dir is not None:
            args.append(f"--pg1-path={data_dir}")
        if target is not None:
            stamp = target.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            args += ["--type=time", f"--target={stamp}", "--target-action=promote"]
        if label is not None:
            args.append(f"--set={label}")
        if delta:
            args.append("--delta")
        if not archive:  # a scratch copy must never push WAL into the stanza's archive
            args.append("--archive-mode=off")
        self.run(*args, "restore")

    def verify_repository(self) -> None:
        """pgBackRest's `verify`: every file in the repository against its checksum."""
        self.run("verify")


def describe(backups: Sequence[PgBackup]) -> list[str]:
    return [
        f"{b.label}  {b.kind:<4}  {b.stopped:%Y-%m-%d %H:%M:%S}Z  database {b.database_bytes} B"
        f"  copied {b.changed_bytes} B  stored {b.repository_bytes} B"
        for b in backups
    ]
