"""A page's address with a parameter it cannot take, and a page's error, answered as a page in
its app's layout (`cloud.web.page_answers`): the console's frame with its menu, the field app's,
the merchant's phone page's — never the API's JSON; the API's own addresses keep their JSON."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cloud.app import create_app
from cloud.people.auth import Role
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.world import MERCHANT, NOW, OPERATOR, PASSWORD, World


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def log_in(client: TestClient, app: str, user: str) -> None:
    token = csrf_of(client.get(f"{app}/login").text)
    answer = client.post(f"{app}/login", data={"csrf": token, "user": user,
                         "password": PASSWORD}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text


def wrong(page: str) -> dict[str, str]:
    """parameter → what the page says of it."""
    found = {}
    for item in page.split('data-parameter="')[1:]:
        name, rest = item.split('"', 1)
        found[name] = html.unescape(rest.split(">", 1)[1].split("</li>")[0])
    return found


# (address, the parameter named, words said of it, where "again" leads)
CONSOLE = [
    ("/console/monitoring?offset=abc&q=S1", "offset", "应为整数", "/console/monitoring?q=S1"),
    ("/console/monitoring?page=abc", "page", "这个页面没有这个参数", "/console/monitoring"),
    ("/console/monitoring?site=0", "site", "数值超出允许的范围", "/console/monitoring"),
    ("/console/alarms?severity=loud", "severity", "不是可选的值", "/console/alarms"),
    ("/console/registry/sites?offset=-1", "offset", "数值超出允许的范围",
     "/console/registry/sites"),
    ("/console/registry/nope", "address", "网址本身不对", "/console/registry/nope"),
    ("/console/reports/consumption/export?format=doc", "format", "不是可选的值",
     "/console/reports/consumption/export"),
    ("/console/oplog?since=1.6.2026&user=op", "since", "不是可选的值", "/console/oplog?user=op"),
]  # fmt: skip


def test_a_console_page_with_a_wrong_parameter_is_a_page_in_the_console(
    client: TestClient,
) -> None:
    log_in(client, "/console", STAFF_USERS[Role.ADMIN])
    for address, name, words, again in CONSOLE:
        answer = client.get(address)
        assert answer.status_code == 422, (address, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), address
        page = answer.text
        assert 'id="bad-query"' in page and 'class="menu"' in page, address  # the frame, its menu
        assert words in wrong(page)[name], (address, wrong(page))
        assert f'id="try-again" href="{html.escape(again)}"' in page, (address, page)
        assert "script-src 'self'" in answer.headers["content-security-policy"]
    english = client.get("/console/monitoring?offset=abc&lang=en")
    assert english.status_code == 422 and "should be a whole number" in english.text
    bad_lang = client.get("/console/monitoring?lang=klingon-and-more")  # the language itself
    assert bad_lang.status_code == 422 and "lang" in wrong(bad_lang.text)


def test_without_a_login_the_console_says_it_without_its_menu(client: TestClient) -> None:
    answer = client.get("/console/registry/nope", follow_redirects=False)
    assert answer.status_code in {303, 422}
    if answer.status_code == 422:  # the path is refused before the session is asked
        assert 'id="bad-query"' in answer.text and 'class="menu"' not in answer.text


def test_the_field_app_and_the_phone_page_answer_in_their_own_layout(client: TestClient) -> None:
    log_in(client, "/field", STAFF_USERS[Role.INSTALLER])
    field = client.get("/field/?tab=3")
    assert field.status_code == 422 and 'id="bad-query"' in field.text
    assert "field.css" in field.text and "tab" in wrong(field.text)
    ticket = client.get("/field/faults/abc")
    assert ticket.status_code == 422 and "address" in wrong(ticket.text)
    client.cookies.clear()
    phone = client.get("/m/login?bind=7")
    assert phone.status_code == 422 and "phone.css" in phone.text
    assert "数值超出允许的范围" in wrong(phone.text)["bind"]


def test_a_form_sent_to_an_address_it_cannot_take_is_answered_with_a_page(
    client: TestClient,
) -> None:
    """Only a POST's path parameters are FastAPI's to check (the pages read their forms
    themselves): a wrong one answers the page too, its link to the app's start page."""
    log_in(client, "/field", STAFF_USERS[Role.INSTALLER])
    form = client.post("/field/faults/abc/status", data={"to": "closed"})
    assert form.status_code == 422 and 'id="bad-query"' in form.text
    assert "field.css" in form.text and "address" in wrong(form.text)
    assert 'id="try-again" href="/field/"' in form.text
    # the field app's offline queue sends JSON and reads JSON back
    queued = client.post("/field/faults/abc/status", json={"to": "closed"})
    assert queued.status_code == 422 and queued.json()["error"] == "invalid"
    client.cookies.clear()
    log_in(client, "/console", STAFF_USERS[Role.ADMIN])
    verb = client.post("/console/corrections/c-1/sign", data={"csrf": "x"})
    assert verb.status_code == 422 and 'class="menu"' in verb.text
    assert "address" in wrong(verb.text) and 'id="try-again" href="/console/"' in verb.text


def test_the_apis_addresses_keep_their_json(client: TestClient) -> None:
    log_in(client, "/console", OPERATOR)
    for address in ("/registry/sites?limit=abc", "/registry/sites?bogus=1", "/meters?offset=-1"):
        answer = client.get(address)
        assert answer.status_code in {401, 422}, address
        assert answer.json()["error"] in {"invalid", "unauthorized"}, address


def test_a_page_error_is_shown_in_its_apps_layout(client: TestClient) -> None:
    log_in(client, "/console", STAFF_USERS[Role.ADMIN])
    missing = client.get("/console/registry/sites/999999")
    assert missing.status_code == 404 and 'id="page-error"' in missing.text
    assert 'class="menu"' in missing.text and "找不到这条记录" in missing.text
    assert 'href="/console/registry"' in missing.text and "phone.css" not in missing.text
    client.cookies.clear()
    log_in(client, "/field", STAFF_USERS[Role.INSTALLER])
    fault = client.get("/field/faults/999999")
    assert fault.status_code == 404 and 'id="page-error"' in fault.text
    assert "field.css" in fault.text and 'href="/field/"' in fault.text
    client.cookies.clear()
    log_in(client, "/m", MERCHANT)
    order = client.get("/m/orders/NOPE-1")
    assert order.status_code == 404 and "phone.css" in order.text
