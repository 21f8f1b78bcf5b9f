"""`voltbook-edge keys rotate`: a concentrator replaces its node key mid-chain, recording the
rotation in its store; everything that checks the node's signatures follows it — the store's
open, the boot from a signed snapshot, the audit `ledger verify --config`, an export verified
with either key — and refuses a forged rotation or the retired key signing after it."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from edge.cli import main as edge_cli
from edge.cli_keys import rotate_node_key
from edge.runtime.boot import BootError, read_node_key
from edge.runtime.retention import take_snapshot
from edge.site import load_site
from edge.store import CorruptStore, Store, StoreUsageError
from ledger import key_files
from ledger.chain import NodeKey, sign_checkpoint
from ledger.export import parse_lines
from ledger.key_rotation import KeyRotation
from ledger.verify import verify_lines
from tests.edge.runtime.conftest import booted_at, cycles, demo

QUARTER = dt.timedelta(minutes=15)


pytestmark = pytest.mark.usefixtures("no_key_passphrase")


def _run(site_toml: Path, count: int, start: dt.datetime | None = None) -> dt.datetime:
    """Boot, run `count` cycles, sign a snapshot, stop; the clock where it stopped."""
    booted, clock = booted_at(load_site(site_toml), *(() if start is None else (start,)))
    try:
        cycles(booted, clock, count, QUARTER)
        take_snapshot(booted.runtime.store, booted.runtime.key)
        return clock.true_now()
    finally:
        booted.close()


def _store(site_toml: Path, key: NodeKey, **kwargs: object) -> Store:
    return Store.open(load_site(site_toml).settings.store_path, public_key=key.public_key,
                      **kwargs)  # type: ignore[arg-type]  # fmt: skip


def test_a_rotation_mid_chain_is_followed_by_every_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = demo(tmp_path, 4, tariff="flat")
    key_path = load_site(site.site_toml).settings.node_key
    stopped = _run(site.site_toml, 3)
    old = read_node_key(key_path)

    assert edge_cli(["keys", "rotate", "--config", str(site.site_toml)]) == 0
    new = read_node_key(key_path)
    assert new.key_id != old.key_id and not key_path.with_name("node.key.next").exists()
    with _store(site.site_toml, new) as store:
        [rotation] = store.key_rotations()
        assert (rotation.seq, rotation.head) == (store.chain.seq, store.chain.head)
        assert (rotation.old_key_id, rotation.new_key_id) == (old.key_id, new.key_id)
    capsys.readouterr()

    _run(site.site_toml, 3, stopped)  # boots with the new key, signs with it
    with _store(site.site_toml, new) as store:
        assert store.boot_start > rotation.seq  # from the snapshot the new key signed
        checkpoints = store.checkpoints()
        assert {c.key_id for c in checkpoints if c.seq <= rotation.seq} == {old.key_id}
        assert {c.key_id for c in checkpoints if c.seq > rotation.seq} == {new.key_id}
        lines = list(store.export_lines())
    with _store(site.site_toml, new, full_check=True):
        pass  # every retained row replayed, every snapshot met

    assert edge_cli(["ledger", "verify", "--config", str(site.site_toml)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert [r for _, r in parse_lines(lines) if isinstance(r, KeyRotation)] == [rotation]
    for trusted in (old, new):
        verdict = verify_lines(lines, [trusted.public_key])
        assert verdict.ok, verdict.findings


def test_the_retired_key_signing_after_the_rotation_is_refused(tmp_path: Path) -> None:
    site = demo(tmp_path, 4, tariff="flat")
    key_path = load_site(site.site_toml).settings.node_key
    stopped = _run(site.site_toml, 2)
    old = read_node_key(key_path)
    assert edge_cli(["keys", "rotate", "--config", str(site.site_toml)]) == 0
    new = read_node_key(key_path)
    _run(site.site_toml, 2, stopped)
    path = load_site(site.site_toml).settings.store_path
    with _store(site.site_toml, new) as store:
        head = store.chain
        forged = sign_checkpoint(old, head.node, head.seq, head.head)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM snapshots")
        conn.execute(
            "UPDATE checkpoints SET key_id = ?, signature = ? WHERE seq = ?",
            (forged.key_id, forged.signature, forged.seq),
        )
    with pytest.raises(CorruptStore, match="retired at seq"):
        _store(site.site_toml, new)
    assert edge_cli(["ledger", "verify", "--config", str(site.site_toml)]) == 1


def test_a_forged_rotation_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    site = demo(tmp_path, 4, tariff="flat")
    _run(site.site_toml, 2)
    key = read_node_key(load_site(site.site_toml).settings.node_key)
    stranger, successor = NodeKey.generate(), NodeKey.generate()
    with _store(site.site_toml, key) as store:
        head = store.chain
        forged = KeyRotation.sign(stranger, head.node, head.seq, head.head, successor.public_key)
        with (
            pytest.raises(StoreUsageError, match="not by the node's current key"),
            store.transaction() as tx,
        ):
            tx.add_key_rotation(forged)
        assert store.key_rotations() == []
        assert set(store.key_schedule.current) == {key.key_id}  # type: ignore[union-attr]
    path = load_site(site.site_toml).settings.store_path
    with sqlite3.connect(path) as conn:  # written into the file behind the store's back
        conn.execute(
            "INSERT INTO key_rotations (seq, record) VALUES (?, ?)", (forged.seq, forged.payload)
        )
    with pytest.raises(CorruptStore, match="key rotation"):
        _store(site.site_toml, key)


def test_a_rotation_cut_short_is_finished_by_running_it_again(tmp_path: Path) -> None:
    site = demo(tmp_path, 4, tariff="flat")
    settings = load_site(site.site_toml).settings
    stopped = _run(site.site_toml, 2)
    old = read_node_key(settings.node_key)
    staged = settings.node_key.with_name("node.key.next")
    with _store(site.site_toml, old) as store:  # the store records it; the file is not switched
        rotation = rotate_node_key(store, old, staged, None)
    assert read_node_key(settings.node_key).key_id == old.key_id
    with pytest.raises(BootError, match="keys rotate"):
        booted_at(load_site(site.site_toml))

    assert edge_cli(["keys", "rotate", "--config", str(site.site_toml)]) == 0
    assert read_node_key(settings.node_key).key_id == rotation.new_key_id
    _run(site.site_toml, 1, stopped)
    with _store(site.site_toml, read_node_key(settings.node_key)) as store:
        assert store.key_rotations() == [rotation]  # finished, not rotated twice


def test_the_new_key_is_encrypted_like_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, "correct horse battery staple")
    site = demo(tmp_path, 4, tariff="flat")
    key_path = load_site(site.site_toml).settings.node_key
    assert edge_cli(["keys", "encrypt", "--config", str(site.site_toml)]) == 0
    assert edge_cli(["keys", "rotate", "--config", str(site.site_toml)]) == 0
    assert key_files.is_encrypted(key_path.read_bytes())
    _run(site.site_toml, 1)
