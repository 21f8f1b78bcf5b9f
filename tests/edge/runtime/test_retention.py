"""The runtime's snapshots, pruning of what the cloud acknowledged, and the background full
check, on the demo site billed by the real runtime (issue 18, item 3)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable

from edge.runtime.audit import audit_store
from edge.runtime.boot import Booted, boot
from edge.runtime.clock import ManualClock
from edge.runtime.events import RuntimeKind
from edge.runtime.notify import Notifier
from edge.runtime.retention import FullCheck, prune_synced, take_snapshot
from edge.runtime.runner import RunLimits, Runner
from edge.site import load_site
from edge.store import Category, Store
from ledger.encoding import decode_transfer
from tests.edge.runtime.conftest import DemoSite, cycles
from tests.edge.store.conftest import with_amount

POLL = dt.timedelta(minutes=15)
DAY = dt.timedelta(days=1)


def _napper(clock: ManualClock) -> Callable[[float], None]:
    def nap(seconds: float) -> None:
        clock.advance(dt.timedelta(seconds=seconds))

    return nap


def _acknowledge_all(booted: Booted) -> None:
    """What the sync does on a verified cloud ack of everything sent."""
    store = booted.runtime.store
    with store.transaction() as tx:
        tx.acknowledge(store.chain.seq, store.chain.head)
        tx.prune_outbox(2**62)


def _prune(booted: Booted, now: dt.datetime) -> object:
    settings = booted.runtime.site.settings
    return prune_synced(
        booted.runtime.store,
        booted.runtime.key,
        now,
        keep_synced=DAY,
        keep_readings=settings.keep_readings,
        keep_events=settings.keep_events,
    )


def test_what_the_cloud_acknowledged_leaves_and_the_books_stay(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    assert site.simulation is not None and site.simulation.start is not None
    clock = ManualClock(site.simulation.start)
    booted = boot(site, clock=clock)
    try:
        cycles(booted, clock, 8, POLL)
        store = booted.runtime.store
        nothing = _prune(booted, clock.true_now() + 3 * DAY)  # nothing acknowledged yet
        assert (nothing.entries, nothing.readings) == (0, 0)  # type: ignore[attr-defined]
        _acknowledge_all(booted)
        acked = store.chain.seq
        cycles(booted, clock, 2, POLL)  # not acknowledged: these stay
        balances = dict(store.book.balances())
        readings = len(store.readings())
        pruned = _prune(booted, clock.true_now() + 3 * DAY)
        assert pruned.entries == acked  # type: ignore[attr-defined]
        assert 0 < pruned.readings < readings  # type: ignore[attr-defined]
        assert store.anchor()[0] == acked
        assert dict(store.book.balances()) == balances
        assert take_snapshot(store, booted.runtime.key)
        assert not take_snapshot(store, booted.runtime.key)  # already at the head
        head = store.chain.seq
    finally:
        booted.close()
    booted = boot(load_site(small_site.site_toml), clock=clock)
    try:
        store = booted.runtime.store
        assert store.boot_start == head
        assert dict(store.book.balances()) == balances
        cycles(booted, clock, 2, POLL)  # billing goes on from the snapshot
    finally:
        booted.close()
    audit = audit_store(site, booted.runtime.key.public_key)
    assert audit.ok, audit.problem
    assert audit.summary["pruned_through"] == acked
    assert "charges_never_drift" in audit.summary["left_to_the_cloud"]


def test_the_runner_snapshots_at_stop_and_the_full_check_alarms(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    assert site.simulation is not None and site.simulation.start is not None
    clock = ManualClock(site.simulation.start)
    booted = boot(site, clock=clock)
    Runner(booted, RunLimits(cycles=3), Notifier(None, None), nap=_napper(clock)).run()
    with Store.open_readonly(site.settings.store_path) as store:
        head = store.chain.seq
    conn = sqlite3.connect(site.settings.store_path)
    with conn:
        assert conn.execute("SELECT max(seq) FROM snapshots").fetchone()[0] == head
        # A row edited before the snapshot: the boot (from the snapshot) cannot see it, the
        # full check in the background does.
        body = conn.execute("SELECT body FROM ledger WHERE seq = 1").fetchone()[0]
        forged = with_amount(body, decode_transfer(body).amount + 1)
        assert forged != body
        conn.execute("UPDATE ledger SET body = ? WHERE seq = 1", (forged,))
    conn.close()
    booted = boot(site, clock=clock)
    assert booted.runtime.store.boot_start == head
    runner = Runner(booted, RunLimits(cycles=1), Notifier(None, None), nap=_napper(clock))
    check = FullCheck(booted.runtime.store, booted.runtime.key.public_key)
    check.start()
    check.join(30)
    assert check.result() and "seq 1" in str(check.result())
    runner.full_check = check
    runner._full_check_done()
    alarms = booted.runtime.store.events(category=Category.ALARM)
    assert [a.event.kind for a in alarms][-1] == RuntimeKind.STORE_CHECK_FAILED.value
    booted.close()
