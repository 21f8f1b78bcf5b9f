"""End to end: the cloud offers a bundle to a simulated site's concentrator, and the box reports
`healthy` through its real sync.

    cloud (SQLite, real ingest) ─ update command ─► the runtime's desk (demo site, simulated
    DL/T 645 meters) ─ offer file ─► `voltbook-fw update` (a thread here, as the unit is a
    process there): download over loopback HTTP, verify, real install, switch ─► the runtime
    runs a cycle and a sync round (the cloud's ack prunes its outbox) ─► the NEW version's
    `voltbook-edge health` passes ─► `update_state` events up ─► the rollout is done.

The runtime is the one of this checkout, run in this process (the test's stand-in for the
restart); what the health check runs is the installed version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from voltbook_fw import update

from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.db.models import Command
from cloud.ingest import concentrators
from cloud.ingest.handler import Ingest
from cloud.operations import updates
from cloud.people.oplog import Actor
from edge.sync import update as edge_update
from edge.sync.session import SessionConfig, UplinkSession
from edge.sync.uplink import BatchBuilder, UplinkLimits
from ledger.signed import trusted
from tests.edge.sync.operations_kit import CLOUD_KEY, ZONE, Node, write_site
from tests.voltbook_fw.test_update import serve, settings


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


@pytest.mark.slow  # one real install
@pytest.mark.timeout(240)
def test_a_site_takes_an_update_and_the_cloud_sees_it_healthy(
    tmp_path: Path,
    box: Path,
    bundles: dict[str, Path],
    server: tuple[str, Path],
) -> None:
    site_toml = write_site(tmp_path / "site", meters=2)
    node = Node.boot(site_toml, start=now().astimezone(ZONE))
    engine = make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    ingest = Ingest(engine, CLOUD_KEY, now)
    try:
        node.cycles(1, every=dt.timedelta(seconds=1))
        with sessions.begin() as session:
            concentrators.register(session, node.store.node, node.runtime.key.public_key, now=now())
        data = bundles["simulated"].read_bytes()  # its health check loads a simulated site
        offer = updates.Offer(3, serve(server, "site.tar", data), hashlib.sha256(data).hexdigest(),
                              len(data))  # fmt: skip
        with sessions.begin() as session:
            rollout = updates.start(
                session, offer, nodes=[node.store.node], site=None, wave_size=1, wave_every_s=0,
                key=CLOUD_KEY, actor=Actor("op-li", "operator"), now=now(),
            ).id  # fmt: skip
        with sessions() as session:
            payload = bytes(session.scalars(select(Command.payload)).one())
        started = time.monotonic()
        assert node.desk.handle(payload).outcome == "applied"

        data_dir = node.runtime.site.settings.data_dir
        health = f"{update.HEALTH} "  # the installed version's own health check, for real
        outcome: list[update.Outcome | None] = []
        updater = threading.Thread(
            target=lambda: outcome.append(
                update.run_once(
                    settings(
                        box,
                        data=data_dir,
                        config=site_toml,
                        health=(health,),
                        health_timeout_s=120.0,
                    )
                )
            )
        )
        updater.start()
        state_file = data_dir / "updates" / "state.json"
        while '"switched"' not in (state_file.read_text() if state_file.exists() else ""):
            assert updater.is_alive(), outcome
            time.sleep(0.2)
        # "Restarted": the runtime reports the states so far, runs a cycle and a sync round.
        edge_update.report(node.runtime)
        node.clock.advance(now() - node.clock.true_now())  # the install took real time
        node.cycles(1, every=dt.timedelta(seconds=1))
        sync_round(node, ingest)
        updater.join(180)
        took = time.monotonic() - started
        assert outcome and outcome[0] is not None and outcome[0].state == "healthy", outcome
        edge_update.report(node.runtime)
        sync_round(node, ingest)
        with sessions() as session:
            row = updates.get(session, rollout)
            nodes = updates.node_rows(session, rollout)
            assert (row.state, [n.state for n in nodes]) == ("done", ["healthy"])
        print(f"site update, command to healthy: {took:.1f} s")
    finally:
        node.close()
        engine.dispose()
