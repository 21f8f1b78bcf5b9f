"""Two sends of one offline record racing (the phone resending while its first send is still
being answered): real concurrent requests from threads through the field app, on every backend
(SQLite, PostgreSQL). Every commit is held back a moment, so the second request looks its key
up before the first's row is committed and inserts it too (on PostgreSQL it then waits on the
unique key); it must get the first's answer — or 409 for other content under the key — never a
500, and the row is kept once."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from cloud.db.auth import OperatorLogEntry
from cloud.db.faults import Fault, FaultPhoto, FaultStep
from cloud.db.models import Alarm
from cloud.db.operations import IrReading
from tests.cloud.api.conftest import M1
from tests.web.html import csrf_of
from tests.web.test_field_pages import (  # noqa: F401 (the fixture)
    INSTALLER,
    client,
    count,
    log_in,
    technician,
)
from tests.web.world import OPERATOR, World

HOLD = 0.3  # s each commit waits: long enough for the twin to pass its key look-up


@contextmanager
def commits_held(engine: Engine) -> Iterator[None]:
    def hold(connection: Any) -> None:
        time.sleep(HOLD)

    event.listen(engine, "commit", hold)
    try:
        yield
    finally:
        event.remove(engine, "commit", hold)


def racing(engine: Engine, *sends: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """The answers of `sends`, started together from one thread each, commits held back."""
    start = threading.Barrier(len(sends))
    answers: list[httpx.Response | None] = [None] * len(sends)

    def send(index: int) -> None:
        start.wait()
        answers[index] = sends[index]()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(sends))]
    with commits_held(engine):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def open_ticket(client: TestClient, csrf: str) -> str:  # noqa: F811 (the fixture)
    opened = client.post("/field/faults", data={"csrf": csrf, "kind": "bus_down",
                         "node": "edge-0001"}, follow_redirects=False)  # fmt: skip
    assert opened.status_code == 303, opened.text
    return str(opened.headers["location"])


def jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, "JPEG")
    return out.getvalue()


def test_a_move_sent_twice_at_once_is_applied_once(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    ticket = open_ticket(client, csrf)
    body = {"to": "in_progress", "note": "on my way", "key": str(uuid.uuid4())}
    send = lambda: client.post(f"{ticket}/status", json=body, headers={"X-CSRF-Token": csrf})  # noqa: E731
    answers = racing(world.engine, send, send, send)
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)
    assert answers[0].json()["status"] == "in_progress"
    assert count(world, FaultStep) == 2  # the opening and the one move


def test_a_key_racing_onto_two_tickets_moves_one(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    tickets = [open_ticket(client, csrf), open_ticket(client, csrf)]
    body = {"to": "closed", "key": str(uuid.uuid4())}
    answers = racing(world.engine, *(
        lambda t=t: client.post(f"{t}/status", json=body, headers={"X-CSRF-Token": csrf})
        for t in tickets
    ))  # fmt: skip
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert count(world, FaultStep) == 3


def test_a_comment_sent_twice_at_once_is_kept_once(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    ticket = open_ticket(client, csrf)
    key = str(uuid.uuid4())

    def send(note: str, key: str) -> Callable[[], httpx.Response]:
        body, header = {"note": note, "key": key}, {"X-CSRF-Token": csrf}
        return lambda: client.post(f"{ticket}/comments", json=body, headers=header)

    answers = racing(world.engine, send("fuse", key), send("fuse", key))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    other, again = send("other", key + "-2"), send("again", key + "-2")
    answers = racing(world.engine, other, again)
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert count(world, FaultStep) == 3  # the opening and one comment per key


def test_an_assignment_sent_twice_at_once_is_applied_once(client: TestClient, world: World) -> None:  # noqa: F811
    """No unique key here: the ticket's lock orders the sends; later ones read the first's row."""
    log_in(client, OPERATOR)
    csrf = csrf_of(client.get("/field/").text)
    ticket = open_ticket(client, csrf)
    body = {"user": INSTALLER, "key": str(uuid.uuid4())}
    send = lambda: client.post(f"{ticket}/assignee", json=body, headers={"X-CSRF-Token": csrf})  # noqa: E731
    answers = racing(world.engine, send, send, send)
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert all(a.json() == {"id": answers[0].json()["id"], "assignee": INSTALLER} for a in answers)
    with Session(world.engine) as session:
        assigned = OperatorLogEntry.action == "fault.assign"
        assert len(session.scalars(select(OperatorLogEntry).where(assigned)).all()) == 1


def test_a_photo_sent_twice_at_once_is_kept_once(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    ticket = open_ticket(client, csrf)
    key = str(uuid.uuid4())

    def send(data: bytes) -> Callable[[], httpx.Response]:
        headers = {"Content-Type": "image/jpeg", "X-CSRF-Token": csrf, "X-Idempotency-Key": key}
        return lambda: client.post(f"{ticket}/photos", content=data, headers=headers)

    same = send(jpeg((200, 10, 10)))
    answers = racing(world.engine, same, same)
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert send(jpeg((10, 10, 200)))().status_code == 409
    assert count(world, FaultPhoto) == 1


def test_a_reading_sent_twice_at_once_is_kept_once(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    body = {"key": str(uuid.uuid4()), "address": M1, "kwh": "812.5",
            "read_at": "2026-11-24T16:40:00+08:00"}  # fmt: skip
    send = lambda: client.post("/field/readings", json=body, headers={"X-CSRF-Token": csrf})  # noqa: E731
    answers = racing(world.engine, send, send)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert count(world, IrReading) == 1


def test_an_opening_sent_at_once_opens_one_ticket(client: TestClient, world: World) -> None:  # noqa: F811
    """The ticket and its opening step go in one savepoint: the loser keeps neither."""
    csrf = technician(client)
    key = str(uuid.uuid4())

    def send(note: str, key: str) -> Callable[[], httpx.Response]:
        body = {"kind": "bus_down", "node": "edge-0001", "note": note, "key": key}
        return lambda: client.post("/field/faults", json=body, headers={"X-CSRF-Token": csrf})

    answers = racing(world.engine, send("bus A", key), send("bus A", key), send("bus A", key))
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sorted(a.json()["new"] for a in answers) == [False, False, True]
    answers = racing(world.engine, send("bus A", key + "-2"), send("bus B", key + "-2"))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert (count(world, Fault), count(world, FaultStep)) == (2, 2)
    with Session(world.engine) as session:
        opened = OperatorLogEntry.action == "fault.open"
        assert len(session.scalars(select(OperatorLogEntry).where(opened)).all()) == 2


def test_two_phones_opening_an_alarm_at_once_open_one(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    with Session(world.engine) as session:
        alarm = session.scalars(select(Alarm.id).order_by(Alarm.id)).first()

    def send(key: str) -> Callable[[], httpx.Response]:
        body = {"alarm": str(alarm), "key": key}
        return lambda: client.post("/field/faults", json=body, headers={"X-CSRF-Token": csrf})

    answers = racing(world.engine, send(str(uuid.uuid4())), send(str(uuid.uuid4())))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert {a.json()["url"] for a in answers} == {answers[0].json()["url"]}
    assert count(world, Fault) == 1


pytestmark = pytest.mark.timeout(120)
