"""Hostile and impossible requests (issue 13): each gets one error shape, `{"error", "detail"}`,
with a 4xx status, and changes nothing; none gets a 500. On SQLite and PostgreSQL.

Every row here was a defect: a 500 for a NaN, a lone surrogate, a month or a time at the edge of
the calendar; a body read whole whatever its size; tokens outliving a lockout; a locked user
told apart from an unknown one; FastAPI's own error lists; unknown query parameters ignored; a
move to a shop that is unknown or taken, and a refund of nothing, answered 201.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cloud.app import create_app
from cloud.db.engine import session_factory
from cloud.db.operations import Move, Refund
from cloud.people import oplog_heads
from cloud.people.auth import MAX_FAILURES, Role
from cloud.people.oplog_heads import HeadsFile
from ledger.chain import NodeKey
from tests.cloud.api.conftest import PASSWORD, Site, bearer
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0
from tests.cloud.people.test_oplog_heads import cut, write

ANONYMOUS = {"Authorization": ""}
JSON = {"Content-Type": "application/json"}


def is_error(answer: Any, status: int, error: str) -> None:
    """`answer` is `status` with the one error shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == error and isinstance(body["detail"], str) and body["detail"], body


@pytest.mark.parametrize(
    "payload",
    [
        b'{"user": NaN, "password": "x"}',
        b'{"user": "admin-1", "password": Infinity}',
        b'{"user": "\\ud800", "password": "x"}',  # a lone surrogate
        b'{"user": "admin-1", "password": "x\\udfff"}',
        b'{"user": "admin-1", "password": "x", "user": "y"}',  # a key twice
        b'{"user": 1' + b"0" * 5000 + b', "password": "x"}',
        b"[" * 10_000 + b"]" * 10_000,
        b"\xff\xfe not UTF-8",
    ],
)
def test_hostile_json_is_422(client: TestClient, payload: bytes) -> None:
    answer = client.post("/auth/login", content=payload, headers=ANONYMOUS | JSON)
    is_error(answer, 422, "invalid")


def test_a_lone_surrogate_in_a_name_is_422_and_stores_nothing(client: TestClient) -> None:
    before = client.get("/registry/merchants").json()["total"]
    answer = client.post(
        "/registry/merchants", content=b'{"name": "Li \\ud83d"}', headers=JSON
    )  # half an emoji
    is_error(answer, 422, "invalid")
    assert client.get("/registry/merchants").json()["total"] == before
    user = client.post("/users", content=b'{"name": "li", "role": "auditor", "password": '
                       b'"long enough pass", "display_name": "\\udc00"}', headers=JSON)  # fmt: skip
    is_error(user, 422, "invalid")


@pytest.mark.parametrize(
    "path",
    [
        "/statements/A0001?month=9999-12",
        "/statements/A0001?month=0000-01",
        "/readings?since=0001-01-01T00:00:00%2B14:00",
        "/readings?until=9999-12-31T23:59:59-14:00",
        "/operator-log?from=0001-01-01T00:00:00%2B01:00",
        "/reports/consumption?from=9999-12-31&to=9999-12-31",
        "/ledger?limit=0",
        "/accounts?offset=-1",
    ],
)
def test_values_at_the_edge_of_their_range_are_422(client: TestClient, path: str) -> None:
    is_error(client.get(path), 422, "invalid")


@pytest.mark.parametrize(
    "path", ["/registry/merchants?id_number=1234567", "/accounts?bogus=1", "/health?x=1"]
)
def test_unknown_query_parameters_are_refused(client: TestClient, path: str) -> None:
    answer = client.get(path)
    is_error(answer, 422, "invalid")
    assert "unknown query parameter" in answer.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/registry/merchants?name=Li&limit=5",
        "/accounts?limit=1&offset=0",
        "/operator-log?user=x&action=user.*&from=2026-01-01T00:00:00%2B08:00&sort=-seq",
        "/readings?meter=000000000001&since=2026-01-01T00:00:00Z",
        "/refunds?from=2026-01-01T00:00:00Z&account=A0001&sort=-fen",
    ],
)
def test_declared_query_parameters_are_taken(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text


def test_a_body_beyond_the_limit_is_413_before_it_is_read_whole(client: TestClient) -> None:
    big = b'{"user": "' + b"x" * (3 << 20) + b'", "password": "y"}'
    is_error(client.post("/auth/login", content=big, headers=ANONYMOUS | JSON), 413, "too_large")
    # 64 MiB announced by no Content-Length, straight into the ASGI app (a TestClient would
    # read the whole stream itself first): the app stops asking after the limit.
    asked, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b" " * 65536, "more_body": asked < 1024}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/auth/login", "raw_path": b"/auth/login",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("testserver", 80),
             "headers": [(b"content-type", b"application/json")]}  # fmt: skip
    # in a thread of its own: a browser test's loop may be running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, client.app(scope, receive, send)).result()
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "too_large"
    assert asked <= 33  # 2 MiB and one chunk more, of the 1024 the client had


