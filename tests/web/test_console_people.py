"""The console's people screens through FastAPI's TestClient on every backend (SQLite,
PostgreSQL): the admin creates a user, changes its role, name and state, sets its password and
lifts a lockout, each through `cloud.people.auth` with the operator-log row `/users` writes;
every form needs its CSRF token and a bad field is told in words and changes nothing; other
roles get the refusal page; the operator log is filtered and its chain checked as
`/operator-log/verify` checks it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db.auth import OperatorLogEntry, User
from cloud.people import auth
from cloud.people.auth import STAFF, Role
from cloud.web import catalogue, console_people
from tests.cloud.api.conftest import bearer, issue_token
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.test_console_pages import log_in
from tests.web.world import MERCHANT, NOW, World

ADMIN = STAFF_USERS[Role.ADMIN]
NEW_PASSWORD = "a-new-secret-2026"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    log_in(client, ADMIN)
    return client


def _log(world: World, action: str) -> list[OperatorLogEntry]:
    with Session(world.engine) as session:
        query = select(OperatorLogEntry).where(OperatorLogEntry.action == action)
        return list(session.scalars(query.order_by(OperatorLogEntry.seq)))


def _log_size(world: World) -> int:
    with Session(world.engine) as session:
        return session.scalar(select(func.count()).select_from(OperatorLogEntry)) or 0


def _user(world: World, name: str) -> User | None:
    with Session(world.engine) as session:
        found = session.get(User, name)
        if found is not None:
            session.expunge(found)
        return found


def _post(client: TestClient, path: str, page: str, **fields: str) -> Any:
    """A form of the console page at `page`, posted with that page's CSRF token."""
    token = csrf_of(client.get(page).text)
    return client.post(path, data={"csrf": token, **fields}, follow_redirects=False)


NEW_USER = {"name": "fin-2", "role": "finance", "display_name": "王会计", "account": "",
            "password": NEW_PASSWORD, "password2": NEW_PASSWORD}  # fmt: skip


def test_the_admin_creates_a_user_who_can_log_in_and_the_log_says_who(
    admin: TestClient, world: World
) -> None:
    listing = admin.get("/console/people")
    assert listing.status_code == 200
    assert set(re.findall(r'data-user="([^"]+)"', listing.text)) >= set(STAFF_USERS.values())
    answer = _post(admin, "/console/people", "/console/people", **NEW_USER)
    assert (answer.status_code, answer.headers["location"]) == (
        303, "/console/people/fin-2?done=created")  # fmt: skip
    assert "用户已创建" in admin.get(answer.headers["location"]).text
    made = _user(world, "fin-2")
    assert made is not None and (made.role, made.display_name, made.active) == (
        "finance", "王会计", True)  # fmt: skip
    (row,) = _log(world, "user.create")
    assert (row.user, row.role, row.target) == (ADMIN, "admin", "user:fin-2")
    assert row.after == auth.user_view(made)  # as `POST /users` logs it: never the password
    assert NEW_PASSWORD not in str(row.after)
    admin.cookies.clear()
    assert log_in(admin, "fin-2", NEW_PASSWORD) == "/console/"


BAD_NEW_USERS = [
    ({"name": "bad name!"}, "用户名须为1到64位", 422),
    ({"role": "superuser"}, "请从列表中选择一个角色", 422),
    ({"password": "short", "password2": "short"}, "密码太短：至少需要 10 位", 422),
    ({"password2": "something-else-1"}, "两次输入的密码不一致", 422),
    ({"role": "merchant"}, "商户角色必须填写其账户", 422),
    ({"account": "A0001"}, "商户角色必须填写其账户", 422),
    ({"display_name": "名" * 201}, "姓名太长", 422),
    ({"name": "op-1"}, "这个用户名已被使用", 409),
]


@pytest.mark.parametrize(("change", "told", "status"), BAD_NEW_USERS)
def test_a_bad_new_user_is_told_in_words_and_changes_nothing(
    admin: TestClient, world: World, change: dict[str, str], told: str, status: int
) -> None:
    before = _log_size(world)
    answer = _post(admin, "/console/people", "/console/people", **{**NEW_USER, **change})
    assert answer.status_code == status
    assert told in answer.text and 'role="alert"' in answer.text
    assert NEW_PASSWORD not in answer.text  # the password is never sent back
    if change.get("name") != "op-1":
        assert _user(world, NEW_USER["name"] if "name" not in change else change["name"]) is None
    assert _log_size(world) == before


