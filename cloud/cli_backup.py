"""`voltbook-cloud backup`: backups that restore (`cloud.backups`).

    voltbook-cloud backup key --out FILE           a new key for sealing SQLite backups
    voltbook-cloud backup create [--type full|diff|incr]
    voltbook-cloud backup list
    voltbook-cloud backup restore [BACKUP] [--target TIME] [--replace]
    voltbook-cloud backup verify [BACKUP] [--target TIME]
    voltbook-cloud backup drill                    verify the latest, record it, alarm if it fails

On SQLite (the default database) a backup is a sealed file in `[backup] repository`; on
PostgreSQL, pgBackRest with `[backup] pgbackrest_config`. Exit codes: 0 done (verify, drill:
the books hold); 1 verify or the drill found the restored books broken, or the backup would not
restore; 2 refused (configuration, key, a missing backup; nothing was changed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.cli import _config_arguments, _database, _refuse

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from cloud.backups.keys import KeySource
    from cloud.backups.pgbackrest import PgBackRest
    from cloud.backups.verify import Verified
    from cloud.config import CloudConfig
    from ledger.signed import OplogHead


def add_backup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="make, list, restore and verify backups; the restore drill",
        description=(
            "SQLite: SQLite's online backup API into a file sealed with AES-256-GCM ([backup] "
            "repository, key_file or a passphrase in passphrase_env). PostgreSQL: pgBackRest "
            "([backup] pgbackrest_config, stanza): full and incremental backups, the WAL "
            "archive, point-in-time restore, an encrypted repository."
        ),
    )
    actions = backup.add_subparsers(title="actions", metavar="ACTION", required=True)
    key = actions.add_parser(
        "key",
        help="write a new key for sealing SQLite backups",
        description="Write 32 random bytes as hex to FILE (mode 0600); never overwrites.",
    )
    key.add_argument("--out", type=Path, required=True, metavar="FILE")
    key.set_defaults(func=run_key)
    create = actions.add_parser(
        "create",
        help="take a backup now",
        description=(
            "SQLite: a consistent copy while the server runs, sealed into the repository. "
            "PostgreSQL: pgBackRest backup of --type (default incr: the first one is full)."
        ),
    )
    create.add_argument("--type", choices=("full", "diff", "incr"), default="incr")
    _config_arguments(create)
    create.set_defaults(func=run_create)
    listing = actions.add_parser("list", help="list the backups", description="Oldest first.")
    _config_arguments(listing)
    listing.set_defaults(func=run_list)
    restore = actions.add_parser(
        "restore",
        help="restore a backup in place of the database (stop the server first)",
        description=(
            "SQLite: BACKUP is a sealed file (default: the latest); an existing database is "
            "refused unless --replace, and then kept beside it, renamed. PostgreSQL: BACKUP is "
            "a pgBackRest label (default: the latest), --target a time to recover to; the "
            "cluster must be stopped (pgBackRest restores with --delta)."
        ),
    )
    _backup_arguments(restore)
    restore.add_argument("--replace", action="store_true", help="restore over a database")
    restore.set_defaults(func=run_restore)
    verify = actions.add_parser(
        "verify",
        help="restore into a scratch database and check the books (exit 1 if broken)",
        description=(
            "Restore BACKUP (default: the latest; PostgreSQL: to --target if given) into a "
            "scratch database and check there that every chain verifies, the books hold "
            "(balances sum to zero, report totals equal the ledger) and the operator log "
            "reaches its signed heads. The live database is not touched."
        ),
    )
    _backup_arguments(verify)
    verify.set_defaults(func=run_verify)
    drill = actions.add_parser(
        "drill",
        help="verify the latest backup, record the result, alarm if it fails",
        description=(
            "The scheduled restore drill (deploy/systemd/voltbook-restore-drill.timer): "
            "`verify` of the latest backup, recorded in the database (restore_drills); a "
            "failure raises a critical restore_drill_failed alarm. Exit 1 when it failed."
        ),
    )
    _config_arguments(drill)
    drill.set_defaults(func=run_drill)


def _backup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup", nargs="?", metavar="BACKUP", help="file or label")
    parser.add_argument(
        "--target",
        type=_utc_time,
        metavar="TIME",
        help="PostgreSQL: recover to this moment (ISO 8601 with a zone, e.g. "
        "2026-12-06T13:45:00+08:00)",
    )
    _config_arguments(parser)


def _utc_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add +08:00 or Z")
    return moment.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _config(args: argparse.Namespace) -> CloudConfig:
    from cloud.config import load_config

    return load_config(args.config, args.data_dir)


def _is_sqlite(config: CloudConfig) -> bool:
    from sqlalchemy.engine import make_url

    return make_url(config.database_url).get_backend_name() == "sqlite"


def _sqlite_path(config: CloudConfig) -> Path:
    from sqlalchemy.engine import make_url

    from cloud.backups import BackupError

    database = make_url(config.database_url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _key(config: CloudConfig) -> KeySource:
    from cloud.backups.keys import key_source

    settings = config.backup
    return key_source(config.backup_repository, settings.key_file, settings.passphrase_env)


def _pgbackrest(config: CloudConfig) -> PgBackRest:
    from cloud.backups import BackupError
    from cloud.backups.pgbackrest import PgBackRest

    settings = config.backup
    if settings.pgbackrest_config is None:
        raise BackupError(
            "the database is PostgreSQL: set [backup] pgbackrest_config to pgBackRest's "
            "configuration file (README: Backups and restore drill)"
        )
    return PgBackRest(settings.pgbackrest_config, settings.stanza, settings.run_as)


def _database_name(config: CloudConfig) -> str:
    from sqlalchemy.engine import make_url

    return make_url(config.database_url).database or "postgres"


def _cloud_public_key(config: CloudConfig) -> Ed25519PublicKey:
    from cloud import keys
    from cloud.backups import KeyRefused

    if not config.cloud_key.exists():
        raise KeyRefused(f"no cloud key at {config.cloud_key}: the chains cannot be verified")
    return keys.load(config.cloud_key).public_key


def _live_heads(config: CloudConfig) -> list[OplogHead]:
    from cloud.people.oplog_heads import read_heads

    return read_heads(config.oplog_heads) if config.oplog_heads.exists() else []


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(run)
    def guarded(args: argparse.Namespace) -> int:
        from cloud.errors import CloudError
        from cloud.services.errors import ServiceError

        try:
            return run(args)
        except (CloudError, ServiceError, OSError) as exc:
            return _refuse(str(exc))

    return guarded


@_guarded
def run_key(args: argparse.Namespace) -> int:
    from cloud.backups.keys import write_key_file

    write_key_file(args.out)
    print(f"wrote a new backup key to {args.out}: keep a copy away from the backups")
    print(f'then in cloud.toml:\n  [backup]\n  key_file = "{args.out.absolute()}"')
    return 0


@_guarded
def run_create(args: argparse.Namespace) -> int:
    from cloud.backups import sqlite_files

    config = _config(args)
    began = time.monotonic()
    if _is_sqlite(config):
        if args.type != "incr":
            print("SQLite backups are always full copies", file=sys.stderr)
        made = sqlite_files.create(
            _sqlite_path(config), config.oplog_heads, config.backup_repository, _key(config), _now()
        )
        print(f"backup {made.path}: database {made.database_bytes} B, sealed "
              f"{made.sealed_bytes} B, {time.monotonic() - began:.2f} s")  # fmt: skip
        return 0
    backup = _pgbackrest(config).backup(args.type)
    print(f"backup {backup.label} ({backup.kind}): database {backup.database_bytes} B, copied "
          f"{backup.changed_bytes} B, stored {backup.repository_bytes} B, "
          f"{time.monotonic() - began:.2f} s")  # fmt: skip
    return 0


@_guarded
def run_list(args: argparse.Namespace) -> int:
    from cloud.backups import sqlite_files
    from cloud.backups.pgbackrest import describe

    config = _config(args)
    if _is_sqlite(config):
        found = sqlite_files.list_backups(config.backup_repository)
        lines = [f"{b.path.name}  {b.taken:%Y-%m-%d %H:%M:%S}Z  {b.sealed_bytes} B" for b in found]
    else:
        lines = describe(_pgbackrest(config).info())
    print("\n".join(lines) if lines else "no backups yet")
    return 0


def _sealed(config: CloudConfig, name: str | None) -> Path:
    from cloud.backups import BackupError, sqlite_files

    if name is not None:
        path = Path(name)
        return path if path.exists() or path.is_absolute() else config.backup_repository / name
    found = sqlite_files.list_backups(config.backup_repository)
    if not found:
        raise BackupError(f"no backups in {config.backup_repository}")
    return found[-1].path


@_guarded
def run_restore(args: argparse.Namespace) -> int:
    from cloud.backups import BackupError, sqlite_files

    config = _config(args)
    began = time.monotonic()
    if _is_sqlite(config):
        if args.target is not None:
            raise BackupError("--target is for PostgreSQL; a SQLite backup is one moment")
        sealed = _sealed(config, args.backup)
        database, heads = _sqlite_path(config), config.oplog_heads
        restored = sqlite_files.restore(
            sealed, _key(config), database, heads, _now(), replace=args.replace
        )
        print(f"restored {sealed.name} (taken {restored.taken:%Y-%m-%d %H:%M:%S}Z) to "
              f"{restored.database} in {time.monotonic() - began:.2f} s")  # fmt: skip
        return 0
    _pgbackrest(config).restore(target=args.target, label=args.backup, delta=True)
    to = f" to {args.target:%Y-%m-%d %H:%M:%S}Z" if args.target else ""
    print(f"restored {args.backup or 'the latest backup'}{to} in "
          f"{time.monotonic() - began:.2f} s: start PostgreSQL, it replays the WAL")  # fmt: skip
    return 0


def _verify(config: CloudConfig, name: str | None, target: dt.datetime | None) -> Verified:
    from cloud.backups import BackupError
    from cloud.backups.verify import verify_postgres, verify_sqlite

    cloud_key = _cloud_public_key(config)
    heads = _live_heads(config)
    if _is_sqlite(config):
        if target is not None:
            raise BackupError("--target is for PostgreSQL; a SQLite backup is one moment")
        return verify_sqlite(_sealed(config, name), _key(config), cloud_key, heads)
    return verify_postgres(_pgbackrest(config), _database_name(config), cloud_key, heads,
                           target=target, label=name)  # fmt: skip


def _report(verified: Verified) -> int:
    for problem in verified.check.problems:
        print(f"restored books BROKEN: {problem}", file=sys.stderr)
    print(f"{verified.kind} backup {verified.backup} (at {verified.point:%Y-%m-%d %H:%M:%S}Z): "
          f"restored in {verified.restore_seconds:.2f} s, checked in "
          f"{verified.check_seconds:.2f} s; {verified.check.summary()}")  # fmt: skip
    return 0 if verified.ok else 1


@_guarded
def run_verify(args: argparse.Namespace) -> int:
    from cloud.backups import SealBroken, ToolFailed

    config = _config(args)
    try:
        verified = _verify(config, args.backup, args.target)
    except (SealBroken, ToolFailed) as exc:
        print(f"backup would NOT restore: {exc}", file=sys.stderr)
        return 1
    return _report(verified)


@_guarded
def run_drill(args: argparse.Namespace) -> int:
    from cloud.backups import BackupError, drills
    from cloud.metrics.restore_drill import DrillResult, record_drill
    from cloud.services.errors import ServiceError

    config = _config(args)
    kind = "sqlite" if _is_sqlite(config) else "postgres"
    started = _now()
    verified, failure = None, ""
    try:
        verified = _verify(config, None, None)
    except (BackupError, ServiceError, OSError) as exc:
        failure = str(exc)
    finished = _now()
    with _database(args) as session:
        row = drills.record(session, kind=kind, started=started, finished=finished,
                            verified=verified, failure=failure)  # fmt: skip
        # Prometheus reads the last drill from its result file (`voltbook_restore_drill_success`).
        detail = "; ".join([row.summary, *(str(p) for p in row.problems[:3])])
        record_drill(config.restore_drill, DrillResult(ok=row.ok, finished=finished,
                                                       detail=detail))  # fmt: skip
    if verified is None:
        print(f"restore drill FAILED: {failure}", file=sys.stderr)
        return 1
    code = _report(verified)
    print("restore drill " + ("passed" if code == 0 else "FAILED (alarm raised)"))
    return code
