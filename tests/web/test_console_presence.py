"""A concentrator whose status says online but that has sent nothing for `silent_after` counts
off line on the console (`cloud.db.presence`): the concentrators list says 失联 (Silent), the
dashboard counts it offline, the monitoring table's state filter and link column agree, and the
live feed pops it up as gone off line. The app's clock is moved; nothing runs in between."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db import models
from cloud.operations import silence
from cloud.people import auth
from cloud.web import live
from cloud.web.render import local_time
from tests.cloud.api.conftest import M1, M3, NODE, OTHER, issue_token
from tests.web.console_world import add_staff_and_readings, take_offline
from tests.web.html import csrf_of
from tests.web.test_console_pages import log_in
from tests.web.world import NOW, OPERATOR, World

LIMIT = dt.timedelta(minutes=20)  # `[ingest] silent_after_min = 20`
NODES = "/console/registry/nodes"


class Clock:
    def __init__(self) -> None:
        self.now = NOW  # when the world's nodes last sent their status

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(world: World, clock: Clock) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, clock, silent_after=LIMIT)) as client:
        yield client


def heard(world: World, node: str, when: dt.datetime) -> None:
    """`node`'s batch arrived at `when` (the world's ingest has a clock of its own)."""
    with Session(world.engine) as session, session.begin():
        session.execute(
            update(models.Concentrator).where(models.Concentrator.node == node)
            .values(last_seen=when)
        )  # fmt: skip


def presence_of(page: str, node: str) -> tuple[str, str]:
    """(data-presence, its words) in the concentrators list."""
    row = page.split(f'data-node="{node}"')[1].split("</tr>", maxsplit=1)[0]
    found = re.search(r'data-presence="(\w+)"[^>]*>([^<]*)</span>', row)
    assert found, row
    return found.group(1), found.group(2)


def offline_figure(page: str) -> str:
    figure = page.split('id="offline">')[1].split("</a>", maxsplit=1)[0]
    return figure.rsplit(">", maxsplit=1)[-1]


def shown_meters(client: TestClient, state: str) -> set[tuple[str, str]]:
    """(node, meter) of the monitoring table's rows with this state filter."""
    page = client.get(f"/console/monitoring?state={state}").text
    return set(re.findall(r'<tr data-meter="(\w+)" data-node="([\w-]+)"', page))


def test_a_silent_node_counts_offline_on_every_screen(
    client: TestClient, world: World, clock: Clock
) -> None:
    log_in(client, OPERATOR)
    assert presence_of(client.get(NODES).text, OTHER) == ("online", "在线")
    assert offline_figure(client.get("/console/dashboard").text) == "0 / 2"
    clock.now = NOW + LIMIT  # the limit itself: still on line
    assert presence_of(client.get(NODES).text, OTHER) == ("online", "在线")
    clock.now = NOW + LIMIT + dt.timedelta(seconds=1)
    heard(world, NODE, clock.now)  # NODE keeps sending; OTHER has gone quiet
    page = client.get(NODES).text
    assert presence_of(page, NODE) == ("online", "在线")
    assert presence_of(page, OTHER) == ("silent", "失联")
    hint = page.split(f'data-node="{OTHER}"')[1].split('data-presence="silent" title="')[1]
    assert hint.startswith("状态仍是在线，但已超过 20 分钟没有收到它的数据（最后一次：")
    english = client.get(f"{NODES}?lang=en").text
    assert presence_of(english, OTHER) == ("silent", "Silent")
    client.get(f"{NODES}?lang=zh")
    assert offline_figure(client.get("/console/dashboard").text) == "1 / 2"
    offline, online = shown_meters(client, "offline"), shown_meters(client, "online")
    assert {node for _, node in offline} == {OTHER} and (M3, OTHER) in offline
    assert {node for _, node in online} == {NODE} and (M1, NODE) in online
    detail = client.get(f"/console/meters/{M3}").text
    assert f"{OTHER} (离线)" in detail
    heard(world, OTHER, clock.now)  # a batch at last: on line again
    assert presence_of(client.get(NODES).text, OTHER) == ("online", "在线")
    assert offline_figure(client.get("/console/dashboard").text) == "0 / 2"


