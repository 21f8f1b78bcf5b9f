"""The concentrator's Prometheus endpoint (`[metrics] listen`, `edge/metrics.py`): off by default;
when on, every figure is what the store and the runner say, served while the runtime runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from demo.sim.direct_bus import DirectBus
from demo.site import DemoSite
from edge.cli import main
from edge.cli_runtime import _serve_metrics
from edge.metrics import REFRESH_S, EdgeMetrics, serve_metrics
from edge.runtime.cycle import CycleReport
from edge.runtime.notify import Notifier
from edge.runtime.runner import RunLimits, Runner
from edge.runtime.state import CLOCK_KEY, ClockState
from edge.runtime.view import stored_state
from edge.site import SiteConfigError, load_site
from edge.status import read_rounds, window_start
from edge.store import Store
from tests.cloud.metrics_scrape import Samples, labelled, parse, value
from tests.edge.runtime.conftest import ROOT, booted_at, cli_command

QUARTER = dt.timedelta(minutes=15)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        return parse(answer.read().decode())


def with_metrics(small_site: DemoSite, port: int) -> Path:
    toml = small_site.site_toml
    toml.write_text(toml.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    return toml


def test_figures_are_what_the_store_and_the_runner_say(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    booted, clock = booted_at(site)
    bus = booted.runtime.buses["rs485-1"]
    assert isinstance(bus, DirectBus)
    bus.detach(site.meters[0].address)  # one meter of eight never answers
    real_cycle = booted.runtime.run_cycle
    took = iter((dt.timedelta(minutes=2), dt.timedelta(minutes=20), dt.timedelta(minutes=3)))

    def slow_cycle(*blocks: str) -> CycleReport:
        report = real_cycle(*blocks)
        clock.advance(next(took))  # the second cycle runs past the next quarter: an overrun
        return report

    booted.runtime.run_cycle = slow_cycle  # type: ignore[method-assign]

    def nap(seconds: float) -> None:
        clock.advance(dt.timedelta(seconds=seconds))

    runner = Runner(booted, RunLimits(cycles=3), Notifier(None, None), nap=nap)
    metrics = EdgeMetrics(site, runner.pace)
    runner.add_job(REFRESH_S, lambda: metrics.refresh(booted.runtime.store))  # as `run` does
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        assert value(scrape(server.port), "voltbook_edge_cycles_total") == 0
        runner.run()
        samples = scrape(server.port)
    finally:
        server.stop()
    assert value(samples, "voltbook_edge_poll_interval_seconds") == 900
    assert value(samples, "voltbook_edge_cycles_total") == 3
    assert value(samples, "voltbook_edge_cycle_overruns_total") == 1
    assert value(samples, "voltbook_edge_cycles_failed_total") == 0
    assert value(samples, "voltbook_edge_cycle_duration_seconds_count") == 3
    assert value(samples, "voltbook_edge_cycle_duration_seconds_bucket", le="120.0") == 1
    assert value(samples, "voltbook_edge_cycle_duration_seconds_bucket", le="300.0") == 2
    assert value(samples, "voltbook_edge_cycle_duration_seconds_bucket", le="1800.0") == 3
    assert value(samples, "voltbook_edge_cycle_last_duration_seconds") == 180
    assert value(samples, "voltbook_edge_cycle_last_start_timestamp_seconds") == (
        runner.starts[-1].timestamp()
    )
    # Refreshed after every cycle, in the runtime's thread: the third cycle's round is in.
    assert value(samples, "voltbook_edge_bus_reads_attempted", bus="rs485-1") == 24
    # Every figure of the store, against a fresh read of it (closing may have added a
    # checkpoint: the copy is refreshed from that read).
    with Store.open_readonly(site.settings.store_path) as store:
        metrics.refresh(store)
        clock_state: ClockState = stored_state(store, CLOCK_KEY, ClockState, ClockState())
        rounds, tried, read = read_rounds(store, window_start(clock_state))
        chain_seq, outbox = store.chain.seq, store.outbox_size()
    samples = parse_collected(metrics)
    assert rounds == 3 and (read["rs485-1"], tried["rs485-1"]) == (21, 24)
    assert labelled(samples, "voltbook_edge_bus_reads", "bus") == {"rs485-1": 21}
    assert labelled(samples, "voltbook_edge_bus_reads_attempted", "bus") == {"rs485-1": 24}
    assert value(samples, "voltbook_edge_bus_read_success_ratio", bus="rs485-1") == 21 / 24
    assert value(samples, "voltbook_edge_bus_read_success_low", bus="rs485-1") == 1  # < 0.9
    assert value(samples, "voltbook_edge_bus_down", bus="rs485-1") == 0
    assert value(samples, "voltbook_edge_read_success_min") == site.settings.read_success_min
    assert value(samples, "voltbook_edge_outbox_items") == outbox > 0
    assert value(samples, "voltbook_edge_chain_seq") == chain_seq > 0
    assert value(samples, "voltbook_edge_chain_acknowledged_seq") == 0  # an offline site
    assert value(samples, "voltbook_edge_clock_held") == 0
    assert clock_state.last_known is not None
    assert value(samples, "voltbook_edge_clock_last_known_timestamp_seconds") == (
        clock_state.last_known.timestamp()
    )
    on_card = sum(p.stat().st_size for p in site.settings.store_path.parent.glob("edge.sqlite*"))
    assert value(samples, "voltbook_edge_store_bytes") == on_card > 0
    assert value(samples, "voltbook_edge_store_readable") == 1


def parse_collected(metrics: EdgeMetrics) -> Samples:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return parse(generate_latest(registry).decode())


def test_a_store_that_cannot_be_read_is_reported_not_raised(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    booted, _clock = booted_at(site)
    runner = Runner(booted, RunLimits(cycles=1), Notifier(None, None))
    metrics = EdgeMetrics(site, runner.pace)
    metrics.refresh(booted.runtime.store)
    booted.close()  # a closed store refuses reads: the refresh must not raise
    metrics.refresh(booted.runtime.store)
    samples = parse_collected(metrics)
    assert value(samples, "voltbook_edge_store_readable") == 0
    assert value(samples, "voltbook_edge_outbox_items") >= 0  # the last good copy stays


def test_off_by_default(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    assert site.settings.metrics_listen is None
    booted, _clock = booted_at(site)
    try:
        assert _serve_metrics(Runner(booted, RunLimits(cycles=1), Notifier(None, None))) is None
    finally:
        booted.close()


@pytest.mark.parametrize("listen", ['"9108"', '"host:0"', '":9108"', "9108", '"h:99999"'])
def test_a_bad_metrics_listen_is_refused(small_site: DemoSite, listen: str) -> None:
    toml = small_site.site_toml
    toml.write_text(toml.read_text() + f"\n[metrics]\nlisten = {listen}\n")
    with pytest.raises(SiteConfigError, match=r"\[metrics\].*listen|listen"):
        load_site(toml)


def test_a_taken_port_is_refused_in_one_sentence(
    small_site: DemoSite, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        toml = with_metrics(small_site, taken.getsockname()[1])
        assert main(["run", "--config", str(toml), "--cycles", "1"]) == 2
    assert "metrics endpoint cannot listen" in capsys.readouterr().err
    site = load_site(toml)
    with Store.open(site.settings.store_path, node=site.settings.node) as store:
        # The writer's lock was let go, and no cycle ran.
        assert not any(e.event.kind == "read_round" for e in store.events())


@pytest.mark.slow
def test_run_serves_metrics_and_logs_json_lines(small_site: DemoSite) -> None:
    """`voltbook-edge --log-format json run` with `[metrics] listen`: the endpoint answers while
    the runtime runs, and every line on stderr is one JSON object."""
    port = free_port()
    toml = with_metrics(small_site, port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        cli_command("--log-format", "json", "run", "--config", str(toml), "--speed", "3600"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stderr is not None
    logged = b""
    try:
        deadline = time.monotonic() + 60
        samples: Samples = {}
        while time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.1)[0]:
                logged += os.read(proc.stderr.fileno(), 65536)
            assert proc.poll() is None, logged.decode()
            try:
                samples = scrape(port)
            except (urllib.error.URLError, ConnectionError):
                continue
            if samples.get(("voltbook_edge_cycles_total", frozenset()), 0) >= 2:
                break
        assert value(samples, "voltbook_edge_cycles_total") >= 2, samples
        assert value(samples, "voltbook_edge_outbox_items") > 0
        assert value(samples, "voltbook_edge_bus_reads", bus="rs485-1") > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)[1], None
        logged += rest or b""
    assert proc.returncode == 0, logged.decode()
    lines = logged.decode().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line: one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("running site" in r["message"] for r in records)
    assert any(r["message"].startswith("metrics on http://127.0.0.1:") for r in records)
    with pytest.raises(urllib.error.URLError):  # stopped with the runtime
        scrape(port)