def test_every_people_form_needs_its_csrf_token(admin: TestClient, world: World) -> None:
    before = _log_size(world)
    for path in ("/console/people", "/console/people/op-1", "/console/people/op-1/password",
                 "/console/people/op-1/unlock"):  # fmt: skip
        for token in (None, "forged"):
            data = {**NEW_USER, "role": "auditor"} | ({} if token is None else {"csrf": token})
            answer = admin.post(path, data=data, follow_redirects=False)
            assert answer.status_code == 403 and "页面已过期" in answer.text, path
    assert _user(world, "fin-2") is None and _user(world, "op-1").role == "operator"  # type: ignore[union-attr]
    assert _log_size(world) == before


def test_role_name_and_state_change_and_the_users_sessions_end(
    admin: TestClient, world: World
) -> None:
    token = issue_token(world.engine, "op-1")
    page = "/console/people/op-1"  # the form without `active`: the box unticked
    answer = _post(admin, page, page, role="auditor", display_name="李审计", account="")
    assert answer.headers["location"] == "/console/people/op-1?done=saved"
    changed = _user(world, "op-1")
    assert changed is not None
    assert (changed.role, changed.display_name, changed.active) == ("auditor", "李审计", False)
    (row,) = _log(world, "user.update")
    assert row.user == ADMIN and row.before["role"] == "operator"  # type: ignore[index]
    assert row.after == auth.user_view(changed)
    assert admin.get("/accounts", headers=bearer(token)).status_code == 401  # sessions ended
    page = admin.get("/console/people/op-1?done=saved").text
    assert "已保存" in page and "已停用" in page


def test_the_last_admin_is_neither_demoted_nor_disabled(admin: TestClient, world: World) -> None:
    page = f"/console/people/{ADMIN}"
    for fields in ({"role": "operator", "active": "1"}, {"role": "admin"}):
        answer = _post(admin, page, page, display_name="x", account="", **fields)
        assert answer.status_code == 409 and "最后一个启用的管理员" in answer.text
    still = _user(world, ADMIN)
    assert still is not None and (still.role, still.active) == ("admin", True)
    assert _log(world, "user.update") == []


def _wrong_logins(client: TestClient, user: str, times: int) -> None:
    for _ in range(times):
        token = csrf_of(client.get("/console/login").text)
        client.post("/console/login", data={"csrf": token, "user": user, "password": "wrong"})


def test_a_lockout_is_lifted_and_a_password_set(client: TestClient, world: World) -> None:
    _wrong_logins(client, "aud-c", auth.MAX_FAILURES)
    locked = _user(world, "aud-c")
    assert locked is not None and locked.locked_until is not None
    client.cookies.clear()
    log_in(client, ADMIN)
    page = client.get("/console/people/aud-c").text
    assert "已锁定" in page and 'id="unlock"' in page
    answer = _post(client, "/console/people/aud-c/unlock", "/console/people/aud-c")
    assert answer.headers["location"] == "/console/people/aud-c?done=unlocked"
    (row,) = _log(world, "user.unlock")
    assert (row.user, row.target, row.after) == (ADMIN, "user:aud-c", {
        "failed_logins": 0, "locked_until": None})  # fmt: skip
    assert 'id="unlock"' not in client.get("/console/people/aud-c").text
    # A password too short or typed differently twice is refused; then one is set.
    mistyped = NEW_PASSWORD + "x"
    for first, second, told in (("short", "short", "密码太短"),
                                (NEW_PASSWORD, mistyped, "两次输入的密码不一致")):  # fmt: skip
        refused = _post(client, "/console/people/aud-c/password", "/console/people/aud-c",
                        password=first, password2=second)  # fmt: skip
        assert refused.status_code == 422 and told in refused.text
    assert _log(world, "user.password_reset") == []
    done = _post(client, "/console/people/aud-c/password", "/console/people/aud-c",
                 password=NEW_PASSWORD, password2=NEW_PASSWORD)  # fmt: skip
    assert done.headers["location"] == "/console/people/aud-c?done=password"
    (reset,) = _log(world, "user.password_reset")
    assert (reset.user, reset.target) == (ADMIN, "user:aud-c")
    client.cookies.clear()
    assert log_in(client, "aud-c", NEW_PASSWORD) == "/console/"


