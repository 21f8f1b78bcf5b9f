"""End to end: the cloud offers a bundle to a simulated site's concentrator, and the box reports
`healthy`, or `rolled_back`, through its real sync.

    cloud (SQLite, real ingest) ─ update command ─► the runtime's desk (demo site, simulated
    DL/T 645 meters) ─ offer file ─► `voltbook-fw update` (a thread here, as the unit is a
    process there): download over loopback HTTP, verify, real install, switch ─► the runtime
    runs a cycle and a sync round (the cloud's ack prunes its outbox) ─► the NEW version's
    `voltbook-edge health` passes ─► `update_state` events up ─► the rollout is done.

When the new version's runtime does not come up (it crashes at start: here the in-process
runtime is closed at the switch and runs no cycle), its real health check finds no cycle since
the switch, the bound runs out, the box switches back by itself, the runtime starts again on the
old version and bills on; the cloud sees `rolled_back` with the box's reason and offers no
further wave.

The runtime is the one of this checkout, run in this process (the test's stand-in for the
restart); what the health check runs is the installed version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from voltbook_fw import install, update
from voltbook_fw.bundle import build_bundle

from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.db.models import Command, Concentrator
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.operations import updates
from cloud.people.oplog import Actor
from demo.wheelhouse import ROOT
from edge.cli import main as edge_cli
from edge.runtime.audit import audit_store
from edge.sync import update as edge_update
from edge.sync.session import SessionConfig, UplinkSession
from edge.sync.uplink import BatchBuilder, UplinkLimits
from ledger import key_files
from ledger.chain import NodeKey, public_key_pem
from ledger.signed import trusted
from tests.edge.sync.operations_kit import CLOUD_KEY, QUARTER, ZONE, Node, write_site
from tests.voltbook_fw.conftest import ARCH
from tests.voltbook_fw.test_update import serve, settings

HEALTH_BOUND_S = 4.0  # small: the new version never comes up, so the whole bound is waited


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sync_round(node: Node, ingest: Ingest) -> None:
    """Everything in the outbox up to the cloud, and its acks back (what `SyncService` does)."""
    store = node.store
    builder = BatchBuilder(store, node.runtime.key, UplinkLimits())
    session = UplinkSession(store, builder, trusted(CLOUD_KEY.public_key), SessionConfig())
    session.connected(time.monotonic())
    while batches := session.next_batches(time.monotonic()):
        for built in batches:
            ack = ingest.handle_batch(store.node, built.payload)
            assert session.receive_ack(ack, time.monotonic(), now()).accepted


@dataclass
class Cloud:
    sessions: sessionmaker[Session]
    ingest: Ingest

    def register(self, node: str, key: NodeKey) -> None:
        with self.sessions.begin() as session:
            concentrators.register(session, node, key.public_key, now=now())

    def roll_out(self, bundle: bytes, url: str, nodes: list[str]) -> int:
        """A rollout of version 3, a node per wave, the next wave as soon as one is healthy."""
        offer = updates.Offer(3, url, hashlib.sha256(bundle).hexdigest(), len(bundle))
        with self.sessions.begin() as session:
            return updates.start(
                session, offer, nodes=nodes, site=None, wave_size=1, wave_every_s=0,
                key=CLOUD_KEY, actor=Actor("op-li", "operator"), now=now(),
            ).id  # fmt: skip

    def command_to(self, rollout: int, node: str) -> bytes:
        with self.sessions() as session:
            row = next(r for r in updates.node_rows(session, rollout) if r.node == node)
            return bytes(session.get_one(Command, row.command_id).payload)

    def states(self, rollout: int) -> tuple[str, str, list[tuple[str, str, str]]]:
        with self.sessions() as session:
            row = updates.get(session, rollout)
            nodes = updates.node_rows(session, rollout)
            return row.state, row.reason, [(n.node, n.state, n.reason) for n in nodes]


@pytest.fixture(scope="module")
def with_simulator() -> bool:
    return True  # the installed versions' health checks load this simulated site (conftest)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    upgrade(engine)
    try:
        yield Cloud(session_factory(engine), Ingest(engine, CLOUD_KEY, now))
    finally:
        engine.dispose()


@dataclass
class Site:
    """A demo site's runtime (two simulated meters), stopped and started as its process is."""

    toml: Path
    node: Node
    running: bool = True

    def stop(self) -> None:
        self.node.close()
        self.running = False

    def start(self) -> Node:
        self.node = Node.boot(self.toml, start=now().astimezone(ZONE))
        self.running = True
        return self.node


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """Started, one cycle run."""
    toml = write_site(tmp_path / "site", meters=2)
    running = Site(toml, Node.boot(toml, start=now().astimezone(ZONE)))
    try:
        running.node.cycles(1, every=dt.timedelta(seconds=1))
        yield running
    finally:
        if running.running:
            running.node.close()