def test_framework_errors_have_the_one_shape(client: TestClient) -> None:
    is_error(client.get("/no/such/path"), 404, "not_found")
    is_error(client.delete("/health"), 405, "method_not_allowed")
    is_error(client.post("/auth/login", json={"user": "x"}, headers=ANONYMOUS), 422, "invalid")
    is_error(client.get("/auth/me", headers=ANONYMOUS), 401, "unauthorized")


def test_openapi_documents_the_one_error_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            for status in ("413", "422", "500"):
                answer = operation["responses"].get(status)
                assert answer is not None, (method, path, status)
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorOut", (method, path, status)


# -- logins ------------------------------------------------------------------------------------


def login(client: TestClient, user: str, password: str) -> Any:
    return client.post("/auth/login", json={"user": user, "password": password},
                       headers=ANONYMOUS)  # fmt: skip


def test_a_lockout_ends_the_users_sessions(client: TestClient) -> None:
    token = login(client, "operator-1", PASSWORD).json()["token"]
    assert client.get("/auth/me", headers=bearer(token)).status_code == 200
    for _ in range(MAX_FAILURES):
        assert login(client, "operator-1", "wrong password").status_code == 401
    is_error(client.get("/auth/me", headers=bearer(token)), 401, "unauthorized")


def test_a_locked_user_answers_like_an_unknown_one(client: TestClient) -> None:
    for _ in range(MAX_FAILURES):
        login(client, "finance-1", "wrong password")
    locked = login(client, "finance-1", PASSWORD)  # the right password, but locked
    unknown = login(client, "nobody-at-all", PASSWORD)
    assert (locked.status_code, locked.json()) == (unknown.status_code, unknown.json())
    assert locked.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")


# -- operations that cannot happen ---------------------------------------------------------------


def rows(site: Site, table: Any) -> int:
    with session_factory(site.engine)() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"account": "A0001", "to_shop": "S102", "to_node": "edge-0001"}, 409),  # A0002's
        ({"account": "A0001", "to_shop": "S201", "to_node": "edge-0002"}, 409),  # A0101's
        ({"account": "A0001", "to_shop": "S777", "to_node": "edge-0001"}, 404),  # unknown
        ({"account": "A0001", "to_shop": "S777", "to_node": "edge-0002"}, 404),
    ],
)
def test_a_move_to_a_shop_unknown_or_taken_is_refused_without_a_registry(
    client: TestClient, site: Site, body: dict[str, str], status: int
) -> None:
    answer = client.post("/moves", json=body)
    is_error(answer, status, "not_found" if status == 404 else "conflict")
    assert rows(site, Move) == 0


def test_a_refund_of_nothing_is_refused(client: TestClient, site: Site) -> None:
    # A0002 holds subsidy and grace (never refundable), no prepaid money.
    body = {"account": "A0002", "method": "cash", "grace_wh": 0, "grace_hours": 0}
    answer = client.post("/refunds", json=body)
    is_error(answer, 409, "conflict")
    assert "nothing to refund" in answer.json()["detail"]
    assert rows(site, Refund) == 0


# -- the operator log's anchor -------------------------------------------------------------------


def test_the_api_holds_the_operator_log_to_its_signed_heads(
    engine: Engine, cloud_key: NodeKey, clock: Clock, tokens: dict[Role, str], tmp_path: Path
) -> None:
    heads = tmp_path / "oplog-heads.jsonl"
    write(engine, "a.one", "a.two", "a.three")
    with session_factory(engine)() as session:
        HeadsFile(heads).append(oplog_heads.current(session, cloud_key, T0))
    with TestClient(create_app(engine, cloud_key, clock, oplog_heads=heads)) as api:
        api.headers.update(bearer(tokens[Role.AUDITOR]))
        assert api.get("/operator-log/verify").json()["ok"]
        cut(engine, 1)  # rows deleted and the head moved back, every hash consistent
        verdict = api.get("/operator-log/verify").json()
    assert not verdict["ok"] and "rows were deleted or the head moved back" in verdict["problem"]
