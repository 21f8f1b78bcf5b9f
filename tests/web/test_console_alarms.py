"""The console's alarms through FastAPI's TestClient on every backend (SQLite, PostgreSQL): the
live feed (`/console/events`: refused without a session, alarms and values as they are
ingested through the real ingest, resumed by `Last-Event-ID`, ended with the session, bounded
per session), the pop-up preferences (CSRF, validation, applied to the feed), and the alarms
screen with its acknowledgement (the service and operator log of `POST /alarms/{id}/...`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.chains.alarms import raise_alarm
from cloud.config import SILENT_AFTER_MIN
from cloud.db import models
from cloud.db.auth import OperatorLogEntry
from cloud.db.console import AlarmPrefs
from cloud.db.engine import session_factory
from cloud.notices import sources
from cloud.people import auth
from cloud.people.auth import Role
from cloud.web import catalogue, live
from cloud.web.forms import yuan_text
from tests.cloud.api.conftest import M1, M3, NODE, OTHER, issue_token, reading
from tests.cloud.fake_edge import ms
from tests.web.console_world import STAFF_USERS, add_staff_and_readings, take_offline
from tests.web.html import csrf_of
from tests.web.test_console_pages import log_in
from tests.web.world import MERCHANT, NOW, World

FAST = dataclasses.replace(live.PACE, tick=0.05, lifetime=8.0, beat=0.5)
Event = tuple[str, str, Any]  # id, name, data


@pytest.fixture
def client(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    monkeypatch.setattr(live, "PACE", FAST)
    monkeypatch.setattr("cloud.web.console_alarms.PACE", FAST)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def read_events(lines: Iterator[str], until: str, most: int = 40) -> list[Event]:
    """Events off a stream up to the first named `until` (at most `most` of them)."""
    events: list[Event] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if "event" in fields:
            events.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
            if fields["event"] == until or len(events) >= most:
                return events
        fields = {}
    return events


_next_event = iter(range(100, 10_000))


def low_balance(world: World, account: str = "A0001", meter: str = M1,
                kind: str = "low_balance") -> None:  # fmt: skip
    """An alarm of the concentrator's, uploaded through the real ingest."""
    event = {"id": next(_next_event), "t": ms(NOW - dt.timedelta(minutes=1)), "c": "alarm",
             "k": kind, "m": meter, "a": account, "d": {"fen": 900}}  # fmt: skip
    assert world.site.upload(NODE, events=[event]).status.value == "ok"


def test_the_feed_wants_a_staff_session(client: TestClient) -> None:
    answer = client.get("/console/events")
    assert answer.status_code == 401  # not a redirect: an EventSource would not follow it
    log_in(client, MERCHANT)
    assert client.get("/console/events").status_code == 403


