"""Time you can trust (issue 12, item 3): a restart on a clock years ahead moves no money.

An installer found a site with no meter clocks restarted with the system clock at 2038: it
expired December's subsidy and issued 2038-01's, and back on the right clock it stayed
`CLOCK HELD` for ever. Here the real runtime boots on a `ManualClock` whose system clock is
twelve years ahead (the simulated meters follow the true time; their clocks are never read,
as on a site without meter clocks): the hold must start at boot, with an alarm, and move no
money but consumption; the cloud's signed `time`, an installer's `clock set` or a clock back
on a plausible time releases it, and the right month's actions then happen exactly once.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.site import DemoSite, write_demo_site
from edge.runtime.boot import Booted, boot
from edge.runtime.clock import ManualClock
from edge.runtime.events import RuntimeKind
from edge.runtime.trusted_time import set_installer_time
from edge.site import Site, load_site
from edge.store import Category, Store
from edge.sync.commands import CommandDesk
from ledger.chain import NodeKey
from ledger.invariants import ledger_violations
from ledger.signed import Command, CommandKind, trusted
from ledger.transfers import Code, TimeSource
from tests.edge.runtime.conftest import ZONE, booted_at, cli, transfers_of

pytestmark = pytest.mark.slow  # a demo site billed across a month boundary, restarted

HOUR = dt.timedelta(hours=1)
BEFORE = dt.datetime(2026, 11, 30, 20, 0, tzinfo=ZONE)  # last run: end of November
AHEAD = dt.timedelta(days=365 * 12)  # the restart's system clock: 2038
CLOUD_KEY = NodeKey.from_seed(bytes(range(32)))
_ids = itertools.count(1)


@pytest.fixture
def site(small_site: DemoSite) -> Iterator[Site]:
    """A site that ran until 30 November 23:00 on a good clock (November's subsidy issued)."""
    loaded = load_site(small_site.site_toml)
    booted, clock = booted_at(loaded, BEFORE)
    try:
        _run(booted, clock, 3)
    finally:
        booted.close()
    yield loaded


def _run(booted: Booted, clock: ManualClock, cycles: int) -> list[bool]:
    plausible = []
    for _ in range(cycles):
        plausible.append(booted.runtime.run_cycle().plausible)
        clock.advance(HOUR)
    return plausible


def _restart_ahead(site: Site) -> tuple[Booted, ManualClock]:
    """The box was off an hour; it comes back with its system clock twelve years ahead."""
    clock = ManualClock(BEFORE + 4 * HOUR)
    clock.jump(AHEAD)
    return boot(site, clock=clock), clock


def _issued(store: Store) -> Counter[str]:
    return Counter(
        str(t.refs["period"]) for t in transfers_of(store) if t.code is Code.SUBSIDY_ISSUE
    )


def _money_codes(store: Store, after_seq: int) -> set[Code]:
    return {t.code for t in transfers_of(store)[after_seq:]}


def _kinds(store: Store) -> Counter[str]:
    return Counter(e.event.kind for e in store.events())


def _held_at_boot(booted: Booted, clock: ManualClock) -> int:
    """Boot ahead: held from the first cycle, an alarm, nothing but consumption booked."""
    store = booted.runtime.store
    seq = store.chain.seq
    accounts = len(booted.runtime.site.accounts)
    assert _issued(store) == {"2026-11": accounts}
    assert not any(_run(booted, clock, 4)), "a boot 12 years ahead was taken"  # into December
    assert _money_codes(store, seq) <= {Code.CONSUME}
    assert Code.CONSUME in _money_codes(store, seq), "consumption must be billed while held"
    assert _issued(store) == {"2026-11": accounts}
    alarms = [
        e
        for e in store.events(category=Category.ALARM)
        if e.event.kind == RuntimeKind.CLOCK_IMPLAUSIBLE.value
    ]
    assert len(alarms) == 1
    assert "at boot" in str(alarms[0].event.detail["message"])
    assert all(t.time < "2026-12-01T03" for t in transfers_of(store)[seq:])  # not 2038
    return accounts


def _released_once(booted: Booted, clock: ManualClock, accounts: int) -> None:
    """After the release: December's subsidy once, on the true day, and never again."""
    store = booted.runtime.store
    assert all(_run(booted, clock, 3))
    assert _issued(store) == {"2026-11": accounts, "2026-12": accounts}
    december = [t for t in transfers_of(store) if t.code is Code.SUBSIDY_ISSUE][-1]
    assert december.time.startswith("2026-12-01")
    assert not [t for t in transfers_of(store) if "2038" in t.time]
    expired = Counter(
        str(t.refs.get("period")) for t in transfers_of(store) if t.code is Code.SUBSIDY_EXPIRE
    )
    assert all(n <= accounts for n in expired.values())
    assert "2038-01" not in expired and "2037-12" not in expired
    assert _kinds(store)[RuntimeKind.CLOCK_PLAUSIBLE.value] == 1
    assert ledger_violations(transfers_of(store), store.book.balances()) == []


def test_a_boot_years_ahead_is_held_until_the_clouds_signed_time(site: Site) -> None:
    booted, clock = _restart_ahead(site)
    try:
        accounts = _held_at_boot(booted, clock)
        runtime = booted.runtime
        issued = clock.true_now()
        command = Command(
            id=f"{next(_ids):032x}",
            seq=1,
            target=runtime.store.node,
            kind=CommandKind.TIME,
            issued=issued,
            expires=issued + dt.timedelta(days=1),
        )
        desk = CommandDesk(runtime, trusted(CLOUD_KEY.public_key))
        handled = desk.handle(command.sign(CLOUD_KEY))
        assert handled.outcome == "applied", handled.message
        report = runtime.run_cycle()
        assert report.plausible and report.clock_reason == "time from the cloud"
        assert abs(report.now - clock.true_now()) < dt.timedelta(seconds=1)
        clock.advance(HOUR)
        _released_once(booted, clock, accounts)
        sources = {t.time_source for t in transfers_of(runtime.store)[-3:]}
        assert sources == {TimeSource.CLOUD}
    finally:
        booted.close()


def test_a_boot_years_ahead_is_released_by_an_installers_clock_set(site: Site) -> None:
    booted, clock = _restart_ahead(site)
    try:
        accounts = _held_at_boot(booted, clock)
    finally:
        booted.close()
    record = set_installer_time(site, clock.true_now(), "checked against my phone", clock)
    assert record.system - record.time > dt.timedelta(days=365 * 11)
    booted = boot(site, clock=clock)  # the runtime started again, in the same boot of the box
    try:
        store = booted.runtime.store
        events = [e for e in store.events() if e.event.kind == RuntimeKind.CLOCK_SET.value]
        assert len(events) == 1
        assert events[0].event.detail["note"] == "checked against my phone"
        report = booted.runtime.run_cycle()
        assert report.plausible and "installer" in report.clock_reason
        assert abs(report.now - clock.true_now()) < dt.timedelta(seconds=1)
        clock.advance(HOUR)
        _released_once(booted, clock, accounts)
    finally:
        booted.close()


def test_a_held_clock_that_comes_back_to_a_plausible_time_releases_itself(site: Site) -> None:
    booted, clock = _restart_ahead(site)
    try:
        accounts = _held_at_boot(booted, clock)
        clock.jump(-AHEAD)  # NTP answers at last
        _released_once(booted, clock, accounts)
    finally:
        booted.close()
    # And it stays released across a restart on the good clock.
    booted = boot(site, clock=ManualClock(clock.true_now() + HOUR))
    try:
        assert booted.runtime.run_cycle().plausible
    finally:
        booted.close()


def test_clock_set_is_refused_while_the_runtime_holds_the_store(site: Site) -> None:
    booted, _ = _restart_ahead(site)
    toml = str(site.settings.path)
    args = ("clock", "set", "--config", toml, "--time", "2026-12-01T02:00+08:00", "--note", "x")
    try:
        busy = cli(*args)
        assert busy.returncode == 2
        assert "stop `voltbook-edge run` first" in busy.stderr
    finally:
        booted.close()
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert '"time": "2026-12-01T02:00:00+08:00"' in done.stdout
    naive = cli("clock", "set", "--config", toml, "--time", "2026-12-01T02:00", "--note", "x")
    assert naive.returncode == 2 and "UTC offset" in naive.stderr


def test_a_utc_start_is_that_instant_on_a_shanghai_site(tmp_path: Path) -> None:
    """`voltbook-demo site --start 2026-11-01T00:00+00:00` is 08:00 in Asia/Shanghai: the
    simulated meters' clocks say 08:00, and the first boot on them is not shifted by 8 h."""
    start = dt.datetime(2026, 11, 1, 0, 0, tzinfo=dt.UTC)
    demo_site = write_demo_site(tmp_path / "site", 8, tariff="flat", start=start)
    site = load_site(demo_site.site_toml)
    assert site.simulation is not None and site.simulation.start == start
    booted, _ = booted_at(site, start)
    try:
        assert booted.runtime.check_meter_clocks() >= 3
        report = booted.runtime.run_cycle()
        assert report.plausible
        assert abs(report.now - start) < dt.timedelta(minutes=5), report.now
        assert report.now.utcoffset() == dt.timedelta(hours=8)
    finally:
        booted.close()


def test_meter_clocks_in_another_zone_at_first_boot_raise_an_alarm(small_site: DemoSite) -> None:
    """First boot: the meters' clocks are 8 h off the system clock. That is a zone mix-up,
    not a reason to shift the site silently: an alarm, and the cycle is held."""
    booted, clock = booted_at(load_site(small_site.site_toml))
    clock.jump(dt.timedelta(hours=8))
    try:
        assert booted.runtime.check_meter_clocks() >= 3
        seq = booted.runtime.store.chain.seq
        report = booted.runtime.run_cycle()
        assert not report.plausible
        assert "time zone" in report.clock_reason
        assert _money_codes(booted.runtime.store, seq) <= {Code.CONSUME}
        alarms = booted.runtime.store.events(category=Category.ALARM)
        assert [e for e in alarms if e.event.kind == RuntimeKind.CLOCK_IMPLAUSIBLE.value]
    finally:
        booted.close()
