"""The store's copy on a second medium (`edge.store.backup`): taken while the runtime holds the
store and writes, it is one consistent SQLite file whose chain verifies and equals the store's
at that moment; a later copy replaces it whole; a missing medium or a copy that fails is a clear
error and keeps the previous copy; `[site] backup_dir` is parsed and the runner schedules it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.runtime.notify import Notifier
from edge.runtime.runner import RunLimits, Runner
from edge.site import load_site
from edge.site.errors import SiteConfigError
from edge.store import Store
from edge.store.backup import BACKUP_FILE, BackupFailed, backup_store
from tests.edge.sync.operations_kit import Node, write_site


def _entries(path: Path) -> list[tuple[int, bytes]]:
    with Store.open_readonly(path) as store:
        return [(e.seq, e.hash) for e in store.entries()]


@pytest.mark.slow  # about a second
def test_a_copy_taken_while_the_runtime_writes_is_whole_and_replaced_whole(
    tmp_path: Path,
) -> None:
    medium = tmp_path / "usb"
    medium.mkdir()
    node = Node.boot(write_site(tmp_path / "site", 2, subsidy=True))
    try:
        node.cycles(4)
        copy = backup_store(node.store.path, medium)
        assert copy == medium / BACKUP_FILE
        first = _entries(copy)
        assert first == [(e.seq, e.hash) for e in node.store.entries()] and first
        node.cycles(4)
        backup_store(node.store.path, medium)
        second = _entries(copy)
        assert second[: len(first)] == first and len(second) > len(first)
        assert [p.name for p in medium.iterdir()] == [BACKUP_FILE]  # no temporary left
    finally:
        node.close()


def test_a_missing_medium_fails_clearly_and_keeps_the_previous_copy(tmp_path: Path) -> None:
    medium = tmp_path / "usb"
    medium.mkdir()
    node = Node.boot(write_site(tmp_path / "site", 2))
    try:
        node.cycles(2)
        backup_store(node.store.path, medium)
        before = (medium / BACKUP_FILE).read_bytes()
        with pytest.raises(BackupFailed, match="does not exist"):
            backup_store(node.store.path, tmp_path / "unmounted")
        damaged = tmp_path / "damaged.sqlite"
        damaged.write_bytes(b"not a database" * 100)
        with pytest.raises(BackupFailed, match="previous copy is kept"):
            backup_store(damaged, medium)  # fails in the middle of the copy
        assert (medium / BACKUP_FILE).read_bytes() == before
        assert [p.name for p in medium.iterdir()] == [BACKUP_FILE]
    finally:
        node.close()


def test_backup_dir_is_read_from_site_toml(tmp_path: Path) -> None:
    toml = write_site(tmp_path / "site", 2)
    text = toml.read_text()
    toml.write_text(
        text.replace("[simulation]", 'backup_dir = "usb"\nbackup_interval_s = 600\n\n[simulation]')
    )
    settings = load_site(toml).settings
    assert settings.backup_dir == toml.parent / "usb"
    assert settings.backup_interval == dt.timedelta(seconds=600)
    toml.write_text(
        text.replace("[simulation]", 'backup_dir = "usb"\nbackup_interval_s = 5\n\n[simulation]')
    )
    with pytest.raises(SiteConfigError, match="backup_interval_s"):
        load_site(toml)


def test_the_runner_schedules_the_backup_when_a_medium_is_configured(tmp_path: Path) -> None:
    toml = write_site(tmp_path / "site", 2)
    toml.write_text(toml.read_text().replace("[simulation]", 'backup_dir = "usb"\n\n[simulation]'))
    (toml.parent / "usb").mkdir()
    node = Node.boot(toml)
    try:
        node.cycles(1)
        runner = Runner(node.booted, RunLimits(cycles=1), Notifier(None, None))
        jobs = {getattr(job.job_func, "__name__", "") for job in runner.scheduler().jobs}
        assert "_backup" in jobs
        runner._backup()  # what the job runs
        assert _entries(toml.parent / "usb" / BACKUP_FILE) == [
            (e.seq, e.hash) for e in node.store.entries()
        ]
    finally:
        node.close()
