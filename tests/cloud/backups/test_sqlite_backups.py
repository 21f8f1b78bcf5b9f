"""Backups on SQLite, the default database, through `voltbook-cloud backup`: create → wipe →
restore → verify with real books (recharges credited by a concentrator, the operator log and
its signed heads); a tampered, truncated or foreign backup and the wrong key refused with
nothing restored; the key refused beside the backups; the drill recording its result and
raising an alarm when the restored books do not hold."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from cloud.backups.drills import ALARM, latest_drill
from cloud.config import load_config
from cloud.db.engine import session_factory
from cloud.db.models import Alarm
from cloud.metrics.restore_drill import read_drill
from ledger.chain import NodeKey
from tests.cloud.backups.conftest import (
    World,
    cli,
    pay,
    posted_payments,
    recharges,
    sign_head,
    sound,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite"], indirect=True)]
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


def _database(engine: Engine) -> Path:
    return Path(str(engine.url.database))


def test_backup_wipe_restore_verify(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    client, edge, engine, cloud = world.client, world.edge, world.engine, world.cloud
    cloud_key, config = world.cloud_key, world.config
    pay(client, edge, [(f"PAY-{n}", 1_000 * n) for n in range(1, 6)])
    sign_head(engine, cloud_key, cloud.heads, NOW)
    before = posted_payments(engine)
    assert len(before) == 5 and sound(engine) == []

    began = time.monotonic()
    code, out, err = cli(capsys, "backup", "create", *config)
    assert code == 0, err
    figures = [f"sqlite backup: {out.strip()} ({time.monotonic() - began:.2f} s)"]
    pay(client, edge, [("PAY-AFTER", 777)])  # after the backup: the restore must not have it
    sign_head(engine, cloud_key, cloud.heads, NOW + dt.timedelta(minutes=5))
    code, out, _ = cli(capsys, "backup", "list", *config)
    assert code == 0 and out.count(".vbbak") == 1

    engine.dispose()  # the wipe: the database and the heads file are gone
    database = _database(engine)
    database.unlink()
    cloud.heads.unlink()
    code, out, err = cli(capsys, "backup", "restore", *config)
    assert code == 0, err
    figures.append(f"sqlite restore: {out.strip()}")
    assert posted_payments(engine) == before
    assert sound(engine) == []
    code, out, err = cli(capsys, "oplog", "verify", *config)
    assert code == 0, err
    assert "held to 1 signed head(s)" in out

    code, out, err = cli(capsys, "backup", "verify", *config)
    assert code == 0, err
    figures.append(f"sqlite verify: {out.strip()}")
    with capsys.disabled():
        print("\n" + "\n".join(figures))
    assert "books sound: 3 chains" in out
    code, out, err = cli(capsys, "backup", "drill", *config)
    assert code == 0, err
    assert "restore drill passed" in out
    with session_factory(engine)() as session:
        drill = latest_drill(session)
    assert drill is not None and drill[0] is True
    shown = read_drill(load_config(world.cloud.config).restore_drill)  # what /metrics reads
    assert shown is not None and shown.ok is True and shown.finished == drill[1]

    code, _, err = cli(capsys, "backup", "restore", *config)
    assert code == 2 and "--replace" in err  # never over a database without being told
    code, out, err = cli(capsys, "backup", "restore", "--replace", *config)
    assert code == 0, err
    assert list(database.parent.glob(f"{database.name}.before-restore-*"))


def test_a_tampered_backup_is_refused_and_nothing_restored(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    client, edge, engine, cloud = world.client, world.edge, world.engine, world.cloud
    config = world.config
    pay(client, edge, [("PAY-1", 1_000)])
    assert cli(capsys, "backup", "create", *config)[0] == 0
    (sealed,) = cloud.repository.glob("*.vbbak")
    good = sealed.read_bytes()
    engine.dispose()
    database = _database(engine)
    database.unlink()
    for position in (3, 40, len(good) // 2, len(good) - 1):
        damaged = bytearray(good)
        damaged[position] ^= 0x01
        sealed.write_bytes(bytes(damaged))
        code, _, err = cli(capsys, "backup", "verify", *config)
        assert code == 1, position
        assert "would NOT restore" in err
        code, _, err = cli(capsys, "backup", "restore", *config)
        assert code == 2, position
        assert not database.exists()
    sealed.write_bytes(good[:-100])
    code, _, err = cli(capsys, "backup", "restore", *config)
    assert (code == 2 and "cut" in err) or "does not authenticate" in err
    assert not database.exists()

    sealed.write_bytes(good)
    cloud.key_file.unlink()
    cli(capsys, "backup", "key", "--out", str(cloud.key_file))  # another key
    code, _, err = cli(capsys, "backup", "restore", *config)
    assert code == 2 and "does not authenticate" in err
    assert not database.exists()


def test_the_key_is_refused_beside_the_backups(
    engine: Engine, cloud_key: NodeKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = write_config(tmp_path, engine, cloud_key, 'repository = "../secrets"\n')
    config = ("--config", str(cloud.config))
    cli(capsys, "backup", "key", "--out", str(cloud.key_file))
    code, _, err = cli(capsys, "backup", "create", *config)
    assert code == 2 and "inside the backup repository" in err
    assert not list(cloud.key_file.parent.glob("*.vbbak"))


def test_a_drill_whose_books_do_not_hold_raises_an_alarm(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    client, edge, engine, config = world.client, world.edge, world.engine, world.config
    with session_factory(engine)() as session:
        assert latest_drill(session) is None
    code, _, err = cli(capsys, "backup", "drill", *config)  # no backup yet: that is a failure
    assert code == 1 and "no backups" in err
    pay(client, edge, [("PAY-1", 1_000), ("PAY-2", 2_000)])
    with engine.begin() as connection:  # an entry's body edited, and a balance out of step
        connection.execute(text("UPDATE ledger_entries SET amount = amount + 1, body = "
                                "CAST(REPLACE(CAST(body AS TEXT), '1000', '1001') AS BLOB) "
                                "WHERE node = 'edge-0001' AND code = 'recharge'"))  # fmt: skip
        connection.execute(text("UPDATE balances SET credits_posted = credits_posted + 5 "
                                "WHERE account = 'A0001:prepaid'"))  # fmt: skip
    assert cli(capsys, "backup", "create", *config)[0] == 0
    code, _, err = cli(capsys, "backup", "drill", *config)
    assert code == 1
    assert "chain edge-0001: tampered" in err
    assert "A0001:prepaid: the projection holds" in err
    with session_factory(engine)() as session:
        drill = latest_drill(session)
        alarms = session.scalars(select(Alarm).where(Alarm.kind == ALARM)).all()
    assert drill is not None and drill[0] is False
    shown = read_drill(load_config(world.cloud.config).restore_drill)
    assert shown is not None and shown.ok is False and "tampered" in shown.detail
    assert [a.severity for a in alarms] == ["critical", "critical"]
    assert "no backups" in alarms[0].detail and "tampered" in alarms[1].detail
    assert recharges(engine) == 2