def test_a_silent_node_is_one_pop_up_its_stored_alarm(world: World) -> None:
    """The feed tells the node's state when it goes silent (the tables change) and pops up
    only the `node_silent` alarm the sweep stores: one pop-up item for one silence, in the
    stream's words for none of it (codes; `hello` has the words)."""
    add_staff_and_readings(world)
    token = issue_token(world.engine, "op-1")
    with Session(world.engine) as session:
        who = auth.authenticate(session, token, "127.0.0.1", NOW)
        stream = live.Live(token, "127.0.0.1", who, "en", live.Prefs(), lambda: 0.0, LIMIT)
        stream.start(session, NOW, None)
    hello = json.loads(stream.hello(NOW).split("data: ", 1)[1])
    assert hello["words"]["kinds"][silence.KIND] == "concentrator silent"

    def sent(now: dt.datetime) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """(nodes, alarms) of one poll: what changes state, what pops up."""
        with Session(world.engine) as session:
            events = stream.tick(session, now)
        told: dict[str, list[dict[str, object]]] = {"nodes": [], "alarms": []}
        for e in events:
            name = e.split("event: ", 1)[1].split("\n", 1)[0]
            if name in told:
                told[name] += json.loads(e.split("data: ", 1)[1])
        return told["nodes"], told["alarms"]

    assert sent(NOW + LIMIT) == ([], [])
    later = NOW + LIMIT + dt.timedelta(minutes=1)
    heard(world, NODE, later)
    assert sent(later) == ([{"node": OTHER, "online": False}], [])  # its state, no pop-up
    assert sent(later) == ([], [])  # said once
    assert sweep(world, later) == silence.Swept(1, 0)
    nodes, popped = sent(later)
    assert nodes == []
    assert [(a["kind"], a["node"], a["building"], a["floor"]) for a in popped] == [
        (silence.KIND, OTHER, "B2", "2F")
    ]  # the one pop-up of this silence
    heard(world, OTHER, later)
    assert sent(later) == ([{"node": OTHER, "online": True}], [])
    take_offline(world, OTHER)  # a dropped connection (its last will): state only
    assert sent(later) == ([{"node": OTHER, "online": False}], [])


def sweep(world: World, now: dt.datetime) -> silence.Swept:
    """The cloud service's sweep (`cloud.operations.silence`), run with the app's clock."""
    with Session(world.engine) as session, session.begin():
        return silence.sweep(session, now, LIMIT)


def test_a_silent_node_is_a_stored_alarm_on_the_alarms_screen_until_it_is_heard(
    client: TestClient, world: World, clock: Clock
) -> None:
    log_in(client, OPERATOR)
    assert sweep(world, NOW + LIMIT) == silence.Swept(0, 0)
    clock.now = NOW + LIMIT + dt.timedelta(minutes=1)
    heard(world, NODE, clock.now)  # NODE keeps sending; OTHER has gone quiet
    assert sweep(world, clock.now) == silence.Swept(1, 0)
    assert sweep(world, clock.now) == silence.Swept(0, 0)
    page = client.get("/console/alarms?kind=node_silent").text
    [alarm] = re.findall(r'data-alarm="(\d+)"', page)
    section = page.split('data-building="B2" data-floor="2F">')[1].split("</section>")[0]
    assert f'data-alarm="{alarm}"' in section  # OTHER serves B2 2F
    row = section.split(f'data-alarm="{alarm}"')[1].split("</tr>")[0]
    assert "集中器失联" in row and OTHER in row
    seen = local_time(NOW, "%Y-%m-%d %H:%M:%S")  # its last word, in the site's time
    assert f"已超过 20 分钟没有收到它的数据（最后一次：{seen}，当时状态：在线）" in row
    english = client.get("/console/alarms?lang=en&kind=node_silent").text
    assert "concentrator silent" in english
    assert f"over 20 minutes (last: {seen}; its status then: Online)" in english
    with Session(world.engine) as session, session.begin():  # an alarm of before its facts
        session.execute(update(models.Alarm).where(models.Alarm.id == int(alarm))
                        .values(facts={}))  # fmt: skip
    older = client.get("/console/alarms?kind=node_silent").text
    assert "nothing heard since" in older and "已超过" not in older  # its stored text
    client.get("/console/alarms?lang=zh")
    counts = client.get(
        "/alarms/counts?cleared=false",
        headers={"Authorization": f"Bearer {issue_token(world.engine, 'op-1')}"},
    )
    assert {"severity": "warning", "kind": "node_silent", "count": 1} in counts.json()["groups"]
    done = client.post(f"/console/alarms/{alarm}/acknowledge",
                       data={"csrf": csrf_of(page), "note": "已派人检查集中器电源"})  # fmt: skip
    assert done.status_code == 200 and "已派人检查集中器电源" not in done.text  # ack'd: filtered
    acked = client.get("/console/alarms?acknowledged=yes&kind=node_silent").text
    assert f'data-alarm="{alarm}"' in acked and "已派人检查集中器电源" in acked
    heard(world, OTHER, clock.now + dt.timedelta(minutes=5))  # a batch at last
    assert sweep(world, clock.now + dt.timedelta(minutes=6)) == silence.Swept(0, 1)
    with Session(world.engine) as session:
        row_of = session.get(models.Alarm, int(alarm))
        assert row_of is not None
        assert (row_of.cleared, row_of.cleared_at) == (True, clock.now + dt.timedelta(minutes=5))
