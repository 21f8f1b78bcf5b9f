"""Presence (retained status, last will), TLS with per-device certificates and the production
ACLs, the `[cloud]` section of site.toml, and `voltbook-edge run` syncing a demo site.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.services.broker import CLOUD_ACL, MosquittoBroker
from cloud.services.pki import create_ca, issue_client_cert, issue_server_cert
from demo.site import NODE, write_demo_site
from edge.runtime.boot import read_node_key
from edge.site import SiteConfigError, load_site
from edge.site.model import TlsFiles
from edge.sync.service import SyncService
from ledger.chain import public_key_pem
from ledger.signed import CommandKind
from tests.e2e.mqtt_proxy import MqttChaosProxy
from tests.edge.runtime.conftest import ROOT, cli_command
from tests.edge.sync.conftest import CLOUD_KEY, Edge, cloud_settings, pump, started, wait
from tests.edge.sync.peer import CloudPeer


def test_status_is_retained_and_the_last_will_says_offline_when_the_link_dies(
    edge: Edge, broker: MosquittoBroker, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(1)
    node, key = edge.store.node, edge.runtime.key.public_key
    with MqttChaosProxy(broker.host, broker.port) as proxy:
        sync = make_sync(proxy.host, proxy.port)
        # Once the runtime thread has handled `Connected`, the retained status is on its way.
        assert pump(sync, lambda: sync.session.online)
        late = CloudPeer(broker.host, broker.port, node, key, CLOUD_KEY)  # after the fact
        try:
            assert wait(lambda: bool(late.statuses))
            status = late.statuses[0]  # retained: a peer connecting later still gets it
            assert status.online and status.head == edge.store.chain.seq
            accounts = status.extra["accounts"]
            first = edge.runtime.site.meters[0]
            assert accounts[first.account]["meters"] == [
                {"address": first.address, "protocol": "dlt645"}
            ]
            assert {"shop", "building", "floor"} <= set(accounts[first.account])
            proxy.cut()  # the network drops: no DISCONNECT, the broker publishes the will
            assert wait(lambda: any(not s.online for s in late.statuses))
            seen = len(late.statuses)
            # paho reconnects by itself; the runtime thread says online again.
            assert pump(sync, lambda: len(late.statuses) > seen and late.statuses[-1].online)
        finally:
            late.close()
        sync.stop()
    fresh = CloudPeer(broker.host, broker.port, node, key, CLOUD_KEY)
    try:
        # Offline after a clean stop. (Through the proxy the DISCONNECT may be lost as the
        # connection closes, and then the will wins over the farewell, which is also right;
        # the farewell's counters are checked over a direct connection in the `run` test.)
        assert wait(lambda: bool(fresh.statuses))
        assert not fresh.statuses[-1].online
    finally:
        fresh.close()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, dict[str, TlsFiles]]]:
    pki = tmp_path / "pki"
    ca = create_ca(pki)
    server = issue_server_cert(ca, pki)
    clients = {}
    for device in (NODE, "cloud"):
        files = issue_client_cert(ca, pki, device)
        clients[device] = TlsFiles(files.ca, files.cert, files.key)
    broker = MosquittoBroker(tmp_path / "mosquitto-tls", tls=server, acl_users=CLOUD_ACL)
    with started(broker) as running:
        yield running, clients


def test_sync_over_tls_with_a_device_certificate_and_the_production_acls(
    edge: Edge, tls_broker: tuple[MosquittoBroker, dict[str, TlsFiles]]
) -> None:
    broker, clients = tls_broker
    assert edge.store.node == NODE  # the certificate's CN is the node id
    edge.cycles(2)
    peer = CloudPeer(
        broker.host,
        broker.cloud_port,
        NODE,
        edge.runtime.key.public_key,
        CLOUD_KEY,
        tls=clients["cloud"],
    )
    settings = cloud_settings(broker.host, broker.port, tls=clients[NODE])
    sync = SyncService(edge.runtime, settings)
    sync.start()
    try:
        assert pump(sync, lambda: edge.store.outbox_size() == 0)
        assert peer.copy.seq == edge.store.chain.seq
        command = peer.command(
            CommandKind.RECHARGE, {"account": "A0005", "fen": 300, "payment": "P-tls"}
        )
        peer.send(command.sign(CLOUD_KEY))
        assert pump(sync, lambda: command.id in peer.copy.results)
    finally:
        sync.stop()
        peer.close()


# -- site.toml ---------------------------------------------------------------------------------

CLOUD_OK = """
[cloud]
host = "127.0.0.1"
port = {port}
cloud_public_key = "{key}"
rate_bytes_s = 0
tick_s = 0.05
ack_timeout_s = 5
"""


def _with_cloud(site_toml: Path, section: str) -> None:
    site_toml.write_text(site_toml.read_text() + section)


def test_the_cloud_section_is_read_and_checked(tmp_path: Path) -> None:
    demo = write_demo_site(tmp_path / "site", 4)
    text = demo.site_toml.read_text()
    key_hex = CLOUD_KEY.public_key.public_bytes_raw().hex()
    (demo.site_toml.parent / "cloud.pub").write_bytes(public_key_pem(CLOUD_KEY.public_key))
    for value in (key_hex, "cloud.pub"):
        demo.site_toml.write_text(text + CLOUD_OK.format(port=1883, key=value))
        cloud = load_site(demo.site_toml).settings.cloud
        assert cloud is not None and cloud.port == 1883 and cloud.tls is None
        assert list(cloud.cloud_keys) == [CLOUD_KEY.key_id]
    for bad, named in (
        ('port = "x"', "port"),
        ("window = 0", "window"),
        ('cloud_public_key = "abcd"', "cloud_public_key"),
        ('ca = "ca.crt"', "cert"),  # TLS files: all three or none
        ("colour = 1", "colour"),
    ):
        section = CLOUD_OK.format(port=1883, key=key_hex)
        field = bad.split(" = ")[0]
        lines = [line for line in section.splitlines() if not line.startswith(field + " =")]
        demo.site_toml.write_text(text + "\n".join(lines) + "\n" + bad + "\n")
        with pytest.raises(SiteConfigError) as caught:
            load_site(demo.site_toml)
        assert "[cloud]" in str(caught.value) and named in str(caught.value)
    demo.site_toml.write_text(text)
    assert load_site(demo.site_toml).settings.cloud is None  # offline, as before


def test_the_certificate_must_name_the_node(tmp_path: Path) -> None:
    """The broker binds the client id and the topics to the certificate's CN: a certificate
    for another name could never sync this node, so the site is refused at load."""
    demo = write_demo_site(tmp_path / "site", 2)
    text = demo.site_toml.read_text()
    node = load_site(demo.site_toml).settings.node
    ca = create_ca(tmp_path / "pki")
    key_hex = CLOUD_KEY.public_key.public_bytes_raw().hex()
    for name in (node, "edge-9999", "not-a-certificate"):
        files = issue_client_cert(ca, tmp_path / "tls", "edge-9999" if name != node else node)
        if name == "not-a-certificate":
            files.cert.write_text("PEM")
        tls = f'ca = "{files.ca}"\ncert = "{files.cert}"\nkey = "{files.key}"\n'
        demo.site_toml.write_text(text + CLOUD_OK.format(port=8883, key=key_hex) + tls)
        if name == node:
            cloud = load_site(demo.site_toml).settings.cloud
            assert cloud is not None and cloud.tls is not None and cloud.tls.cert == files.cert
            continue
        with pytest.raises(SiteConfigError) as caught:
            load_site(demo.site_toml)
        message = str(caught.value)
        assert "[cloud]: cert must be a PEM certificate whose CN is the node id" in message
        assert ("CN edge-9999" in message) == (name == "edge-9999")


# -- voltbook-edge run -----------------------------------------------------------------------


def test_run_with_a_cloud_section_syncs_the_demo_site(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    demo = write_demo_site(tmp_path / "site", 6)
    key_hex = CLOUD_KEY.public_key.public_bytes_raw().hex()
    _with_cloud(demo.site_toml, CLOUD_OK.format(port=broker.port, key=key_hex))
    site = load_site(demo.site_toml)
    edge_key = read_node_key(site.settings.node_key).public_key
    peer = CloudPeer(broker.host, broker.port, NODE, edge_key, CLOUD_KEY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    try:
        done = subprocess.run(
            cli_command("run", "--config", str(demo.site_toml), "--speed", "3600", "--cycles", "8"),
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            cwd=ROOT,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "sync: sent batch" in done.stderr and "sync: ack seq" in done.stderr
        assert wait(lambda: bool(peer.statuses) and not peer.statuses[-1].online)
        assert peer.copy.seq > 0 and len(peer.copy.readings) == 8 * 6
        online = [s for s in peer.statuses if s.online]
        assert online and len(online[0].extra["accounts"]) == 6
        final = peer.statuses[-1]  # the clean stop's retained offline status
        assert final.head == peer.copy.seq and final.acked == peer.copy.seq  # all of it, acked
    finally:
        peer.close()


def test_run_refuses_a_bad_cloud_section_and_changes_nothing(tmp_path: Path) -> None:
    demo = write_demo_site(tmp_path / "site", 2)
    _with_cloud(demo.site_toml, '\n[cloud]\nhost = "x"\ncloud_public_key = "nope"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        cli_command("run", "--config", str(demo.site_toml), "--cycles", "1"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert "[cloud]: cloud_public_key" in done.stderr
    assert not (demo.site_toml.parent / "data").exists()  # nothing was opened or written
