"""`voltbook-edge run`: the runtime's main loop, scheduled jobs, signals and systemd.

Everything runs in the main thread (one writer for the store). The poll cycle starts on the
grid of the site's clock (`edge.runtime.grid`: with 900 s at :00, :15, :30, :45), however long a
cycle takes; the loop waits for the next point on the runtime's monotonic clock (so a system clock
jump cannot stall it for longer than one interval) and realigns to the site's time after every
cycle. A cycle that runs past the next point raises a `cycle_overrun` alarm with its duration,
and the next one starts at the first point after it ended. Each site block (`[[blocks]]`) has
a grid of its own interval: at its points between cycles it is a block round
(`Runtime.run_block_round`); at a point the cycle takes too, it is read with the billing read
(`Runtime.run_cycle(*blocks)`). A block round that runs past its next point starts again at the
first point after it, without an alarm (the cycle's overrun is what matters for billing).

The other periodic jobs run on a `schedule.Scheduler`, which counts from the end of a job,
which is good enough for them:

- a checkpoint: sign the chain's head if a cycle has not already, and a signed balance snapshot
  of the book there (`edge.runtime.retention`), which the next boot starts from (one at stop too);
- pruning: entries and readings the cloud acknowledged and older than `keep_synced_days`, old
  readings and events, then the file shrinks (`edge.runtime.retention.prune_synced`);
- once after boot, the full check of the chain in a thread of its own (the boot replayed only
  what follows the last snapshot); a problem it finds is an alarm;
- the systemd watchdog ping, at half of `WatchdogSec`, and after every cycle;
- the jobs others add (`add_job`): the metrics' copy of the store's figures (`edge/metrics.py`);
- with a `[cloud]` section, sync (`edge.sync.service`): every `tick_s` real seconds, and at
  once whenever the MQTT link brings something (the loop's nap wakes on it), the link's
  acknowledgements and commands are handled and the outbox's batches sent. On stop the
  last batches get a moment to go up, then the retained status says offline.

Between jobs the loop sleeps on an event that SIGTERM/SIGINT (and the MQTT link) set, so a stop
request is seen at once; a cycle in progress is always finished (its commit and its relay
commands), then the store is closed and the simulated meters saved. A full disk fails the
cycle, not the runtime: the error says what to free, nothing of the cycle was stored, and the
next cycle bills the same energy again once there is room. A corrupt store stops the runtime
(systemd's `Restart=always` then meets the boot-time integrity check, which names the damage).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, cast

import schedule

from edge.rules.decisions import Severity
from edge.runtime.boot import Booted
from edge.runtime.clock import SimulatedClock
from edge.runtime.cycle import CycleReport
from edge.runtime.events import RuntimeKind, runtime_event
from edge.runtime.grid import NextCycle, Overrun, plan_next
from edge.runtime.notify import Notifier
from edge.runtime.pace import CyclePace
from edge.runtime.retention import FullCheck, prune_synced, take_snapshot
from edge.store import DiskFull, StoreError
from edge.store.backup import BackupFailed, backup_store

if TYPE_CHECKING:
    from edge.sync.service import SyncService

log = logging.getLogger("edge.runtime")

MAX_NAP_S = 1.0  # the longest sleep between looking at the schedule
KEEP_RECENT = 1000  # cycle starts and overruns kept in memory
DUE_SLACK_S = 0.001  # a cycle this close to its grid point is due (float rounding of naps)


@dataclass(frozen=True, slots=True)
class RunLimits:
    until: dt.datetime | None = None  # stop once a cycle's time reaches this
    cycles: int | None = None  # stop after this many cycles


@dataclass(frozen=True, slots=True)
class RunSummary:
    cycles: int
    failed_cycles: int
    last: CycleReport | None
    reason: str


class Runner:
    """`nap(seconds)` waits that many real seconds (default: on the stop event); a test or a
    benchmark on a `ManualClock` passes one that advances the clock instead."""

    def __init__(
        self,
        booted: Booted,
        limits: RunLimits = RunLimits(),
        notifier: Notifier | None = None,
        *,
        nap: Callable[[float], object] | None = None,
    ) -> None:
        self.booted = booted
        self.runtime = booted.runtime
        self.limits = limits
        self.notifier = notifier or Notifier.from_environment()
        if booted.runtime.site.settings.watchdog:
            booted.runtime.progress = self.notifier.keepalive
        self.stop = threading.Event()
        self.stop_reason = ""
        self.cycles = 0
        self.failed = 0
        self.last: CycleReport | None = None
        # The latest cycles' start times (site time) and overruns, for tests and benchmarks.
        self.starts: deque[dt.datetime] = deque(maxlen=KEEP_RECENT)
        self.overruns: deque[Overrun] = deque(maxlen=KEEP_RECENT)
        self.next_due = 0.0  # monotonic (site) seconds: when the next cycle is due
        # The same for each site block: all due at once, read with the first cycle.
        self.block_due = {block.name: 0.0 for block in booted.runtime.site.settings.blocks}
        self.intervals = {b.name: b.interval for b in booted.runtime.site.settings.blocks}
        # What a nap waits on: a stop request, or (with sync) the MQTT link bringing something.
        self.wake = threading.Event()
        self.nap = nap or self._nap
        # What the metrics endpoint shows of the cycles (`edge/metrics.py`, `[metrics]`).
        self.pace = CyclePace(booted.runtime.site.settings.poll_interval.total_seconds())
        # More periodic jobs (real seconds, job), and jobs after every cycle, run in this
        # thread: `add_job`.
        self.jobs: list[tuple[float, Callable[[], object]]] = []
        self.full_check: FullCheck | None = None  # running in its thread, or not started
        self.after_cycle: list[Callable[[], object]] = []
        self.sync: SyncService | None = None
        cloud = booted.runtime.site.settings.cloud
        if cloud is not None:
            from edge.sync.service import SyncService  # paho only where sync is configured

            self.sync = SyncService(booted.runtime, cloud)
            self.sync.wake_on_events(self.wake)

    def real_seconds(self, site_time: dt.timedelta) -> float:
        clock = self.booted.clock
        if isinstance(clock, SimulatedClock):
            return clock.real_seconds(site_time)
        return site_time.total_seconds()

    def add_job(self, every_s: float, job: Callable[[], object]) -> None:
        """Run `job` after every cycle and every `every_s` real seconds between cycles, in the
        runtime's thread (the one that holds the store), from `run()` on."""
        self.jobs.append((every_s, job))
        self.after_cycle.append(job)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_reason = signal.Signals(signum).name
        self.stop.set()
        self.wake.set()

    def _plan(self, began: float, interval: dt.timedelta) -> tuple[NextCycle, float, dt.datetime]:
        """After a job that began at monotonic `began`: its next grid point, as a plan and as
        a monotonic time, and when (site time) the job started."""
        ended_mono = self.booted.clock.monotonic()
        # Aligned on the time the next cycle will be stamped with: the clock guard's judgement
        # (the system clock, or the cloud's, or the meters' while it is not plausible).
        verdict, _ = self.runtime.guard.judge()
        ended = verdict.now.astimezone(self.runtime.site.zone)
        started = ended - dt.timedelta(seconds=ended_mono - began)
        plan = plan_next(started, ended, interval)
        return plan, ended_mono + (plan.start - ended).total_seconds(), started

    def _due_blocks(self) -> list[str]:
        now = self.booted.clock.monotonic()
        return [name for name, due in self.block_due.items() if now >= due - DUE_SLACK_S]

    def _poll(self) -> None:
        """One cycle (with the blocks due now), then the next grid point to start at (an
        overrun reported) and each of those blocks' next point."""
        began = self.booted.clock.monotonic()
        blocks = self._due_blocks()
        report = self._cycle(blocks)
        plan, self.next_due, started = self._plan(began, self.runtime.site.settings.poll_interval)
        self.starts.append(started if report is None else report.now)
        self.pace.record(self.booted.clock.monotonic() - began, started,
                         failed=report is None, overrun=plan.overrun is not None)  # fmt: skip
        for job in self.after_cycle:
            job()
        if plan.overrun is not None:
            self._overrun(plan.overrun)
        for name in blocks:
            _, self.block_due[name], _ = self._plan(began, self.intervals[name])

    def _block_round(self, name: str) -> None:
        began = self.booted.clock.monotonic()
        try:
            self.runtime.run_block_round(name)
        except DiskFull as exc:
            log.error("block %s: what protection decided was not stored: %s", name, exc)
        _, self.block_due[name], _ = self._plan(began, self.intervals[name])

    def _overrun(self, overrun: Overrun) -> None:
        self.overruns.append(overrun)
        interval = self.runtime.site.settings.poll_interval
        event = runtime_event(
            self.runtime.site,
            overrun.ended,
            RuntimeKind.CYCLE_OVERRUN,
            f"the cycle started at {overrun.started:%H:%M:%S} took {overrun.duration} "
            f"(interval {interval}): {overrun.missed} start(s) missed, the next at "
            f"{overrun.next_start:%H:%M:%S}",
            alarm=Severity.WARNING,
            detail={
                "started": overrun.started.isoformat(),
                "duration_s": round(overrun.duration.total_seconds(), 3),
                "interval_s": interval.total_seconds(),
                "missed": overrun.missed,
                "next_start": overrun.next_start.isoformat(),
            },
        )
        try:
            with self.runtime.transaction() as tx:
                tx.add_events([event])
        except DiskFull as exc:
            log.error("cycle overrun not stored: %s", exc)

    def _cycle(self, blocks: list[str]) -> CycleReport | None:
        report: CycleReport | None = None
        try:
            report = self.runtime.run_cycle(*blocks)
        except DiskFull as exc:
            self.failed += 1
            log.error("cycle failed, nothing of it was stored: %s", exc)
            self.notifier.status(f"DISK FULL: {exc}")
        else:
            self.cycles += 1
            self.last = report
            self.notifier.status(report.summary())
            if self.limits.until is not None and report.now >= self.limits.until:
                self._finish(f"reached {self.limits.until.isoformat()}")
        if self.runtime.site.settings.watchdog:
            self.notifier.watchdog()
        attempts = self.cycles + self.failed  # a full disk must not make --cycles run forever
        if self.limits.cycles is not None and attempts >= self.limits.cycles:
            self._finish(f"{attempts} cycles done")
        return report

    def _finish(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop.set()
        self.wake.set()

    def _nap(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _checkpoint(self) -> None:
        try:
            if self.runtime.checkpoint():
                log.info("checkpoint signed at seq %d", self.runtime.store.chain.seq)
            self._snapshot()
        except DiskFull as exc:
            log.error("checkpoint not stored: %s", exc)

    def _snapshot(self) -> None:
        """A failure costs only a longer next boot: logged, never raised (it also runs at
        stop, where it must not hide why the runtime stopped)."""
        store = self.runtime.store
        try:
            if take_snapshot(store, self.runtime.key):
                log.info("balance snapshot signed at seq %d", store.chain.seq)
        except StoreError as exc:
            log.error("balance snapshot not stored: %s", exc)

    def _full_check_done(self) -> None:
        """Raise what the background full check found, once."""
        check = self.full_check
        if check is None or check.result() is None:
            return
        self.full_check = None
        if not check.result():
            return
        event = runtime_event(
            self.runtime.site,
            self.runtime.guard.last_known or self.booted.clock.system_now(),
            RuntimeKind.STORE_CHECK_FAILED,
            f"the full check of the store failed: {check.result()}",
            alarm=Severity.CRITICAL,
        )
        try:
            with self.runtime.transaction() as tx:
                tx.add_events([event])
        except DiskFull as exc:
            log.error("store check alarm not stored: %s", exc)

    def _backup(self) -> None:
        """Copy the store to the second medium; a failure is logged and tried at the next
        interval (the store itself is unaffected)."""
        directory = self.runtime.site.settings.backup_dir
        if directory is None:
            return
        try:
            copy = backup_store(self.runtime.store.path, directory)
        except BackupFailed as exc:
            log.error("%s", exc)
            return
        log.info("store copied to %s", copy)

    def _prune(self) -> None:
        now = self.runtime.guard.last_known
        if now is None:
            return
        settings = self.runtime.site.settings
        try:
            pruned = prune_synced(
                self.runtime.store,
                self.runtime.key,
                now,
                keep_synced=settings.keep_synced,
                keep_readings=settings.keep_readings,
                keep_events=settings.keep_events,
            )
        except DiskFull as exc:
            log.error("pruning failed: %s", exc)
            return
        if pruned.entries or pruned.readings or pruned.events:
            log.info(
                "pruned %d entries, %d readings and %d events; %d pages freed",
                pruned.entries,
                pruned.readings,
                pruned.events,
                pruned.pages,
            )

    def scheduler(self) -> schedule.Scheduler:
        settings = self.runtime.site.settings
        jobs = schedule.Scheduler()
        for every, job in (
            (self.real_seconds(settings.checkpoint_interval), self._checkpoint),
            (self.real_seconds(settings.prune_interval), self._prune),
            (self.real_seconds(METER_CLOCK_INTERVAL), self.runtime.check_meter_clocks),
            (FULL_CHECK_POLL_S, self._full_check_done),
        ):
            _every(jobs, every).do(job)
        if settings.backup_dir is not None:
            _every(jobs, self.real_seconds(settings.backup_interval)).do(self._backup)
        if self.sync is not None:
            _every(jobs, self.sync.settings.tick_s).do(self.sync.tick)
        for extra_every, extra in self.jobs:
            _every(jobs, extra_every).do(extra)
        interval = self.notifier.watchdog_interval
        if interval is not None and settings.watchdog:
            _every(jobs, interval).do(self.notifier.watchdog)
        return jobs

    def run(self) -> RunSummary:
        """Run until a signal or a limit; always closes what `booted` holds."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            site = self.runtime.site
            self.notifier.ready(f"node {site.settings.node}: {len(site.meters)} meters")
            log.info(
                "running site %s (node %s): %d meters on %d buses, a cycle every %s",
                site.settings.name or site.settings.path,
                site.settings.node,
                len(site.meters),
                len(site.buses),
                site.settings.poll_interval,
            )
            jobs = self.scheduler()
            if self.runtime.store.boot_start > self.runtime.store.anchor()[0]:
                self.full_check = FullCheck(self.runtime.store, self.runtime.key.public_key)
                self.full_check.start()
            if self.sync is not None:
                self.sync.start()
            self.runtime.check_meter_clocks()  # a second opinion on the clock before acting
            clock = self.booted.clock
            self._poll()  # at once: a restarted runtime catches up without waiting
            while not self.stop.is_set():
                if clock.monotonic() >= self.next_due - DUE_SLACK_S:
                    self._poll()
                    continue  # a limit may have been reached
                for name in self._due_blocks():
                    self._block_round(name)
                jobs.run_pending()
                if self.sync is not None and self.sync.arrived.is_set():
                    self.sync.tick()  # an ack or a command: handled now, not at the next tick
                idle = jobs.idle_seconds
                next_due = min((self.next_due, *self.block_due.values()))
                until_due = self.real_seconds(dt.timedelta(seconds=next_due - clock.monotonic()))
                nap = min(MAX_NAP_S, until_due, MAX_NAP_S if idle is None else idle)
                if nap > 0:
                    self.nap(nap)
            log.info("stopping (%s) after %d cycles", self.stop_reason or "stopped", self.cycles)
            self.notifier.stopping()
        finally:
            try:
                if self.sync is not None:
                    self.sync.stop(flush_s=FLUSH_S)
                self._snapshot()  # the next boot replays nothing
            finally:
                try:
                    self.booted.close()
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
        return RunSummary(self.cycles, self.failed, self.last, self.stop_reason)


METER_CLOCK_INTERVAL = dt.timedelta(hours=1)  # how often meters are asked for their clocks
FULL_CHECK_POLL_S = 5.0  # how often the runtime looks whether the full check has finished
FLUSH_S = 3.0  # on stop, how long sync may take to send what is left (real seconds)


def _every(jobs: schedule.Scheduler, seconds: float) -> schedule.Job:
    # `schedule` annotates the interval as int but takes fractions of a second, which a poll
    # interval divided by --speed needs (15 min at 3600× is a quarter of a second).
    job: schedule.Job = jobs.every(cast(int, seconds)).seconds
    return job
