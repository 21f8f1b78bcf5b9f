"""`/updates` over HTTP: an admin or operator offers a bundle, the first wave's commands are
issued at once, and every node's state is readable; wrong bodies are refused whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cloud.app import create_app
from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.models import Command
from cloud.people.auth import Role
from ledger.chain import NodeKey
from tests.cloud.api.conftest import bearer
from tests.cloud.conftest import Clock, RegisterEdge

BODY = {
    "version": 7,
    "url": "https://cloud.example/updates/bundles/" + "ab" * 32,
    "sha256": "ab" * 32,
    "size": 4096,
    "nodes": ["edge-u1", "edge-u2", "edge-u3"],
    "wave_size": 2,
    "wave_every_s": 60,
}


def test_an_update_is_offered_in_waves_and_followed(
    client: TestClient, edge_of: RegisterEdge, engine: Engine, tokens: dict[Role, str]
) -> None:
    for node in ("edge-u1", "edge-u2", "edge-u3"):
        edge_of(node)
    made = client.post("/updates", json=BODY)
    assert made.status_code == 201, made.text
    rollout = made.json()
    assert (rollout["state"], rollout["counts"]) == ("running", {"offered": 2, "waiting": 1})
    assert [(n["node"], n["wave"], n["state"]) for n in rollout["nodes"]] == [
        ("edge-u1", 0, "offered"), ("edge-u2", 0, "offered"), ("edge-u3", 1, "waiting")
    ]  # fmt: skip
    with session_factory(engine)() as session:
        kinds = session.scalars(select(Command.kind).order_by(Command.node)).all()
        logged = session.scalars(select(OperatorLogEntry.action)).all()
    assert kinds == ["update", "update"] and "update.start" in logged
    listed = client.get("/updates", headers=bearer(tokens[Role.INSTALLER])).json()
    assert [(r["id"], r["counts"], r["nodes"]) for r in listed] == [
        (rollout["id"], {"offered": 2, "waiting": 1}, None)
    ]
    one = client.get(f"/updates/{rollout['id']}").json()
    assert one["nodes"] == rollout["nodes"]
    assert client.get("/updates/999").status_code == 404


def test_a_wrong_offer_is_refused_and_changes_nothing(
    client: TestClient, edge_of: RegisterEdge, engine: Engine, tokens: dict[Role, str]
) -> None:
    edge_of("edge-u1")
    for change in (
        {"sha256": "AB" * 32},
        {"url": "ftp://cloud.example/b.tar"},
        {"size": 0},
        {"nodes": ["edge-u1"], "site": 1},
        {"nodes": ["edge-nope"]},
        {"wave_size": 0},
    ):
        answer = client.post("/updates", json={**BODY, "nodes": ["edge-u1"], **change})
        assert answer.status_code in (404, 422), (change, answer.text)
        assert set(answer.json()) == {"error", "detail"}
    installer = client.post("/updates", json=BODY, headers=bearer(tokens[Role.INSTALLER]))
    assert installer.status_code == 403
    with session_factory(engine)() as session:
        assert session.scalars(select(Command)).all() == []


def test_bundles_are_served_by_their_hash_without_login(
    engine: Engine, cloud_key: NodeKey, clock: Clock, tmp_path: Path
) -> None:
    data = b"a bundle's bytes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / f"{digest}.tar").write_bytes(data)
    with TestClient(create_app(engine, cloud_key, clock, update_bundles=tmp_path)) as client:
        got = client.get(f"/updates/bundles/{digest}")
        assert got.status_code == 200 and got.content == data
        assert client.get(f"/updates/bundles/{'0' * 64}").status_code == 404
        assert client.get("/updates/bundles/..%2Fsecret").status_code in (404, 422)
        assert client.get(f"/updates/bundles/{digest.upper()}").status_code == 422
    with TestClient(create_app(engine, cloud_key, clock)) as client:
        assert client.get(f"/updates/bundles/{digest}").json()["error"] == "not_found"
