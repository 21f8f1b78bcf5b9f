"""The concentrator's Prometheus metrics: `voltbook-edge run` serves them on `[metrics] listen`
of site.toml, and only then (off by default).

The endpoint (`prometheus_client`'s own HTTP server on its thread, `GET /metrics`) has no
login, like the status page: bind it where only Prometheus reaches (loopback with a local
agent, or the site's management LAN). It never touches the store: the runtime's own thread
copies what it shows into a `BoxSnapshot` every `REFRESH_S` (a scheduled job of the runner,
`EdgeMetrics.refresh`), between cycles, with the store it holds, and the server reads that
copy and the runner's `CyclePace`. So a scrape costs the runtime nothing and can never hold
its store's lock; the figures are at most `REFRESH_S` old.

    voltbook_edge_poll_interval_seconds            the site's poll interval
    voltbook_edge_cycle_duration_seconds           histogram of cycle durations
    voltbook_edge_cycle_last_duration_seconds      the last cycle's
    voltbook_edge_cycle_last_start_timestamp_seconds   when it started (site time)
    voltbook_edge_cycles_total, _cycles_failed_total, _cycle_overruns_total
    voltbook_edge_bus_reads{bus}, voltbook_edge_bus_reads_attempted{bus}   meters read / tried
                                                   in the status window (`edge.status.WINDOW`)
    voltbook_edge_bus_read_success_ratio{bus}      their ratio (absent before any round)
    voltbook_edge_bus_read_success_low{bus}        1 while the edge's own alarm is raised
    voltbook_edge_bus_down{bus}                    1 while the bus's port is down
    voltbook_edge_read_success_min                 the site's alarm threshold
    voltbook_edge_outbox_items                     outbox items not yet pruned (the backlog)
    voltbook_edge_chain_seq, voltbook_edge_chain_acknowledged_seq   the chain and the cloud's ack
    voltbook_edge_clock_held                       1 while time-driven actions are held (the
                                                   clock is implausible)
    voltbook_edge_clock_last_known_timestamp_seconds   the last trusted time
    voltbook_edge_store_bytes                      the store's files (database, WAL, shared memory)
    voltbook_edge_store_limit_bytes                `store_limit_mb` (absent without one)
    voltbook_edge_snapshot_age_seconds             how old the copy served is
    voltbook_edge_store_readable                   0 when the last refresh could not read the store

Every sample of a box carries no node label: Prometheus' target labels say which box it is.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edge.runtime.pace import BUCKETS, CyclePace
from edge.runtime.state import CLOCK_KEY, RAISED_KEY, ClockState, RaisedAlarms
from edge.runtime.view import stored_state
from edge.site.model import Site
from edge.status import read_rounds, window_start
from edge.store import Store, StoreError

log = logging.getLogger(__name__)

REFRESH_S = 10.0  # how often the runtime's thread copies the store's figures


@dataclass(frozen=True, slots=True)
class BusFigures:
    reads: int
    attempted: int
    down: bool
    low: bool


@dataclass(frozen=True, slots=True)
class BoxSnapshot:
    """What the store said at `taken` (monotonic seconds)."""

    taken: float
    chain_seq: int
    acknowledged_seq: int
    outbox: int
    clock_held: bool
    clock_last_known: dt.datetime | None
    buses: Mapping[str, BusFigures]
    store_bytes: int


def store_bytes(site: Site) -> int:
    """The store's size on the card: the database and its WAL and shared-memory files."""
    path = site.settings.store_path
    total = 0
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            total += name.stat().st_size
        except FileNotFoundError:
            continue
    return total


def take_snapshot(site: Site, store: Store) -> BoxSnapshot:
    """The figures of `store`, read in the thread that holds it."""
    clock: ClockState = stored_state(store, CLOCK_KEY, ClockState, ClockState())
    raised: RaisedAlarms = stored_state(store, RAISED_KEY, RaisedAlarms, RaisedAlarms())
    _, tried, read = read_rounds(store, window_start(clock))
    buses = {
        bus.name: BusFigures(
            reads=read.get(bus.name, 0),
            attempted=tried.get(bus.name, 0),
            down=bus.name in raised.buses_down,
            low=bus.name in raised.low_read_buses,
        )
        for bus in site.buses
    }
    acknowledged, _ = store.acknowledged()
    return BoxSnapshot(
        taken=time.monotonic(),
        chain_seq=store.chain.seq,
        acknowledged_seq=acknowledged,
        outbox=store.outbox_size(),
        clock_held=clock.held_since is not None,
        clock_last_known=clock.last_known,
        buses=buses,
        store_bytes=store_bytes(site),
    )


