"""Which ingest worker owns a node: a stable hash, partitions that cover every node exactly once
across the servers of one cloud, and `[ingest]` turned into each worker's route."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import load_config
from cloud.ingest.routing import Partition, SharedGroup, owner
from cloud.server import worker_routes

NODES = [f"edge-{n:04d}" for n in range(1, 1001)]


def test_the_owner_of_a_node_never_changes() -> None:
    """Pinned: servers of different versions, or restarted, must agree on every node's owner
    (Python's own `hash` of a string is salted per process)."""
    assert [owner(node, 2) for node in NODES[:4]] == [0, 1, 0, 0]
    assert [owner(node, 3) for node in NODES[:4]] == [1, 1, 0, 2]
    assert owner("fleet-0001", 1) == 0


def test_partitions_spread_the_nodes() -> None:
    counts = [sum(owner(node, 4) == n for node in NODES) for n in range(4)]
    assert sum(counts) == len(NODES)
    assert all(200 <= c <= 300 for c in counts), counts


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_a_partition_outside_the_partitions_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="needs 0 ≤ index < count"):
        Partition(index, count)


def routes_of(tmp_path: Path, name: str, ingest: str) -> list:
    path = tmp_path / name
    path.write_text(f"[ingest]\n{ingest}", encoding="utf-8")
    return worker_routes(load_config(path))


def test_one_server_partitions_by_its_workers(tmp_path: Path) -> None:
    assert routes_of(tmp_path, "one.toml", "") == [Partition(0, 1)]
    assert routes_of(tmp_path, "three.toml", "workers = 3\n") == [
        Partition(0, 3),
        Partition(1, 3),
        Partition(2, 3),
    ]


def test_servers_sharing_a_broker_own_every_node_exactly_once(tmp_path: Path) -> None:
    first = routes_of(tmp_path, "a.toml", "workers = 2\npartitions = 5\n")
    second = routes_of(tmp_path, "b.toml", "workers = 3\npartitions = 5\npartition = 2\n")
    routes = first + second
    for node in NODES:
        assert sum(route.owns(node) for route in routes) == 1, node


def test_broker_routing_is_one_shared_group(tmp_path: Path) -> None:
    routes = routes_of(tmp_path, "emqx.toml", 'workers = 2\nrouting = "broker"\n')
    assert routes == [SharedGroup("ingest")] * 2
    assert routes[0].topic_filter == "$share/ingest/vb/+"
    assert Partition(1, 2).topic_filter == "vb/+"
