"""The hot-standby topology for the failover tests: etcd and two Patroni nodes started once per
module from the shipped `deploy/patroni/voltbook.yml` (`cloud.services.standby`), the cloud's
schema migrated on it, and `engine` overridden to the multi-host URL that follows the primary
(so `sessions`, `ingest` and `edge_of` of tests/cloud/conftest.py run against the cluster).

Skipped when Debian's patroni or etcd-server is missing (`make` installs them as root), and
failed instead under REQUIRE_REAL_SERVICES=1.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from cloud.db.engine import make_engine, upgrade
from cloud.services.errors import ServiceError
from cloud.services.postgres import find_postgres
from cloud.services.standby import NOT_FOUND_HINT, StandbyCluster
from tests.conftest import service_missing


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandbyCluster]:
    if shutil.which("patroni") is None or shutil.which("etcd") is None or find_postgres() is None:
        service_missing("patroni", NOT_FOUND_HINT)
    topology = StandbyCluster(tmp_path_factory.mktemp("standby"))
    try:
        topology.start()
    except ServiceError as exc:
        topology.close()
        service_missing("patroni", str(exc))
    with topology:
        engine = make_engine(topology.url)
        upgrade(engine)
        engine.dispose()
        yield topology


@pytest.fixture
def engine(cluster: StandbyCluster) -> Iterator[Engine]:
    """The cloud's engine on the cluster: a primary and its synchronous standby, both up."""
    cluster.wait_until_synchronous(60)
    engine = make_engine(cluster.url)
    yield engine
    engine.dispose()
