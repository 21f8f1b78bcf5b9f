"""Provisioning by claim, end to end: a real cloud (`serve_in_thread`, SQLite, the embedded
Mosquitto with its CA), `voltbook-fw claim` as the installer, `voltbook-edge provision` as the
box into a directory holding a simulated site; then the box's certificate chains to the
broker's CA with CN = its node id, the site loads as the runtime loads it, and the runtime's
own MQTT link (`edge.sync.client.MqttLink`, the provisioned [cloud] settings) connects to the
broker's TLS listener and the cloud takes the status the provisioned node key signed.

A spent or unknown token is refused by the CLI in an installer's words, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.x509.oid import NameOID
from voltbook_fw.cli import main as fw_main

from cloud.config import ApiSettings, load_config
from cloud.db.engine import session_factory
from cloud.db.registry import Site
from cloud.ingest import claims
from cloud.people import auth
from cloud.people.oplog import Actor
from cloud.server import RunningCloud, serve_in_thread
from cloud.services.broker import MosquittoBroker, find_mosquitto
from cloud.services.pki import load_certificate
from demo.site import write_demo_site
from edge.cli import main as edge_main
from edge.runtime.boot import read_node_key
from edge.site.load import load_site
from edge.site.node_pub import read_public
from edge.sync.client import MqttLink
from ledger.wire import Status
from tests.cloud.api.conftest import PASSWORD
from tests.cloud.fake_edge import T0
from tests.conftest import service_missing

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

SITE = "East Gate Market"
INSTALLER = "li"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    config = load_config(None, tmp_path_factory.mktemp("cloud") / "data")
    config = dataclasses.replace(config, api=ApiSettings("127.0.0.1", 0))
    with serve_in_thread(config) as running:
        assert isinstance(running.broker, MosquittoBroker)
        with session_factory(running.engine).begin() as session:
            auth.create_user(session, INSTALLER, auth.Role.INSTALLER, PASSWORD, now=T0)
            session.add(Site(name=SITE))
        yield running


def claim(cloud: RunningCloud, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`voltbook-fw claim` as the installer; the command it says to run on the box."""
    argv = ["claim", "--site", SITE, "--valid", "2h", "--cloud", cloud.url, "--user", INSTALLER]
    assert fw_main(argv) == 0
    printed = capsys.readouterr().out
    assert "valid until" in printed and "usable once" in printed
    command = printed.strip().splitlines()[-1].split()
    assert command[:3] == ["voltbook-edge", "provision", "--cloud"]
    return command[1:]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_claimed_box_is_provisioned_and_connects_with_tls(
    cloud: RunningCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VOLTBOOK_PASSWORD", PASSWORD)
    command = claim(cloud, capsys)
    box = tmp_path / "box"
    write_demo_site(box, 2)  # a box with its buses, and a factory node key provision replaces
    factory_key = (box / "node.key").read_bytes()
    assert edge_main([*command, "--dir", str(box)]) == 2  # an identity is there: not without…
    assert "--force" in capsys.readouterr().err
    assert edge_main([*command, "--dir", str(box), "--force"]) == 0
    printed = capsys.readouterr().out
    assert "provisioned as node east-gate-market-1" in printed

    site = load_site(box / "site.toml")  # as `voltbook-edge run` loads it (CN = node checked)
    node, settings = site.settings.node, site.settings.cloud
    assert node == "east-gate-market-1" and settings is not None and settings.tls is not None
    assert (box / "node.key").read_bytes() != factory_key
    assert (settings.host, settings.port) == (cloud.broker_host, cloud.broker_port)
    certificate = load_certificate(settings.tls.cert)
    broker_ca = load_certificate(cloud.config.pki_dir / "ca.crt")
    certificate.verify_directly_issued_by(broker_ca)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node
    assert settings.tls.ca.read_bytes() == (cloud.config.pki_dir / "ca.crt").read_bytes()

    key = read_node_key(site.settings.node_key)
    assert read_public(site.settings.node_key) == key.public_key  # node.pub, the verifiers' key
    link = MqttLink(settings, node, Status(node, False).signed(key))
    link.start()
    try:
        assert wait_for(lambda: link.connected), "the provisioned box did not connect over TLS"
        assert link.publish("status", Status(node, True).signed(key), retain=True)
        login = httpx.post(cloud.url + "/auth/login",
                           json={"user": INSTALLER, "password": PASSWORD}, timeout=5)  # fmt: skip
        headers = {"Authorization": f"Bearer {login.json()['token']}"}

        def online() -> bool:
            found = httpx.get(f"{cloud.url}/concentrators/{node}", headers=headers, timeout=5)
            return bool(found.json()["online"])

        assert wait_for(online), "the cloud did not take the status the node key signed"
    finally:
        link.stop(Status(node, False).signed(key))


def test_a_spent_or_unknown_token_is_refused_and_nothing_is_written(
    cloud: RunningCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VOLTBOOK_PASSWORD", PASSWORD)
    command = claim(cloud, capsys)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert edge_main([*command, "--dir", str(first)]) == 0
    assert "next: voltbook-edge run" in capsys.readouterr().out
    for token in (command[-1], "unknown-" + "x" * 40):
        argv = [*command[:-1], token, "--dir", str(second)]
        assert edge_main(argv) == 2
        said = capsys.readouterr().err
        assert "already used or expired" in said and "voltbook-fw claim" in said
        assert list(second.iterdir()) == []
    unreachable = ["provision", "--cloud", "http://127.0.0.1:9", "--token", "t", "--dir",
                   str(second)]  # fmt: skip
    assert edge_main(unreachable) == 2
    assert "cannot reach the cloud" in capsys.readouterr().err
    assert list(second.iterdir()) == []


def test_claim_says_what_went_wrong(
    cloud: RunningCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOLTBOOK_PASSWORD", "wrong password")
    argv = ["claim", "--site", SITE, "--cloud", cloud.url, "--user", INSTALLER]
    assert fw_main(argv) == 2
    assert "the cloud refused (401)" in capsys.readouterr().err
    monkeypatch.setenv("VOLTBOOK_PASSWORD", PASSWORD)
    assert fw_main(["claim", "--site", "Nowhere", "--cloud", cloud.url, "--user", INSTALLER]) == 2
    assert "not in the registry" in capsys.readouterr().err


def test_a_token_bound_to_a_preassigned_node_provisions_that_node(
    cloud: RunningCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = "egm-hall-2"
    with session_factory(cloud.engine).begin() as session:  # as POST /claims/nodes does
        claims.preassign(session, SITE, node, name="", actor=Actor("op", "operator"), now=T0)
    monkeypatch.setenv("VOLTBOOK_PASSWORD", PASSWORD)
    base = ["claim", "--site", SITE, "--valid", "1h", "--cloud", cloud.url, "--user", INSTALLER]
    assert fw_main([*base, "--node", "egm-hall-77"]) == 2  # not pre-assigned: said, no token
    assert "the cloud refused (404)" in capsys.readouterr().err
    assert fw_main([*base, "--node", node]) == 0
    printed = capsys.readouterr().out
    assert f"node {node}, valid until" in printed
    command = printed.strip().splitlines()[-1].split()[1:]
    box = tmp_path / "box"
    box.mkdir()
    assert edge_main([*command, "--dir", str(box)]) == 0
    assert f"provisioned as node {node}" in capsys.readouterr().out
    assert fw_main([*base, "--node", node]) == 2  # provisioned: not claimed again
    assert "already provisioned" in capsys.readouterr().err