@pytest.fixture
def encrypted_site(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    """`site` with its node key encrypted at rest (the running runtime holds it open), and no
    key passphrase in this process from then on: the updater's unit has none."""
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, "correct horse battery staple")
    assert edge_cli(["keys", "encrypt", "--config", str(site.toml)]) == 0
    assert key_files.is_encrypted(site.node.runtime.site.settings.node_key.read_bytes())
    for name in (key_files.PASSPHRASE_ENV, key_files.PASSPHRASE_FILE_ENV, "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    return site


@pytest.fixture
def old_box(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, release: NodeKey, wheelhouse: Path
) -> Path:
    """A box running a real install of version 2 (its virtualenv too: after a rollback it runs
    again), built from the same wheels as the offered version 3."""
    bundle = tmp_path_factory.mktemp("old") / "site-2.tar"
    build_bundle(project=ROOT, arch=ARCH, version=2, release_key=release, out=bundle,
                 wheelhouse=wheelhouse, with_simulator=True)  # fmt: skip
    root = tmp_path / "root"
    (root / "etc/voltbook").mkdir(parents=True)
    (root / "etc/voltbook/release.pub").write_bytes(public_key_pem(release.public_key))
    assert install.install_bundle(bundle, root, release.public_key, arch=ARCH).version == 2
    return root


def start_updater(
    box: Path, node: Node, site_toml: Path, bound: float
) -> tuple[threading.Thread, list[update.Outcome | None]]:
    """`voltbook-fw update` once, in a thread (a process on the box), its health check the
    installed version's own `voltbook-edge health`, for real."""
    outcome: list[update.Outcome | None] = []
    config = settings(
        box, data=node.runtime.site.settings.data_dir, config=site_toml,
        health=(update.HEALTH,), health_timeout_s=bound,
    )  # fmt: skip
    thread = threading.Thread(target=lambda: outcome.append(update.run_once(config)))
    thread.start()
    return thread, outcome


def wait_for(node: Node, state: str, updater: threading.Thread, outcome: object) -> None:
    """Until the updater's state file says `state` (what the runtime's sync would read)."""
    state_file = node.runtime.site.settings.data_dir / "updates" / "state.json"
    while f'"{state}"' not in (state_file.read_text() if state_file.exists() else ""):
        assert updater.is_alive(), outcome
        time.sleep(0.2)


def run_installed(box: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The version `current` names, as the box would run it (no PYTHONPATH of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    command = [str(box / "opt/voltbook/current/venv/bin/voltbook-edge"), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.slow  # one real install
@pytest.mark.timeout(240)
def test_a_site_takes_an_update_and_the_cloud_sees_it_healthy(
    box: Path,
    bundles: dict[str, Path],
    server: tuple[str, Path],
    cloud: Cloud,
    encrypted_site: Site,
) -> None:
    site = encrypted_site  # the updater has no passphrase: its health check reads node.pub
    node = site.node
    cloud.register(node.store.node, node.runtime.key)
    data = bundles["good"].read_bytes()
    rollout = cloud.roll_out(data, serve(server, "site.tar", data), [node.store.node])
    payload = cloud.command_to(rollout, node.store.node)
    started = time.monotonic()
    assert node.desk.handle(payload).outcome == "applied"

    updater, outcome = start_updater(box, node, site.toml, bound=120.0)
    wait_for(node, "switched", updater, outcome)
    # "Restarted": the runtime reports the states so far, runs a cycle and a sync round.
    edge_update.report(node.runtime)
    node.clock.advance(now() - node.clock.true_now())  # the install took real time
    node.cycles(1, every=dt.timedelta(seconds=1))
    sync_round(node, cloud.ingest)
    updater.join(180)
    took = time.monotonic() - started
    assert outcome and outcome[0] is not None and outcome[0].state == "healthy", outcome
    edge_update.report(node.runtime)
    sync_round(node, cloud.ingest)
    state, _, nodes = cloud.states(rollout)
    assert (state, [n[1] for n in nodes]) == ("done", ["healthy"])
    print(f"site update, command to healthy: {took:.1f} s")


@pytest.mark.slow  # two real installs (the old version's too)
@pytest.mark.timeout(300)
def test_a_version_whose_runtime_does_not_come_up_is_rolled_back_and_the_rollout_stops(
    old_box: Path,
    bundles: dict[str, Path],
    server: tuple[str, Path],
    cloud: Cloud,
    site: Site,
) -> None:
    box, node, site_toml = old_box, site.node, site.toml
    name = node.store.node
    later = f"{name}-2"  # sorts after: the second wave
    cloud.register(name, node.runtime.key)
    cloud.register(later, NodeKey.generate())
    data = bundles["good"].read_bytes()
    url = serve(server, "site-3.tar", data)
    rollout = cloud.roll_out(data, url, [name, later])
    assert [(n, s) for n, s, _ in cloud.states(rollout)[2]] == [
        (name, "offered"), (later, "waiting")
    ]  # fmt: skip
    seq_before = node.store.chain.seq
    started = time.monotonic()
    assert node.desk.handle(cloud.command_to(rollout, name)).outcome == "applied"

    updater, outcome = start_updater(box, node, site_toml, bound=HEALTH_BOUND_S)
    wait_for(node, "switched", updater, outcome)
    switched = time.monotonic() - started
    # The new version's runtime crashes at start: nothing runs cycles any more.
    site.stop()
    updater.join(120)
    assert outcome and outcome[0] is not None, outcome
    done = outcome[0]
    assert done.state == "rolled_back", done
    assert f"unhealthy after {HEALTH_BOUND_S:g} s" in done.reason, done.reason
    assert "no cycle ran since" in done.reason and "back on version 2" in done.reason

    # The box: `current` back on version 2, its units, and version 2 runs.
    base = box / "opt/voltbook"
    assert (base / "current").readlink() == Path("versions/2")
    assert not (base / "previous").exists()
    for unit in (base / "versions/2/units").iterdir():
        assert (box / "etc/systemd/system" / unit.name).read_bytes() == unit.read_bytes()
    version = run_installed(box, "--version")
    assert version.returncode == 0 and version.stdout.endswith(" (bundle 2)\n"), version

    # Restarted on version 2: it reports the updater's last state, bills on, syncs.
    back_at = now()  # before the restart: its clock starts here, and its first cycle counts
    node = site.start()
    assert edge_update.report(node.runtime)
    sync_round(node, cloud.ingest)
    took = time.monotonic() - started
    state, reason, nodes = cloud.states(rollout)
    assert nodes[0][:2] == (name, "rolled_back") and nodes[0][2] == done.reason
    assert (state, reason) == ("stopped", f"{name} rolled_back: {done.reason}"[:400])
    # The rollout stops: the second wave is never offered, not even by the minute's tick.
    cloud.ingest.advance_updates()
    assert cloud.states(rollout)[2][1] == (later, "waiting", "")
    with cloud.sessions() as session:
        targets = session.scalars(select(Command.node)).all()
    assert targets == [name]

    # Billing went on on version 2: the ledger verifies, the cloud acknowledged it all.
    for _ in range(96):  # a day at most: the shops draw in their opening hours
        node.cycles(1, every=QUARTER)
        if node.store.chain.seq > seq_before:
            break
    assert node.store.chain.seq > seq_before, "nothing billed in a day"
    sync_round(node, cloud.ingest)
    assert node.store.outbox(0, 1) == []
    with cloud.sessions() as session:
        head = session.scalars(select(Concentrator.head_seq).where(Concentrator.node == name)).one()
    assert head == node.store.chain.seq
    assert audit_store(node.runtime.site, node.runtime.key.public_key).ok
    check = run_installed(box, "health", "--config", str(site_toml), "--since",
                          back_at.isoformat())  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr

    # Offered again, the same version is refused by the box: it failed here before.
    again = cloud.roll_out(data, url, [name])
    assert node.desk.handle(cloud.command_to(again, name)).outcome == "applied"
    retry = start_updater(box, node, site_toml, bound=HEALTH_BOUND_S)
    retry[0].join(60)
    assert retry[1] and retry[1][0] is not None and retry[1][0].state == "refused", retry[1]
    assert "failed here before" in retry[1][0].reason
    assert (base / "current").readlink() == Path("versions/2")
    assert edge_update.report(node.runtime)
    sync_round(node, cloud.ingest)
    state, reason, nodes = cloud.states(again)
    assert (state, nodes[0][1]) == ("stopped", "failed") and "failed here before" in reason
    print(
        f"site update rolled back, command to rolled_back in the cloud: {took:.1f} s "
        f"(switched after {switched:.1f} s, health bound {HEALTH_BOUND_S:g} s; the box's "
        f"part {done.seconds:.1f} s)"
    )