@pytest.mark.parametrize("role", [r for r in STAFF_USERS if r is not Role.ADMIN])
def test_other_roles_get_the_refusal_page_and_change_nothing(
    client: TestClient, world: World, role: Role
) -> None:
    log_in(client, STAFF_USERS[role])
    for path in ("/console/people", "/console/people/op-1"):
        refused = client.get(path)
        assert refused.status_code == 403 and 'id="refused"' in refused.text
        assert '<nav class="menu"' in refused.text  # inside the console, with its own menu
    home = client.get("/console/", follow_redirects=False).headers["location"]
    token = csrf_of(client.get(home).text)
    answer = client.post("/console/people", data={"csrf": token, **NEW_USER})
    assert answer.status_code == 403 and _user(world, "fin-2") is None
    answer = client.post("/console/people/aud-c/password", data={
        "csrf": token, "password": NEW_PASSWORD, "password2": NEW_PASSWORD})  # fmt: skip
    assert answer.status_code == 403 and _log(world, "user.password_reset") == []
    # The operator log is every staff role's, as `/operator-log` is; not the installer's.
    assert client.get("/console/oplog").status_code == (200 if role in STAFF else 403)


def test_a_merchant_is_sent_to_its_phone_page(client: TestClient) -> None:
    log_in(client, MERCHANT)
    for path in ("/console/people", "/console/oplog", "/console/dashboard"):
        answer = client.get(path, follow_redirects=False)
        assert answer.headers["location"] == "/m/"


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]


def test_the_operator_log_is_filtered_and_its_chain_checked_as_the_api_does(
    client: TestClient, world: World
) -> None:
    log_in(client, "aud-c")
    everything = client.get("/console/oplog")
    assert everything.status_code == 200 and 'id="verdict"' not in everything.text
    seqs = _seqs(everything.text)
    assert seqs == sorted(seqs, reverse=True) and seqs  # newest first
    token = issue_token(world.engine, "aud-c")
    api = client.get("/operator-log", params={"user": "op-1", "limit": 500},
                     headers=bearer(token)).json()  # fmt: skip
    mine = client.get("/console/oplog", params={"user": "op-1"}).text
    assert sorted(_seqs(mine)) == sorted(e["seq"] for e in api["items"]) and api["items"]
    about = client.get("/operator-log", params={"target": "user:aud-c", "limit": 500},
                       headers=bearer(token)).json()["items"]  # fmt: skip
    page = client.get("/console/oplog", params={"target": "user:aud-c"}).text
    assert sorted(_seqs(page)) == sorted(e["seq"] for e in about) and about
    day = NOW.date().isoformat()  # NOW is 17:00 in Shanghai: the same day there
    api_day = client.get("/operator-log", params={
        "from": f"{day}T00:00:00+08:00", "to": f"{day}T23:59:59.999999+08:00", "limit": 500,
    }, headers=bearer(token)).json()  # fmt: skip
    on_day = client.get("/console/oplog", params={"since": day, "until": day}).text
    assert f"共 {api_day['total']} 条" in on_day
    assert client.get("/console/oplog", params={"since": "2026-13-01"}).status_code == 422
    refused = client.get("/console/oplog", params={"since": day, "until": "2026-01-01"})
    assert refused.status_code == 422 and "开始日期晚于结束日期" in refused.text
    verified = client.get("/console/oplog", params={"verify": 1}).text
    verdict = client.get("/operator-log/verify", headers=bearer(token)).json()
    assert verdict["ok"] and 'data-ok="true"' in verified
    assert f"{verdict['rows']} 条记录，末条哈希 {verdict['head'][:16]}" in verified
    with Session(world.engine) as session, session.begin():  # someone edits a row
        session.execute(update(OperatorLogEntry).where(OperatorLogEntry.seq == 2)
                        .values(action="tampered"))  # fmt: skip
    broken = client.get("/console/oplog", params={"verify": 1}).text
    assert 'data-ok="false"' in broken and "row 2 was altered" in broken


def test_what_a_form_did_is_said_in_words() -> None:
    assert {f"done_{done}" for done in console_people.DONE} <= set(catalogue.MESSAGES)
