"""A full disk during a cycle's commit: a clear error, nothing half-written, billing resumes.

The store is capped (`store_limit_mb` → SQLite `max_page_count`), as on a small SD card. The
cycle that does not fit raises `DiskFull`, which says what to free; the chain, the book, the
rule states and the simulated meters' relays are exactly as before it; after the operator
frees space (here: a larger cap) the next cycle bills the energy of the failed one too.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from demo.site import DemoSite
from edge.runtime.audit import audit_store
from edge.runtime.boot import read_node_key
from edge.runtime.state import meter_key
from edge.site import load_site
from edge.store import DiskFull
from tests.edge.runtime.conftest import booted_at, demo

POLL = dt.timedelta(minutes=15)


def _limit(site: DemoSite, megabytes: int) -> None:
    text = site.site_toml.read_text()
    text = re.sub(r"\nstore_limit_mb = \d+", "", text)
    site.site_toml.write_text(text.replace("[site]\n", f"[site]\nstore_limit_mb = {megabytes}\n"))


@pytest.mark.slow  # runs a 30-meter site until its store is full
def test_a_full_store_fails_the_cycle_cleanly_and_billing_resumes(tmp_path: Path) -> None:
    site_files = demo(tmp_path, 30, tariff="flat")
    _limit(site_files, 1)
    site = load_site(site_files.site_toml)
    booted, clock = booted_at(site)
    runtime = booted.runtime
    store = runtime.store
    try:
        error = None
        for _ in range(400):
            seq, balances = store.chain.seq, store.book.balances()
            states = dict(runtime.meters)
            stored = {a: store.get_state(meter_key(a)) for a in states}
            try:
                runtime.run_cycle()
            except DiskFull as exc:
                error = exc
                break
            clock.advance(POLL)
        assert error is not None, "the store never filled up"
        message = str(error)
        assert str(site.settings.store_path) in message and "Free space" in message
        # Nothing of the failed cycle: chain, book, rule states as before it.
        assert store.chain.seq == seq
        assert store.book.balances() == balances
        assert runtime.meters == states
        assert {a: store.get_state(meter_key(a)) for a in states} == stored
        with store.transaction() as tx:  # the store is still usable (room for a small write)
            tx.set_state("probe", 1)
    finally:
        booted.close()

    _limit(site_files, 64)  # the operator frees space
    booted, clock = booted_at(load_site(site_files.site_toml), clock.true_now())
    try:
        report = booted.runtime.run_cycle()
        assert report.read == 30 and report.transfers > 0
    finally:
        booted.close()
    audit = audit_store(site, read_node_key(site.settings.node_key).public_key)
    assert audit.ok, audit.problem  # billed + unbilled = register delta: nothing lost


def test_the_simulated_meters_file_on_a_full_disk_is_a_disk_full_error(
    small_site: DemoSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    booted, _ = booted_at(load_site(small_site.site_toml))
    real_write = os.write

    def no_space(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        monkeypatch.setattr(os, "write", no_space)
        with pytest.raises(DiskFull, match=r"meters\.json"):
            booted.runtime.run_cycle()
        monkeypatch.setattr(os, "write", real_write)
        assert booted.runtime.run_cycle().read == 8
    finally:
        booted.close()
