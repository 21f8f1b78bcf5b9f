"""How the poll cycles keep their interval, as the runner sees them: counts, the last cycle's
duration and a histogram of durations, kept in memory for the metrics endpoint (`edge/metrics.py`).

Plain data the runner fills (`CyclePace.record`) and the metrics thread reads; no Prometheus
here. Durations are in the site's seconds, the interval's unit (the same as real seconds but
under a simulated clock's `--speed`). `BUCKETS` are fixed, not fractions of the interval, so
histograms of boxes with different intervals add up.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

# Upper bounds (seconds) of the duration histogram; a cycle past the last is only in +Inf.
BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class PaceView:
    """A consistent copy of `CyclePace` at one moment."""

    interval_s: float
    cycles: int
    failed: int
    overruns: int
    last_duration_s: float | None
    last_started: dt.datetime | None
    bucket_counts: tuple[int, ...]  # cumulative, one per `BUCKETS` bound
    duration_sum_s: float


@dataclass
class CyclePace:
    interval_s: float
    cycles: int = 0  # cycles that ran (a failed one, a full disk, is counted in `failed`)
    failed: int = 0
    overruns: int = 0  # cycles that ran past the next grid point
    last_duration_s: float | None = None
    last_started: dt.datetime | None = None
    _bucket_counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    _duration_sum_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self, duration_s: float, started: dt.datetime, *, failed: bool, overrun: bool
    ) -> None:
        with self._lock:
            if failed:
                self.failed += 1
            else:
                self.cycles += 1
            self.overruns += int(overrun)
            self.last_duration_s = duration_s
            self.last_started = started
            self._duration_sum_s += duration_s
            for number, bound in enumerate(BUCKETS):
                if duration_s <= bound:
                    self._bucket_counts[number] += 1

    def view(self) -> PaceView:
        with self._lock:
            return PaceView(
                self.interval_s,
                self.cycles,
                self.failed,
                self.overruns,
                self.last_duration_s,
                self.last_started,
                tuple(self._bucket_counts),
                self._duration_sum_s,
            )