@dataclass(eq=False)  # hashable by identity: the registry keys its collectors
class EdgeMetrics(Collector):
    """The collector: the last snapshot and the runner's pace, turned into metrics at scrape."""

    site: Site
    pace: CyclePace
    snapshot: BoxSnapshot | None = None
    readable: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, store: Store) -> None:
        """Copy the store's figures (the runtime's thread; a store error is logged, never
        raised: the metrics must not stop the billing)."""
        try:
            snapshot = take_snapshot(self.site, store)
        except (StoreError, OSError) as exc:
            log.warning("metrics: the store could not be read: %s", exc)
            with self._lock:
                self.readable = False
            return
        with self._lock:
            self.snapshot, self.readable = snapshot, True

    def collect(self) -> Iterator[Metric]:
        yield from self._cycles()
        with self._lock:
            snapshot, readable = self.snapshot, self.readable
        yield _gauge("voltbook_edge_store_readable",
                     "0 when the last refresh could not read the store", int(readable))  # fmt: skip
        yield _gauge("voltbook_edge_read_success_min", "the site's read success alarm threshold",
                     self.site.settings.read_success_min)  # fmt: skip
        limit = self.site.settings.store_limit_bytes
        if limit is not None:
            yield _gauge("voltbook_edge_store_limit_bytes", "the store's size cap", limit)
        if snapshot is not None:
            yield from _box(snapshot)

    def _cycles(self) -> Iterator[Metric]:
        pace = self.pace.view()
        yield _gauge("voltbook_edge_poll_interval_seconds", "the site's poll interval",
                     pace.interval_s)  # fmt: skip
        histogram = HistogramMetricFamily(
            "voltbook_edge_cycle_duration_seconds", "how long poll cycles took (site seconds)"
        )
        runs = pace.cycles + pace.failed
        histogram.add_metric(
            [],
            [*((repr(b), c) for b, c in zip(BUCKETS, pace.bucket_counts, strict=True)),
             ("+Inf", runs)],
            pace.duration_sum_s,
        )  # fmt: skip
        yield histogram
        for name, text, count in (
            ("voltbook_edge_cycles", "poll cycles done", pace.cycles),
            ("voltbook_edge_cycles_failed", "poll cycles that stored nothing (disk full)",
             pace.failed),
            ("voltbook_edge_cycle_overruns", "cycles that ran past the next start", pace.overruns),
        ):  # fmt: skip
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], count)
            yield counter
        if pace.last_duration_s is not None:
            yield _gauge("voltbook_edge_cycle_last_duration_seconds",
                         "how long the last cycle took", pace.last_duration_s)  # fmt: skip
        if pace.last_started is not None:
            yield _gauge("voltbook_edge_cycle_last_start_timestamp_seconds",
                         "when the last cycle started", pace.last_started.timestamp())  # fmt: skip


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _box(snapshot: BoxSnapshot) -> Iterator[Metric]:
    reads = GaugeMetricFamily("voltbook_edge_bus_reads", "meters read in the window",
                              labels=["bus"])  # fmt: skip
    tried = GaugeMetricFamily("voltbook_edge_bus_reads_attempted", "meters tried in the window",
                              labels=["bus"])  # fmt: skip
    ratio = GaugeMetricFamily("voltbook_edge_bus_read_success_ratio",
                              "meters read / tried in the window", labels=["bus"])  # fmt: skip
    low = GaugeMetricFamily("voltbook_edge_bus_read_success_low",
                            "1 while the read success alarm is raised", labels=["bus"])  # fmt: skip
    down = GaugeMetricFamily("voltbook_edge_bus_down", "1 while the bus's port is down",
                             labels=["bus"])  # fmt: skip
    for name, bus in sorted(snapshot.buses.items()):
        reads.add_metric([name], bus.reads)
        tried.add_metric([name], bus.attempted)
        if bus.attempted:
            ratio.add_metric([name], bus.reads / bus.attempted)
        low.add_metric([name], int(bus.low))
        down.add_metric([name], int(bus.down))
    yield from (reads, tried, ratio, low, down)
    yield _gauge("voltbook_edge_outbox_items", "outbox items not yet pruned", snapshot.outbox)
    yield _gauge("voltbook_edge_chain_seq", "the chain's head seq", snapshot.chain_seq)
    yield _gauge("voltbook_edge_chain_acknowledged_seq", "the seq the cloud acknowledged",
                 snapshot.acknowledged_seq)  # fmt: skip
    yield _gauge("voltbook_edge_clock_held", "1 while time-driven actions are held",
                 int(snapshot.clock_held))  # fmt: skip
    if snapshot.clock_last_known is not None:
        yield _gauge("voltbook_edge_clock_last_known_timestamp_seconds", "the last trusted time",
                     snapshot.clock_last_known.timestamp())  # fmt: skip
    yield _gauge("voltbook_edge_store_bytes", "the store's files on the card",
                 snapshot.store_bytes)  # fmt: skip
    yield _gauge("voltbook_edge_snapshot_age_seconds", "how old these figures are",
                 max(0.0, time.monotonic() - snapshot.taken))  # fmt: skip


@dataclass
class MetricsServer:
    """The endpoint, serving `metrics` until `stop()`."""

    metrics: EdgeMetrics
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(metrics: EdgeMetrics, host: str, port: int) -> MetricsServer:
    """Serve `metrics` on `host`:`port` (0: any free port); OSError if it cannot listen."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(metrics, server, thread)
