"""`voltbook-edge status`: the box's status read from its store while the runtime holds it; every
number is what the store holds."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from demo.sim.direct_bus import DirectBus
from demo.site import DemoSite
from edge.cli import main
from edge.site import SiteConfigError, load_site
from edge.status import site_status
from edge.status_page import make_server
from edge.store import Store
from tests.edge.runtime.conftest import booted_at, cli

QUARTER = dt.timedelta(minutes=15)


def test_status_after_a_few_cycles_is_what_the_store_holds(small_site: DemoSite) -> None:
    booted, clock = booted_at(load_site(small_site.site_toml))
    runtime, store = booted.runtime, booted.runtime.store
    bus = runtime.buses["rs485-1"]
    assert isinstance(bus, DirectBus)
    cut = runtime.site.meters[0].address
    try:
        for _ in range(3):
            runtime.run_cycle()
            clock.advance(QUARTER)
        bus.detach(cut)
        runtime.run_cycle()
        # The runtime still holds the store: status reads a snapshot without its lock.
        done = cli("status", "--config", str(small_site.site_toml), "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        text = cli("status", "--config", str(small_site.site_toml))
        assert text.returncode == 0 and "rs485-1" in text.stdout and cut in text.stdout
        assert status["rounds"] == 4
        assert status["sync"]["chain_seq"] == store.chain.seq
        assert status["sync"]["outbox"] == store.outbox_size()
        assert status["sync"]["acknowledged_seq"] == 0  # an offline site: nothing acked
        assert status["clock"]["cycles"] == runtime.clock_state.cycles
        assert not status["clock"]["held"]
        (bus_status,) = status["buses"]
        assert (bus_status["reads"], bus_status["reads_tried"]) == (31, 32)
        assert bus_status["read_success"] == round(31 / 32, 4)
        for meter in bus_status["meters"]:
            address = meter["address"]
            stored = store.readings(address)
            latest = store.latest_reading(address)
            assert latest is not None
            assert meter["readings"] == len(stored)
            assert meter["last_read"] == latest.time.astimezone(runtime.site.zone).isoformat()
            assert meter["register"] == latest.reading.energy_wh
            assert meter["relay_seen"] == "closed"
        broken = next(m for m in bus_status["meters"] if m["address"] == cut)
        assert broken["read_failures"] == 1 and "no reply" in broken["last_error"]
        assert broken["read_success"] == 0.75
        opened = {(a["kind"], a.get("bus") or a.get("meter")) for a in status["open_alarms"]}
        assert opened == {("read_success_low", "rs485-1"), ("meter_unreadable", cut)}
        recent = {(a["kind"], a["meter"]) for a in status["recent_alarms"]}
        assert recent == {("read_success_low", None), ("meter_unreadable", cut)}
    finally:
        booted.close()


def test_status_before_the_first_run_says_so(
    small_site: DemoSite, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(small_site.site_toml)]) == 1
    assert "has not run" in capsys.readouterr().err


def test_the_status_page_serves_the_same_read_only(small_site: DemoSite) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    toml = small_site.site_toml
    toml.write_text(toml.read_text() + f'\n[status]\nlisten = "127.0.0.1:{port}"\n')
    site = load_site(toml)
    assert site.settings.status_listen == ("127.0.0.1", port)
    booted, _clock = booted_at(site)
    server = make_server(site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        booted.runtime.run_cycle()
        with urllib.request.urlopen(f"{base}/status.json", timeout=10) as answer:
            served = json.loads(answer.read())
        with Store.open_readonly(site.settings.store_path) as store:
            assert served == json.loads(json.dumps(site_status(site, store)))
        with urllib.request.urlopen(f"{base}/?lang=en", timeout=10) as answer:
            english = answer.read().decode()
        with urllib.request.urlopen(f"{base}/", timeout=10) as answer:
            chinese = answer.read().decode()
        assert "Concentrator status" in english and "集中器状态" in chinese
        assert site.meters[0].address in chinese
        for path, method in (("/../site.toml", "GET"), ("/", "POST"), ("/status.json", "PUT")):
            request = urllib.request.Request(base + path, method=method, data=b"")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code in (404, 501)
    finally:
        server.shutdown()
        server.server_close()
        booted.close()


@pytest.mark.parametrize("listen", ['"8088"', '"host:0"', '":8088"', "8088", '"h:99999"'])
def test_a_bad_status_listen_is_refused(small_site: DemoSite, listen: str) -> None:
    toml = small_site.site_toml
    toml.write_text(toml.read_text() + f"\n[status]\nlisten = {listen}\n")
    with pytest.raises(SiteConfigError, match="listen"):
        load_site(toml)


def test_serve_is_off_without_status_listen(
    small_site: DemoSite, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(small_site.site_toml), "--serve"]) == 2
    assert "is off" in capsys.readouterr().err