def test_the_feed_pushes_alarms_grouped_by_place_and_values_as_ingested(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    with client.stream("GET", "/console/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        (hello_id, name, hello), *_ = read_events(lines, "hello")
        assert name == "hello" and hello["popup"] and hello["sound"]
        assert hello["words"]["group"] == catalogue.MESSAGES["live_group"][0]
        low_balance(world)
        ack = world.site.upload(NODE, readings=[reading(M1, NOW - dt.timedelta(minutes=1),
                                                        123_400, relay=0)])  # fmt: skip
        assert ack.status.value == "ok"
        got = read_events(lines, "values")
    alarms = [a for _, name, data in got if name == "alarms" for a in data]
    assert [(a["kind"], a["building"], a["floor"], a["node"]) for a in alarms] == [
        ("low_balance", "B1", "1F", NODE)
    ]  # codes only: the page words them in its own language
    assert not {"kind_name", "place"} & set(alarms[0])
    assert hello["words"]["kinds"]["low_balance"] == "低余额"
    assert hello["words"]["kinds"]["node_silent"] == "集中器失联"
    assert hello["words"]["node"] == "集中器 {node}"
    values = [v for _, name, data in got if name == "values" for v in data]
    m1 = next(v for v in values if v["meter"] == M1)
    assert (m1["register"], m1["relay"], m1["relay_text"]) == ("123.4", False, "分闸")
    with Session(world.engine) as session:
        stored = session.scalar(select(models.Alarm.id).where(models.Alarm.id == alarms[0]["id"]))
        balance = session.get(models.Balance, "A0001:prepaid")
    assert stored == alarms[0]["id"]
    assert balance is not None
    assert m1["balance"] == yuan_text(sources.available(balance))
    assert int(got[-1][0].split("-")[0]) == alarms[0]["id"]  # the cursor moved past it
    assert int(hello_id.split("-")[0]) < alarms[0]["id"]


def test_an_installer_gets_values_without_balances(client: TestClient, world: World) -> None:
    log_in(client, STAFF_USERS[Role.INSTALLER])  # `/accounts` refuses installers the money
    with client.stream("GET", "/console/events") as stream:
        lines = stream.iter_lines()
        read_events(lines, "hello")
        ack = world.site.upload(
            NODE, readings=[reading(M1, NOW - dt.timedelta(minutes=1), 125_000)]
        )
        assert ack.status.value == "ok"
        values = read_events(lines, "values")[-1][2]
    assert values and all("balance" not in v and "arrears" not in v for v in values)
    assert {v["meter"]: v["register"] for v in values}[M1] == "125.0"


def test_a_reconnect_resumes_after_its_last_event_id(client: TestClient, world: World) -> None:
    log_in(client, "op-1")
    with client.stream("GET", "/console/events") as stream:
        (cursor, _, _), *_ = read_events(stream.iter_lines(), "hello")
    low_balance(world, "A0002", M3, "malicious_load")  # while no stream is open
    with client.stream("GET", "/console/events", headers={"Last-Event-ID": cursor}) as stream:
        got = read_events(stream.iter_lines(), "alarms")
    assert [a["kind"] for a in got[-1][2]] == ["malicious_load"]
    # a reading stored while no stream was open: a resumed stream sends it, a fresh one not
    ack = world.site.upload(NODE, readings=[reading(M1, NOW - dt.timedelta(minutes=2), 124_500)])
    assert ack.status.value == "ok"
    with client.stream("GET", "/console/events", headers={"Last-Event-ID": cursor}) as stream:
        values = read_events(stream.iter_lines(), "values")[-1]
    assert values[1] == "values"
    assert {v["meter"]: v["register"] for v in values[2]}[M1] == "124.5"
    # a page newly loaded passes its predecessor's cursor the same way
    with client.stream("GET", f"/console/events?last={cursor}") as stream:
        assert read_events(stream.iter_lines(), "alarms")[-1][1] == "alarms"
    # a fresh stream starts at what is stored: nothing old pops up or is sent, only beats
    with client.stream("GET", "/console/events") as stream:
        names = [name for _, name, _ in read_events(stream.iter_lines(), "beat")]
    assert names == ["hello", "beat"]


def test_a_node_going_offline_is_told_and_the_feed_ends_with_the_session(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    page = client.get("/console/alarms")
    with client.stream("GET", "/console/events") as stream:
        lines = stream.iter_lines()
        read_events(lines, "hello")
        take_offline(world, OTHER)
        nodes = read_events(lines, "nodes")[-1][2]
        assert nodes == [{"node": OTHER, "online": False}]  # its state; no pop-up of its own
        other = TestClient(client.app, cookies=dict(client.cookies))
        assert other.post("/console/logout", data={"csrf": csrf_of(page.text)},
                          follow_redirects=False).status_code == 303  # fmt: skip
        end = read_events(lines, "end")[-1]
    assert end[1:] == ("end", {"reason": "session"})


def test_streams_are_bounded_per_session(client: TestClient) -> None:
    log_in(client, "op-1")
    most = live.PACE.streams_per_session
    streams = [client.stream("GET", "/console/events") for _ in range(most + 1)]
    opened = [s.__enter__() for s in streams]
    try:
        first = read_events(opened[0].iter_lines(), "end")
        assert first[-1][1:] == ("end", {"reason": "replaced"})
        for later in opened[1:]:
            assert [n for _, n, _ in read_events(later.iter_lines(), "beat")] == ["hello", "beat"]
    finally:
        for s in streams:
            s.__exit__(None, None, None)


def test_the_preferences_form_checks_its_token_and_fields_and_applies(
    client: TestClient, world: World
) -> None:
    log_in(client, "op-1")
    form = client.get("/console/alarms/settings")
    assert form.status_code == 200 and 'name="show_balance" id="show_balance" checked' in form.text
    token = csrf_of(form.text)
    assert client.post("/console/alarms/settings", data={"popup": "on"}).status_code == 403
    bad = client.post("/console/alarms/settings", data={"csrf": token, "popup": "yes"})
    assert bad.status_code == 422 and catalogue.MESSAGES["settings_bad"][0] in bad.text
    unknown = client.post("/console/alarms/settings", data={"csrf": token, "evil": "on"})
    assert unknown.status_code == 422
    none = client.post("/console/alarms/settings", data={"csrf": token, "popup": "on"})
    assert none.status_code == 422 and catalogue.MESSAGES["settings_no_kind"][0] in none.text
    with Session(world.engine) as session:
        assert session.get(AlarmPrefs, "op-1") is None  # nothing refused was stored
    saved = client.post("/console/alarms/settings",
                        data={"csrf": token, "popup": "on", "show_balance": "on"})  # fmt: skip
    assert saved.status_code == 200 and 'id="settings-saved"' in saved.text
    with Session(world.engine) as session:
        row = session.get(AlarmPrefs, "op-1")
        assert row is not None and (row.popup, row.sound) == (True, False)
        assert sorted(row.muted) == sorted(set(live.GROUPS) - {"balance"})
    with client.stream("GET", "/console/events") as stream:
        lines = stream.iter_lines()
        hello = read_events(lines, "hello")[-1][2]
        assert (hello["popup"], hello["sound"]) == (True, False)
        low_balance(world, "A0002", M3, "malicious_load")  # muted: "safety"
        low_balance(world)
        got = read_events(lines, "alarms")[-1][2]
    assert [a["kind"] for a in got] == ["low_balance"]


def _section(html: str, building: str, floor: str) -> str:
    found = re.search(rf'data-building="{building}" data-floor="{floor}">(.*?)</section>', html,
                      re.S)  # fmt: skip
    assert found, html
    return found[1]


def test_the_alarms_screen_groups_filters_and_acknowledges_with_the_log(
    client: TestClient, world: World
) -> None:
    with session_factory(world.engine).begin() as session:
        raise_alarm(session, NODE, "quarantined", NOW, "a forged batch")  # its node's floor
        raise_alarm(session, "edge-0099", "refused_status", NOW, "unsigned")  # no place
    log_in(client, "op-1")
    page = client.get("/console/alarms")
    assert page.status_code == 200
    with Session(world.engine) as session:
        rows = {a.kind: a for a in session.scalars(select(models.Alarm))}
    here = _section(page.text, "B1", "1F")
    assert f'data-alarm="{rows["low_balance"].id}"' in here
    assert f'data-alarm="{rows["malicious_load"].id}"' in here
    assert f'data-alarm="{rows["quarantined"].id}"' in here  # NODE serves B1 1F alone
    nowhere = _section(page.text, "", "")
    assert f'data-alarm="{rows["refused_status"].id}"' in nowhere and "未分区" in nowhere
    assert "@media print" in client.get("/static/console.css").text and "data-print" in page.text
    only = client.get("/console/alarms?kind=low_balance")
    assert re.findall(r'data-alarm="(\d+)"', only.text) == [str(rows["low_balance"].id)]
    critical = client.get("/console/alarms?severity=critical")
    assert re.findall(r'data-alarm="(\d+)"', critical.text) == [str(rows["quarantined"].id)]
    assert client.get("/console/alarms?severity=bogus").status_code == 422

    target = rows["low_balance"].id
    url = f"/console/alarms/{target}/acknowledge"
    token = csrf_of(page.text)
    assert client.post(url, data={"note": "phoned"}).status_code == 403
    empty = client.post(url, data={"csrf": token, "note": "  ", "back": "kind=low_balance"})
    assert empty.status_code == 422 and catalogue.MESSAGES["alarm_note_missing"][0] in empty.text
    done = client.post(url, data={"csrf": token, "note": "已电话通知商户",
                                  "back": "kind=low_balance"}, follow_redirects=False)  # fmt: skip
    assert (done.status_code, done.headers["location"]) == (
        303, "/console/alarms?kind=low_balance"
    )  # fmt: skip
    with Session(world.engine) as session:
        alarm = session.get(models.Alarm, target)
        assert alarm is not None
        assert (alarm.acknowledged_by, alarm.note) == ("op-1", "已电话通知商户")
        logged = session.scalars(select(OperatorLogEntry).where(
            OperatorLogEntry.action == "alarm.acknowledge")).all()  # fmt: skip
    assert [(e.user, e.target, e.after and e.after["note"]) for e in logged] == [
        ("op-1", f"alarm:{target}", "已电话通知商户")
    ]
    again = client.post(url, data={"csrf": token, "note": "again"})
    assert again.status_code == 409
    assert catalogue.MESSAGES["alarm_acknowledged_already"][0] in again.text
    assert client.post("/console/alarms/999999/acknowledge",
                       data={"csrf": token, "note": "x"}).status_code == 404  # fmt: skip
    acked = client.get("/console/alarms?acknowledged=yes")
    assert re.findall(r'data-alarm="(\d+)"', acked.text) == [str(target)]
    assert "已电话通知商户" in acked.text


def test_an_auditor_reads_alarms_but_may_not_acknowledge(client: TestClient) -> None:
    log_in(client, STAFF_USERS[Role.AUDITOR])
    page = client.get("/console/alarms")
    assert page.status_code == 200 and "/acknowledge" not in page.text
    answer = client.post("/console/alarms/1/acknowledge",
                         data={"csrf": csrf_of(page.text), "note": "seen"})  # fmt: skip
    assert answer.status_code == 403


def test_an_alarm_id_skipped_over_is_still_sent_when_its_transaction_commits(
    world: World,
) -> None:
    """Ids come from a sequence: a smaller one may commit after a larger one was seen."""
    add_staff_and_readings(world)
    token = issue_token(world.engine, "op-1")
    moment = [0.0]
    with Session(world.engine) as session:
        who = auth.authenticate(session, token, "127.0.0.1", NOW)
        stream = live.Live(token, "127.0.0.1", who, "zh", live.Prefs(), lambda: moment[0],
                           dt.timedelta(minutes=SILENT_AFTER_MIN))  # fmt: skip
        stream.start(session, NOW, None)
    first = stream.alarm

    def stored(alarm_id: int) -> None:
        with session_factory(world.engine).begin() as session:
            session.add(models.Alarm(id=alarm_id, node=NODE, kind="low_balance", detail="",
                                     facts={}, time=NOW, cleared=False, note="",
                                     account="A0001", severity="warning"))  # fmt: skip

    def sent() -> list[int]:
        with Session(world.engine) as session:
            events = stream.tick(session, NOW)
        return [a["id"] for e in events if "event: alarms" in e
                for a in json.loads(e.split("data: ", 1)[1])]  # fmt: skip

    stored(first + 2)  # committed first
    assert sent() == [first + 2] and stream.gaps.keys() == {first + 1}
    stored(first + 1)  # the slower transaction
    assert sent() == [first + 1] and not stream.gaps
    stored(first + 4)
    assert sent() == [first + 4]
    moment[0] = live.PACE.gap_wait + 1  # first + 3 never came (a rollback): forgotten
    assert sent() == [] and not stream.gaps
    stored(first + 5 + live.PACE.most_gap)  # no transaction holds so many ids: no gaps kept
    assert sent() == [first + 5 + live.PACE.most_gap] and not stream.gaps
    assert live.Cursor.parse("1-99999999999999") is None  # beyond any date: not ours
    assert live.Cursor.parse(f"7-{live.ms_of(NOW)}") == live.Cursor(7, live.ms_of(NOW))


def test_every_screen_words_each_kind_and_labels_one_it_does_not_know(
    client: TestClient, world: World
) -> None:
    """A cloud kind that had no words once (`payment_mismatch`), an edge's that had none
    (`sync_refused`) and one a newer concentrator might send (`fusion_overheat`): words, or
    the code under a generic label, on the alarms screen, its filter, the dashboard, the
    field app and the pop-up's words; never a bare code, never an error."""
    with session_factory(world.engine).begin() as session:
        for kind in ("payment_mismatch", "sync_refused", "fusion_overheat"):
            raise_alarm(session, NODE, kind, NOW, "detail")
    log_in(client, "op-1")
    zh = client.get("/console/alarms?acknowledged=&lang=zh")
    assert zh.status_code == 200
    cells = re.findall(r'<td class="kind">([^<]*)</td>', zh.text)
    assert {"支付通知不符", "集中器报上传被拒", "其他类型（fusion_overheat）"} <= set(cells)
    assert ">payment_mismatch<" not in zh.text and ">fusion_overheat<" not in zh.text
    en = client.get("/console/alarms?acknowledged=&lang=en")
    cells = re.findall(r'<td class="kind">([^<]*)</td>', en.text)
    assert {"payment notice mismatch", "upload refused (box&#39;s report)",
            "other kind (fusion_overheat)"} <= set(cells)  # fmt: skip
    assert '<option value="fusion_overheat">other kind (fusion_overheat)</option>' in en.text
    chosen = client.get("/console/alarms?kind=fusion_overheat&acknowledged=&lang=en")
    assert chosen.status_code == 200 and "· other kind (fusion_overheat)" in chosen.text
    dashboard = client.get("/console/dashboard?lang=zh")
    assert dashboard.status_code == 200
    assert "支付通知不符" in dashboard.text and "其他类型（fusion_overheat）" in dashboard.text
    with client.stream("GET", "/console/events?lang=en") as stream:
        (_, _, hello), *_ = read_events(stream.iter_lines(), "hello")
    assert hello["words"]["kinds"]["payment_mismatch"] == "payment notice mismatch"
    assert "fusion_overheat" not in hello["words"]["kinds"]
    assert hello["words"]["other_kind"] == "other kind ({code})"
    log_in(client, STAFF_USERS[Role.INSTALLER])
    field = client.get("/field/?lang=zh")
    assert field.status_code == 200
    assert "支付通知不符" in field.text and "其他类型（fusion_overheat）" in field.text
