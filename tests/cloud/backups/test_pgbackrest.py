"""Backups on PostgreSQL through pgBackRest (Debian's package), on a throwaway cluster that
archives its WAL into an encrypted repository: a full backup, more payments, an incremental
one; `verify` of the latest (a scratch cluster: its books sound); the cluster wiped and
restored in place to a point in between, its books sound and holding exactly the payments made
by then; a repository file tampered with refused.

Skipped when pgBackRest or PostgreSQL is missing (failed under REQUIRE_REAL_SERVICES=1).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from cloud.backups.pgbackrest import PgBackRest, archive_command_for, config_text
from cloud.db.engine import make_engine, upgrade
from cloud.services import runas
from cloud.services.errors import ServiceError
from cloud.services.postgres import ThrowawayPostgres, find_postgres
from tests.cloud.backups.conftest import World, cli, pay, posted_payments, sign_head, sound
from tests.conftest import service_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
STANZA = "voltbook"


@dataclass
class Archiving:
    server: ThrowawayPostgres
    config: Path
    work: Path


@pytest.fixture
def archiving() -> Iterator[Archiving]:
    if shutil.which("pgbackrest") is None:
        service_missing("pgbackrest", "not installed (Debian: apt-get install pgbackrest)")
    if find_postgres() is None:
        service_missing("postgres", "initdb/pg_ctl not on PATH or in /usr/lib/postgresql/*/bin")
    account = runas.service_account(("postgres",))
    work = Path(tempfile.mkdtemp(prefix="vb-pgbr-"))  # short: the socket path must fit
    config = work / "pgbackrest.conf"
    archive = {"wal_level": "replica", "archive_mode": "on",
               "archive_command": archive_command_for(config, STANZA)}  # fmt: skip
    server = ThrowawayPostgres(work / "pg", settings=archive, socket=True)
    try:
        for name in ("", "repo", "lock", "log"):
            (work / name).mkdir(exist_ok=True)
            runas.give_to(account, work / name)
        server.start()
        assert server.socket_dir is not None
        config.write_text(config_text(
            stanza=STANZA, pg_path=server.data_dir, pg_port=server.port,
            socket_dir=server.socket_dir, repository=work / "repo",
            cipher_pass="test-only cipher pass, 40 characters long", work=work,
        ))  # fmt: skip
        runas.give_to(account, config)
        os.chmod(config, 0o600)
        PgBackRest(config, STANZA).stanza_create()
    except ServiceError as exc:
        service_missing("postgres", str(exc))
    try:
        yield Archiving(server, config, work)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def engine(archiving: Archiving) -> Iterator[Engine]:
    """This module's database: the archiving cluster's (not the shared test server's)."""
    engine = make_engine(archiving.server.url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _promoted(engine: Engine, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as connection:
                if not connection.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
                    return
        except OperationalError:  # still starting
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, "the restored cluster never left recovery"
        time.sleep(0.2)


def _wipe(world: World, server: ThrowawayPostgres) -> None:
    world.engine.dispose()
    server.stop()
    for path in server.data_dir.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.timeout(400)  # five pgBackRest runs and three servers on a shared two-core machine
def test_full_incremental_wipe_restore_and_a_point_in_time(
    world: World, archiving: Archiving, capsys: pytest.CaptureFixture[str]
) -> None:
    server, config = archiving.server, world.config
    extra = f'pgbackrest_config = "{archiving.config}"\nstanza = "{STANZA}"\n'
    world.cloud.config.write_text(world.cloud.config.read_text() + extra)
    figures = []

    def timed(*argv: str) -> str:
        began = time.monotonic()
        code, out, err = cli(capsys, *argv, *config)
        assert code == 0, err
        figures.append(f"{' '.join(argv)}: {time.monotonic() - began:.2f} s: {out.strip()}")
        return out

    first = [(f"PAY-{n}", 1_000 * n) for n in range(1, 4)]
    pay(world.client, world.edge, first)
    sign_head(world.engine, world.cloud_key, world.cloud.heads, dt.datetime.now(dt.UTC))
    timed("backup", "create", "--type", "full")
    pay(world.client, world.edge, [("PAY-4", 4_000), ("PAY-5", 5_000)])
    time.sleep(1.1)
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    pay(world.client, world.edge, [("PAY-6", 6_000)])
    timed("backup", "create", "--type", "incr")
    listed = timed("backup", "list").splitlines()
    assert [line.split()[1] for line in listed] == ["full", "incr"]

    assert "books sound: 3 chains" in timed("backup", "verify")
    assert posted_payments(world.engine) == {f"PAY-{n}" for n in range(1, 7)}
    _wipe(world, server)
    timed("backup", "restore", "--target", between.isoformat())
    began = time.monotonic()
    server.start()
    _promoted(world.engine)
    figures.append(f"start and replay the archive to {between:%H:%M:%S}: "
                   f"{time.monotonic() - began:.2f} s")  # fmt: skip
    assert posted_payments(world.engine) == {f"PAY-{n}" for n in range(1, 6)}
    assert sound(world.engine) == []
    code, _, err = cli(capsys, "oplog", "verify", *config)
    assert code == 0, err

    full = next((archiving.work / "repo" / "backup" / STANZA).glob("*F"))
    largest = max((p for p in full.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    damaged = bytearray(largest.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    largest.write_bytes(bytes(damaged))
    code, _, err = cli(capsys, "backup", "verify", *config)
    assert code == 1 and "would NOT restore" in err
    with capsys.disabled():
        print("\n" + "\n".join(figures))
