"""Where the runtime's time comes from, and the clock guard around it.

The runtime never calls `datetime.now()` itself: it asks a `Clock` for the system time and a
monotonic count, and `ClockGuard` judges the system time against the last known time (persisted
in the store with every cycle) with `edge.rules.clock_check.judge_clock`. Three clocks:

- `SystemClock`: the box's clock (NTP when it has network) and `time.monotonic()`.
- `SimulatedClock`: for `voltbook-edge run --speed X` on simulated buses: simulated time is
  `start + X × elapsed real time`, where `start` is the time the simulated building last
  reached (persisted in the site directory), so a restarted run resumes where it stopped.
- `ManualClock`: moved by hand (tests, benchmarks, the demo): `advance()` moves time;
  `jump()` moves only the system clock, as a bad NTP answer or a dead RTC battery does, while
  the true time (what simulated meters follow) goes on.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edge.rules.clock_check import ClockPolicy, ClockVerdict, judge_clock
from ledger.transfers import TimeSource


class Clock(Protocol):
    source: TimeSource
    boot: str  # which run of the monotonic count (a reboot restarts it): same boot, same count

    def system_now(self) -> dt.datetime:
        """What the system clock says (aware); possibly wrong."""
        ...

    def monotonic(self) -> float:
        """Seconds of (simulated) time elapsed since an arbitrary origin; never jumps."""
        ...

    def true_now(self) -> dt.datetime:
        """The time simulated meters live in (a simulation's truth; the system time for real)."""
        ...


class SystemClock:
    source = TimeSource.NTP

    def __init__(self, zone: dt.tzinfo) -> None:
        self.zone = zone
        self.boot = _kernel_boot_id()

    def system_now(self) -> dt.datetime:
        return dt.datetime.now(self.zone)

    def monotonic(self) -> float:
        return time.monotonic()

    def true_now(self) -> dt.datetime:
        return self.system_now()


class SimulatedClock:
    """`start + speed × (real seconds since construction)`."""

    source = TimeSource.SIMULATED

    def __init__(self, start: dt.datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start = start
        self.speed = speed
        self._origin = time.monotonic()
        self.boot = uuid.uuid4().hex  # its count starts with it

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def system_now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.monotonic())

    def true_now(self) -> dt.datetime:
        return self.system_now()

    def real_seconds(self, simulated: dt.timedelta) -> float:
        """How long `simulated` time takes in real seconds."""
        return simulated.total_seconds() / self.speed


class ManualClock:
    """A clock a test moves: `advance` moves everything, `jump` only the system clock."""

    source = TimeSource.SIMULATED

    def __init__(self, start: dt.datetime) -> None:
        self.start = start
        self.elapsed = 0.0
        self.offset = dt.timedelta(0)  # how far the system clock is off the true time
        self.boot = uuid.uuid4().hex  # one "boot" per clock: a test reboots with a new one

    def advance(self, delta: dt.timedelta) -> None:
        self.elapsed += delta.total_seconds()

    def set(self, moment: dt.datetime) -> None:
        """Advance (never back) to the true time `moment`."""
        self.elapsed = max(self.elapsed, (moment - self.start).total_seconds())

    def jump(self, delta: dt.timedelta) -> None:
        self.offset += delta

    def monotonic(self) -> float:
        return self.elapsed

    def true_now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.elapsed)

    def system_now(self) -> dt.datetime:
        return self.true_now() + self.offset


def _kernel_boot_id() -> str:
    """Linux's id of this boot: `time.monotonic()` counts from the same origin in every process
    of one boot. Empty when unknown (then no monotonic count is carried across processes)."""
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        return ""


BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class Reference:
    """A trusted time (the cloud's, an installer's) and the monotonic count it was given at."""

    said: dt.datetime
    at: float
    source: TimeSource
    reason: str


@dataclass(slots=True)
class ClockGuard:
    """Judges each cycle's time against the last known time; remembers the monotonic count
    at which that time was known, so elapsed time can be checked within one run.

    The cloud's time (a signed `time` command, `cloud_time`) or an installer's (`voltbook-edge
    clock set`, `installer_time`) is trusted over the system clock from then on, carried
    forward by the monotonic count, until the system clock agrees with it again within the
    tolerance (NTP caught up): then the system clock is used as before.

    After a restart the time the box was off is unknown: `policy.boot_gap` is allowed on top
    of the elapsed time until a verdict is plausible (`judge_clock`'s `unaccounted`), so a
    clock far ahead of the last known time is held at boot, and one that comes back within
    that allowance releases the hold by itself.
    """

    clock: Clock
    zone: dt.tzinfo
    policy: ClockPolicy = field(default_factory=ClockPolicy)
    last_known: dt.datetime | None = None
    _known_at: float | None = None
    _meter_times: tuple[dt.datetime, ...] = ()  # the last meter clocks read (a second opinion)
    _meters_at: float = 0.0  # monotonic seconds when they were read
    _reference: Reference | None = None  # the cloud's or an installer's time
    _since_boot: bool = True  # no plausible verdict since this guard started: gap unknown

    def judge(self) -> tuple[ClockVerdict, float]:
        """The verdict for now, and the monotonic count it was taken at (for `known`)."""
        mono = self.clock.monotonic()
        elapsed = None if self._known_at is None else dt.timedelta(seconds=mono - self._known_at)
        system_now = self.clock.system_now().astimezone(self.zone)
        reference = self._reference
        trusted_now = None
        if reference is not None:
            trusted_now = (reference.said + dt.timedelta(seconds=mono - reference.at)).astimezone(
                self.zone
            )
            if abs(system_now - trusted_now) <= self.policy.tolerance:
                self._reference = reference = trusted_now = None  # the system clock agrees again
        if reference is not None and reference.source is not TimeSource.CLOUD:
            assert trusted_now is not None
            verdict = ClockVerdict(trusted_now, reference.source, True, reference.reason)
        else:
            verdict = judge_clock(
                system_now,
                self.last_known,
                elapsed,
                unaccounted=self.policy.boot_gap if self._since_boot else dt.timedelta(0),
                cloud_time=trusted_now,
                meter_times=tuple(
                    t + dt.timedelta(seconds=mono - self._meters_at) for t in self._meter_times
                ),
                policy=self.policy,
                system_source=self.clock.source,
            )
        if verdict.plausible:
            self._since_boot = False  # time is established: from now on elapsed time is all
        return verdict, mono

    def cloud_time(self, moment: dt.datetime) -> None:
        """The cloud says it is `moment` now (from a verified, signed command)."""
        self._reference = Reference(
            moment, self.clock.monotonic(), TimeSource.CLOUD, "time from the cloud"
        )

    def installer_time(self, moment: dt.datetime, at: float, note: str) -> None:
        """An installer said it was `moment` at monotonic count `at` (`voltbook-edge clock
        set`, this boot). Stamped `persisted`: the ledger's time sources have no installer."""
        reason = f"installer's time (clock set: {note})"
        self._reference = Reference(moment, at, TimeSource.PERSISTED, reason)

    @property
    def trusting_cloud(self) -> bool:
        """Whether the cloud's time currently overrides the system clock."""
        return self._reference is not None and self._reference.source is TimeSource.CLOUD

    def meters_say(self, times: tuple[dt.datetime, ...]) -> None:
        """Meter clocks just read; later judgements advance them by the monotonic time since."""
        self._meter_times, self._meters_at = times, self.clock.monotonic()

    def known(self, moment: dt.datetime, mono: float) -> None:
        """`moment` is durable as the last known time (call after the commit)."""
        self.last_known = moment
        self._known_at = mono
