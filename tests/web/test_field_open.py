"""Opening a ticket from the field app's offline queue (`POST /field/faults` with the phone's
`key`): by hand or from an alarm, applied once per key on every backend — the same record again
answers the first's ticket, other content under the key is refused (409), a malformed key too
(422), nothing kept; one alarm still has at most one ticket open. Races: `test_field_races`."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db.auth import OperatorLogEntry
from cloud.db.faults import Fault, FaultStep
from cloud.db.models import Alarm
from tests.web.test_field_pages import client, count, technician  # noqa: F401 (the fixture)
from tests.web.world import World

BY_HAND = {"kind": "bus_down", "node": "edge-0001", "site": "East hall", "note": "bus A silent"}


def first_alarm(world: World) -> int:
    with Session(world.engine) as session:
        alarm = session.scalars(select(Alarm).order_by(Alarm.id)).first()
        assert alarm is not None
        return alarm.id


def test_a_ticket_opened_offline_is_opened_once_per_key(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    header, key = {"X-CSRF-Token": csrf}, str(uuid.uuid4())
    record = BY_HAND | {"key": key}
    assert client.post("/field/faults", json=record).status_code == 403  # no CSRF token
    for bad in ({"key": "!"}, {"key": "short"}, {"key": "x" * 65}, {"kind": "bogus"},
                {"node": "", "site": ""}):  # fmt: skip
        refused = client.post("/field/faults", json=record | bad, headers=header)
        assert refused.status_code == 422, (bad, refused.text)
        assert "error" in refused.json()
    assert count(world, Fault) == count(world, FaultStep) == 0
    answers = [client.post("/field/faults", json=record, headers=header) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, again = (a.json() for a in answers)
    url = f"/field/faults/{first['id']}"
    assert first == {"id": first["id"], "status": "open", "new": True, "url": url}
    assert again == first | {"new": False}
    for other in ({"note": "bus B"}, {"kind": "other"}, {"meter": "000000000001"}):
        assert client.post("/field/faults", json=record | other, headers=header).status_code == 409
    # The key of a move or a comment is not an opening's, nor the other way round.
    assert (
        client.post(f"{url}/comments", json={"note": "x", "key": key}, headers=header).status_code
        == 409
    )
    comment_key = str(uuid.uuid4())
    assert client.post(f"{url}/comments", json={"note": "x", "key": comment_key},
                       headers=header).status_code == 200  # fmt: skip
    assert client.post("/field/faults", json=BY_HAND | {"key": comment_key},
                       headers=header).status_code == 409  # fmt: skip
    with Session(world.engine) as session:
        fault = session.scalars(select(Fault)).one()
        opening = session.scalars(select(FaultStep).where(FaultStep.before.is_(None))).one()
        logged = session.scalars(select(OperatorLogEntry.after).where(
            OperatorLogEntry.action == "fault.open")).all()  # fmt: skip
    wanted = ("bus_down", "edge-0001", "East hall", "bus A silent")
    assert (fault.kind, fault.node, fault.site, fault.note) == wanted
    assert opening.client_key == key
    assert logged == [{"status": "open", "kind": "bus_down", "note": "bus A silent", "key": key}]
    assert f'href="{url}"' in client.get("/field/").text


def test_a_form_without_script_opens_once_by_its_key(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    page = client.get("/field/").text
    ticket_form = page[
        page.index('id="ticket-form"') : page.index("</form>", page.index('id="ticket-form"'))
    ]
    assert 'name="key"' in ticket_form  # a key the page made: a second submit opens nothing
    form = BY_HAND | {"csrf": csrf, "key": str(uuid.uuid4())}
    answers = [client.post("/field/faults", data=form, follow_redirects=False) for _ in range(2)]
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
    assert count(world, Fault) == 1
    bad = client.post("/field/faults", data=form | {"key": "!"}, follow_redirects=False)
    assert bad.status_code == 422 and count(world, Fault) == 1


def test_one_ticket_per_alarm_whatever_the_keys(client: TestClient, world: World) -> None:  # noqa: F811
    csrf = technician(client)
    header, alarm = {"X-CSRF-Token": csrf}, str(first_alarm(world))
    first = {"alarm": alarm, "note": "", "key": str(uuid.uuid4())}
    answers = [client.post("/field/faults", json=first, headers=header) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    url = answers[0].json()["url"]
    # A second phone queued the same alarm: refused, in words, pointing at the ticket there is.
    taken = client.post("/field/faults", json=first | {"key": str(uuid.uuid4())}, headers=header)
    assert taken.status_code == 409
    assert taken.json() == {"error": "这条告警已有未关闭的工单。", "url": url}
    english = client.post("/field/faults?lang=en", json=first | {"key": str(uuid.uuid4())},
                          headers=header)  # fmt: skip
    assert english.status_code == 409 and "not closed" in english.json()["error"]
    gone = client.post("/field/faults", json=first | {"alarm": "999999", "key": str(uuid.uuid4())},
                       headers=header)  # fmt: skip
    assert gone.status_code == 404 and gone.json()["url"] is None
    assert count(world, Fault) == count(world, FaultStep) == 1
