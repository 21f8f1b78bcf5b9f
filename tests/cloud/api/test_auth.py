"""Logging in and out through the API, the roles `allow` enforces, lockouts and throttling,
users managed by the admin, merchants kept to their own account, and the operator log."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi.testclient import TestClient

from cloud.db.engine import session_factory
from cloud.people import oplog
from cloud.people.auth import (
    ADDRESS_ATTEMPTS,
    ADDRESS_WINDOW,
    LOCKOUT,
    MAX_FAILURES,
    TOKEN_TTL,
    Role,
)
from tests.cloud.api.conftest import M3, PASSWORD, T0, bearer
from tests.cloud.conftest import Clock


def test_login_me_logout(client: TestClient, engine) -> None:
    anonymous = {"Authorization": ""}
    answer = client.post("/auth/login", json={"user": "operator-1", "password": PASSWORD},
                         headers=anonymous)  # fmt: skip
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert client.get("/auth/me", headers=bearer(token)).json() == {
        "user": "operator-1", "role": "operator", "account": None,
    }  # fmt: skip
    assert client.post("/auth/logout", headers=bearer(token)).status_code == 204
    gone = client.get("/auth/me", headers=bearer(token))
    assert gone.status_code == 401 and gone.headers["WWW-Authenticate"] == "Bearer"
    with session_factory(engine)() as session:
        verdict = oplog.verify(session)
        assert verdict.ok and verdict.rows == 2  # login, logout
        actions = [e.action for e in session.scalars(oplog.select(oplog.OperatorLogEntry))]
    assert actions == ["login", "logout"]


def test_wrong_passwords_lock_the_user(client: TestClient, engine) -> None:
    for _ in range(MAX_FAILURES):
        wrong = client.post("/auth/login", json={"user": "finance-1", "password": "nope" * 3})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "wrong user name or password"
    locked = client.post("/auth/login", json={"user": "finance-1", "password": PASSWORD})
    # Told apart from a wrong password by nothing (test_hardening.py: nor from an unknown user).
    assert (locked.status_code, locked.json()["detail"]) == (401, "wrong user name or password")
    assert client.get("/users/finance-1").json()["locked_until"] is not None
    with session_factory(engine)() as session:
        assert oplog.verify(session).ok


def test_missing_token_is_401_and_wrong_role_403(client: TestClient, tokens) -> None:
    assert client.get("/auth/me", headers={"Authorization": ""}).status_code == 401
    assert client.get("/auth/me", headers=bearer(tokens[Role.AUDITOR])).status_code == 200


ANONYMOUS = {"Authorization": ""}


def login(client: TestClient, user: str, password: str = PASSWORD) -> Any:
    return client.post("/auth/login", json={"user": user, "password": password},
                       headers=ANONYMOUS)  # fmt: skip


def test_one_address_is_throttled_whatever_the_user(client: TestClient, clock: Clock) -> None:
    for number in range(ADDRESS_ATTEMPTS):
        assert login(client, f"nobody-{number}", "wrong password").status_code == 401
    throttled = login(client, "operator-1")  # the right password does not help
    assert throttled.status_code == 429
    assert "too many login attempts" in throttled.json()["detail"]
    clock.advance(seconds=ADDRESS_WINDOW.total_seconds() + 1)
    assert login(client, "operator-1").status_code == 200


def test_a_locked_user_is_unlocked_by_an_admin(client: TestClient, engine) -> None:
    for _ in range(MAX_FAILURES):
        assert login(client, "finance-1", "wrong password").status_code == 401
    assert login(client, "finance-1").status_code == 401  # locked
    shown = client.get("/users/finance-1").json()
    assert shown["locked_until"] is not None
    unlocked = client.post("/users/finance-1/unlock")
    assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
    assert login(client, "finance-1").status_code == 200
    actions = [e["action"] for e in client.get("/operator-log").json()["items"]]
    assert actions == ["login.failed"] * (MAX_FAILURES - 1) + [
        "login.locked",
        "login.failed",
        "login.failed",
        "user.unlock",
        "login",
    ]  # fmt: skip (the attempt while locked is logged as a failure too)


def test_a_lockout_ends_by_itself(client: TestClient, clock: Clock) -> None:
    for _ in range(MAX_FAILURES):
        login(client, "auditor-1", "wrong password")
    clock.advance(seconds=LOCKOUT.total_seconds() + 1)
    assert login(client, "auditor-1").status_code == 200


def test_an_expired_token_is_401(client: TestClient, clock: Clock) -> None:
    token = login(client, "operator-1").json()["token"]
    assert client.get("/auth/me", headers=bearer(token)).status_code == 200
    clock.advance(seconds=TOKEN_TTL.total_seconds())
    expired = client.get("/auth/me", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert client.get("/auth/me", headers=bearer("made-up")).status_code == 401


def test_a_disabled_user_is_401_and_cannot_log_in(client: TestClient, tokens) -> None:
    token = tokens[Role.OPERATOR]
    changed = client.patch("/users/operator-1", json={"active": False})
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert client.get("/auth/me", headers=bearer(token)).status_code == 401
    assert login(client, "operator-1").status_code == 401
    client.patch("/users/operator-1", json={"active": True})
    assert login(client, "operator-1").status_code == 200


def test_changing_ones_own_password(client: TestClient, tokens) -> None:
    first = login(client, "auditor-1").json()["token"]
    second = login(client, "auditor-1").json()["token"]
    new = "a brand new passphrase"
    short = client.post("/auth/password", json={"old": PASSWORD, "new": "short"},
                        headers=bearer(first))  # fmt: skip
    assert short.status_code == 422
    wrong = client.post("/auth/password", json={"old": "not it at all", "new": new},
                        headers=bearer(first))  # fmt: skip
    assert wrong.status_code == 403
    done = client.post("/auth/password", json={"old": PASSWORD, "new": new}, headers=bearer(first))
    assert done.status_code == 204
    assert client.get("/auth/me", headers=bearer(first)).status_code == 200  # this session stays
    assert client.get("/auth/me", headers=bearer(second)).status_code == 401  # the others end
    assert login(client, "auditor-1").status_code == 401
    assert login(client, "auditor-1", new).status_code == 200
    log = client.get("/operator-log", params={"user": "auditor-1"}).json()["items"]
    assert "password.refused" in [e["action"] for e in log]
    assert "password.change" in [e["action"] for e in log]


def test_guessing_the_password_with_a_stolen_token_locks_the_user(
    client: TestClient, tokens
) -> None:
    stolen = bearer(tokens[Role.FINANCE])
    for _ in range(MAX_FAILURES):
        answer = client.post("/auth/password", json={"old": "guess guess", "new": "x" * 12},
                             headers=stolen)  # fmt: skip
        assert answer.status_code in {401, 403}
    assert client.get("/auth/me", headers=stolen).status_code == 401
    assert login(client, "finance-1").status_code == 401  # locked


def test_users_are_managed_by_the_admin_and_logged_without_secrets(
    client: TestClient, engine
) -> None:
    body = {"name": "m-2", "role": "merchant", "account": "A0002",
            "password": "merchant password", "display_name": "Shop"}  # fmt: skip
    made = client.post("/users", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["account"] == "A0002" and "password" not in made.text
    refusals = [
        ({"name": "x", "role": "merchant", "password": "long enough!"}, 422),  # no account
        ({"name": "x", "role": "auditor", "account": "A1", "password": "long enough!"}, 422),
        ({"name": "x", "role": "auditor", "password": "short"}, 422),
        ({"name": "x", "role": "owner", "password": "long enough!"}, 422),
        ({"name": "m-2", "role": "auditor", "password": "long enough!"}, 409),
    ]
    for body, code in refusals:
        assert client.post("/users", json=body).status_code == code, body
    assert client.patch("/users/m-2", json={"role": "operator"}).json()["account"] is None
    assert client.patch("/users/admin-1", json={"active": False}).status_code == 409  # last admin
    assert client.patch("/users/nobody", json={}).status_code == 404
    assert (
        client.post("/users/m-2/password", json={"password": "reset by admin"}).status_code == 204
    )
    assert login(client, "m-2", "reset by admin").status_code == 200
    names = [u["name"] for u in client.get("/users").json()["items"]]
    assert names == sorted(names) and "m-2" in names
    with session_factory(engine)() as session:
        rows = list(session.scalars(oplog.select(oplog.OperatorLogEntry)))
        assert oplog.verify(session).ok
    text = json.dumps([(r.before, r.after) for r in rows])
    for secret in ("merchant password", "reset by admin", "argon2"):
        assert secret not in text
    assert [r.action for r in rows if r.target == "user:m-2"] == [
        "user.create", "user.update", "user.password_reset", "login",
    ]  # fmt: skip


def test_a_merchant_sees_only_its_own_account(client: TestClient, tokens) -> None:
    own = bearer(tokens[Role.MERCHANT])  # merchant-1 owns A0001
    client.post("/recharges", json={"account": "A0002", "fen": 100, "method": "cash",
                                    "payment": "P-OTHER"})  # fmt: skip
    client.post("/recharges", json={"account": "A0001", "fen": 100, "method": "cash",
                                    "payment": "P-OWN"})  # fmt: skip
    assert [a["account"] for a in client.get("/accounts", headers=own).json()["items"]] == ["A0001"]
    assert client.get("/accounts/A0001", headers=own).status_code == 200
    assert client.get("/accounts/A0002", headers=own).status_code == 403
    assert client.get("/accounts", params={"node": "edge-0002"}, headers=own).json()["total"] == 0
    recharges = client.get("/recharges", headers=own).json()["items"]
    assert [r["payment"] for r in recharges] == ["P-OWN"]
    assert client.get("/recharges/P-OWN", headers=own).status_code == 200
    assert client.get("/recharges/P-OTHER", headers=own).status_code == 403
    assert client.get("/recharges", params={"account": "A0002"}, headers=own).status_code == 403
    entries = client.get("/ledger", headers=own).json()["items"]
    assert entries and all("A0001:" in e["debit"] + e["credit"] for e in entries)
    assert client.get("/ledger", params={"account": "A0002"}, headers=own).status_code == 403
    assert client.get("/ledger", params={"account": "A0002:prepaid"},
                      headers=own).status_code == 403  # fmt: skip
    meters = client.get("/meters", headers=own).json()["items"]
    assert {m["account"] for m in meters} == {"A0001"}
    readings = client.get("/readings", headers=own).json()["items"]
    assert readings and {r["meter"] for r in readings} <= {m["address"] for m in meters}
    assert client.get("/readings", params={"meter": M3}, headers=own).status_code == 403
    assert client.get("/commands", headers=own).status_code == 403
    assert client.get("/operator-log", headers=own).status_code == 403


def test_the_operator_log_filters_pages_and_verifies(client: TestClient, clock: Clock) -> None:
    for user in ("operator-1", "finance-1", "operator-1"):
        login(client, user)
        clock.advance(minutes=1)
    login(client, "ghost", "wrong password")
    every = client.get("/operator-log").json()
    assert every["total"] == 4 and [e["seq"] for e in every["items"]] == [1, 2, 3, 4]
    assert client.get("/operator-log", params={"user": "operator-1"}).json()["total"] == 2
    assert client.get("/operator-log", params={"action": "login.*"}).json()["total"] == 1
    assert client.get("/operator-log", params={"target": "user:finance-1"}).json()["total"] == 1
    since = (T0 + dt.timedelta(seconds=30)).isoformat()
    until = (T0 + dt.timedelta(minutes=2)).isoformat()
    assert client.get("/operator-log", params={"from": since, "to": until}).json()["total"] == 1
    newest = client.get("/operator-log", params={"sort": "-time", "limit": 2}).json()
    assert [e["seq"] for e in newest["items"]] == [4, 3] and newest["total"] == 4
    assert client.get("/operator-log", params={"sort": "user"}).status_code == 422
    assert client.get("/operator-log", params={"from": "2026-11-24T08:00:00"}).status_code == 422
    verdict = client.get("/operator-log/verify").json()
    assert verdict == {"ok": True, "rows": 4, "head": every["items"][-1]["hash"], "problem": ""}
