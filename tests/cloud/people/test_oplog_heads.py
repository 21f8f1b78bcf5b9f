"""The operator log against someone who can write the database (`cloud.people.oplog_heads`):
a rewrite with every hash recomputed, a head moved back and a wiped log all pass the hash chain
alone, and each is named once the log is held to a head signed with the cloud's key. On SQLite
and PostgreSQL; the CLI's `oplog sign` / `oplog verify` too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select

from cloud import keys
from cloud.cli import main
from cloud.db.auth import OperatorLogEntry, OperatorLogHead
from cloud.db.engine import session_factory
from cloud.errors import Invalid
from cloud.people import oplog, oplog_heads
from cloud.people.oplog_heads import HeadsFile, read_heads
from ledger.chain import NodeKey
from ledger.signed import OplogHead, trusted
from tests.cloud.fake_edge import T0

ACTOR = oplog.Actor("op-li", "operator", "10.0.0.1")
OTHER_KEY = NodeKey.from_seed(b"x" * 32)


def write(engine: Engine, *actions: str) -> None:
    with session_factory(engine).begin() as session:
        for action in actions:
            oplog.record(session, ACTOR, action, "account:A0001", None, {"fen": 1}, T0)


def signed(engine: Engine, key: NodeKey) -> OplogHead:
    with session_factory(engine)() as session:
        return oplog_heads.current(session, key, T0)


def verdict(engine: Engine, heads: list[OplogHead], key: NodeKey) -> oplog.Verdict:
    with session_factory(engine)() as session:
        return oplog.verify(session, heads, trusted(key.public_key))


def rewrite(engine: Engine, seq: int, action: str) -> None:
    """What someone who can write the database does: edit a row and recompute every hash from
    it on, and the head."""
    with session_factory(engine).begin() as session:
        rows = session.scalars(select(OperatorLogEntry).order_by(OperatorLogEntry.seq)).all()
        prev = oplog.GENESIS
        for row in rows:
            if row.seq == seq:
                row.action = action
            row.prev_hash = prev
            row.hash = oplog.row_hash(prev, oplog._fields(row))
            prev = row.hash
        head = session.get(OperatorLogHead, 1)
        assert head is not None
        head.hash = prev


def cut(engine: Engine, keep: int) -> None:
    """Delete the rows after `keep` and move the head back to it, hashes and all."""
    with session_factory(engine).begin() as session:
        session.execute(delete(OperatorLogEntry).where(OperatorLogEntry.seq > keep))
        head = session.get(OperatorLogHead, 1)
        assert head is not None
        last = session.get(OperatorLogEntry, keep) if keep else None
        head.seq, head.hash = keep, last.hash if last is not None else oplog.GENESIS


def test_a_rewrite_with_recomputed_hashes_is_named(engine: Engine, cloud_key: NodeKey) -> None:
    write(engine, "recharge.create", "refund.create", "refund.pay")
    heads = [signed(engine, cloud_key)]
    assert verdict(engine, heads, cloud_key).ok
    rewrite(engine, 2, "refund.cancel")
    assert verdict(engine, [], cloud_key).ok  # the chain alone cannot tell
    broken = verdict(engine, heads, cloud_key)
    assert broken.problem == (
        f"row 3 differs from the head signed at {heads[0].time}: the log was rewritten"
    )


def test_a_head_moved_back_and_a_wiped_log_are_named(engine: Engine, cloud_key: NodeKey) -> None:
    write(engine, "a.one", "a.two")
    early = signed(engine, cloud_key)
    write(engine, "a.three", "a.four")
    heads = [early, signed(engine, cloud_key)]
    cut(engine, 2)
    assert verdict(engine, [], cloud_key).ok
    assert verdict(engine, heads[:1], cloud_key).ok  # what was signed then still holds
    assert verdict(engine, heads, cloud_key).problem == (
        f"the log ends at row 2 but the head signed at {heads[1].time} vouches for row 4: rows "
        "were deleted or the head moved back"
    )
    with session_factory(engine).begin() as session:
        session.execute(delete(OperatorLogEntry))
        session.execute(delete(OperatorLogHead))
    assert verdict(engine, [], cloud_key).ok
    assert "the log ends at row 0" in verdict(engine, heads, cloud_key).problem


def test_a_head_not_signed_by_the_cloud_is_named(engine: Engine, cloud_key: NodeKey) -> None:
    write(engine, "a.one")
    forged = signed(engine, OTHER_KEY)
    assert "does not verify with the cloud's key" in verdict(engine, [forged], cloud_key).problem
    real = signed(engine, cloud_key)
    moved = dataclasses.replace(real, seq=0)  # its signature no longer covers it
    assert "does not verify" in verdict(engine, [moved], cloud_key).problem


def test_the_heads_file_keeps_each_new_head_once(
    engine: Engine, cloud_key: NodeKey, tmp_path: Path
) -> None:
    path = tmp_path / "heads" / "oplog-heads.jsonl"
    write(engine, "a.one")
    assert HeadsFile(path).append(signed(engine, cloud_key))
    assert not HeadsFile(path).append(signed(engine, cloud_key))  # the same head: no line
    write(engine, "a.two")
    assert HeadsFile(path).append(signed(engine, cloud_key))
    assert [h.seq for h in read_heads(path)] == [1, 2]
    for head in read_heads(path):
        head.verify(trusted(cloud_key.public_key))
    path.write_bytes(path.read_bytes() + b'{"seq": 3}\n')
    with pytest.raises(Invalid, match="line 3 is not a signed head"):
        read_heads(path)


def test_oplog_sign_and_verify_from_the_command_line(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    config = tmp_path / "cloud.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--config", str(config)])
        out, err = capsys.readouterr()
        return code, out, err

    write(engine, "a.one", "a.two", "a.three")
    code, out, err = run("oplog", "sign")
    assert code == 2 and "no cloud key" in err  # nothing to sign with yet
    key = keys.load_or_create(tmp_path / "cloud-key.pem")
    code, out, err = run("oplog", "sign")
    assert code == 0 and "head at row 3" in out, err
    code, out, _ = run("oplog", "verify")
    assert code == 0 and "held to 1 signed head(s), the last at row 3" in out
    rewrite(engine, 1, "a.other")
    code, out, err = run("oplog", "verify")
    assert code == 1 and "row 3 differs from the head signed at" in err
    # A concentrator's (or a backup's) copy of the heads is checked the same way.
    copy = tmp_path / "from-edge.jsonl"
    copy.write_bytes(signed(engine, key).encode() + b"\n")
    (tmp_path / "oplog-heads.jsonl").unlink()
    assert run("oplog", "verify", "--heads", str(copy))[0] == 0
    cut(engine, 2)
    code, _, err = run("oplog", "verify", "--heads", str(copy))
    assert code == 1 and "rows were deleted or the head moved back" in err
