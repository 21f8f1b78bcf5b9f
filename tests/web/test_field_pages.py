"""The field app `/field/` through FastAPI's TestClient on every backend (SQLite, PostgreSQL):
who may open it, its session and CSRF, readings typed on site (validated, applied once per
key, logged as the handheld import), fault tickets opened from an alarm and moved through the
state machine as forms and as the offline queue's JSON (a key applied once), a ticket's photos as
the queue sends them (raw bytes, a key, applied once), and its PWA files."""

from __future__ import annotations

import io
import re
import struct
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.app import create_app
from cloud.db.auth import OperatorLogEntry
from cloud.db.faults import Fault, FaultPhoto, FaultStep
from cloud.db.models import Alarm
from cloud.db.operations import IrReading
from cloud.people.auth import Role
from cloud.web.field import wh_of_kwh
from cloud.web.icons import ICONS, draw
from cloud.web.render import STATIC
from tests.cloud.api.conftest import M1
from tests.web.console_world import STAFF_USERS, add_staff_and_readings
from tests.web.html import csrf_of
from tests.web.world import MERCHANT, NOW, OPERATOR, PASSWORD, World

INSTALLER = STAFF_USERS[Role.INSTALLER]


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    add_staff_and_readings(world)
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def log_in(client: TestClient, user: str) -> str:
    token = csrf_of(client.get("/field/login").text)
    answer = client.post("/field/login", data={"csrf": token, "user": user,
                         "password": PASSWORD}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def technician(client: TestClient) -> str:
    """Log the installer in; the CSRF token of its session."""
    assert log_in(client, INSTALLER) == "/field/"
    return csrf_of(client.get("/field/").text)


def count(world: World, *what: object) -> int:
    with Session(world.engine) as session:
        return session.scalar(select(func.count()).select_from(*what)) or 0  # type: ignore[arg-type]


def ir_rows(world: World) -> list[tuple[str, int, str]]:
    with Session(world.engine) as session:
        return [(r.address, r.energy_wh, r.source) for r in session.scalars(select(IrReading))]


def test_who_may_open_it(client: TestClient) -> None:
    first = client.get("/field/", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (303, "/field/login")
    assert "现场运维" in client.get("/field/login").text
    for role in (Role.FINANCE, Role.AUDITOR):
        log_in(client, STAFF_USERS[role])
        refused = client.get("/field/")
        assert refused.status_code == 403 and "安装人员和操作员" in refused.text
        client.cookies.clear()
    log_in(client, MERCHANT)
    assert client.get("/field/", follow_redirects=False).headers["location"] == "/m/"
    client.cookies.clear()
    technician(client)
    home = client.get("/field/")
    assert home.status_code == 200 and "现场抄表" in home.text and "故障工单" in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert "<script>" not in home.text and "style=" not in home.text
    english = client.get("/field/?lang=en")
    assert "Meter reading on site" in english.text and "现场抄表" not in english.text
    missing = client.get("/field/faults/999999")  # an error page leads back into the app
    assert missing.status_code == 404 and 'href="/field/"' in missing.text
    assert 'href="/m/"' not in missing.text


def test_pwa_files(client: TestClient) -> None:
    worker = client.get("/field/sw.js")
    assert worker.status_code == 200 and worker.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "caches.match" in worker.text
    manifest = client.get("/field/manifest.webmanifest").json()
    assert (manifest["start_url"], manifest["scope"], manifest["lang"]) == (
        "/field/", "/field/", "zh-CN")  # fmt: skip
    assert client.get(manifest["icons"][0]["src"]).status_code == 200
    assert client.get("/field/manifest.webmanifest?lang=en").json()["lang"] == "en"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the signature, then the chunk, first)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def test_the_manifest_lists_png_icons_an_install_prompt_needs(client: TestClient) -> None:
    icons = client.get("/field/manifest.webmanifest").json()["icons"]
    pngs = {(i["sizes"], i["purpose"]): i["src"] for i in icons if i["type"] == "image/png"}
    assert set(pngs) == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    for (sizes, _purpose), src in pngs.items():
        answer = client.get(src)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        width, height = png_size(answer.content)
        assert f"{width}x{height}" == sizes
    assert client.get("/static/field-icon-192.png").status_code == 200


def test_the_icons_are_drawn_as_committed() -> None:
    """`python -m cloud.web.icons` draws what is committed, at the sizes the manifest says."""
    for icon in ICONS:
        drawn = draw(icon)
        assert drawn.size == (icon.size, icon.size) and drawn.mode == "RGBA"
        committed = png_size((STATIC / icon.name).read_bytes())
        assert committed == drawn.size
        corner = drawn.getpixel((0, 0))
        assert isinstance(corner, tuple)
        # a maskable icon is green to its corners (a launcher crops it); the other is rounded
        assert corner[3] == (255 if icon.maskable else 0), icon


@pytest.mark.parametrize(
    ("text", "wh"), [("1234.56", 1_234_560), ("1234.5", 1_234_500), ("7", 7_000), ("0.01", 10)]
)
def test_kwh_typed_becomes_whole_wh(text: str, wh: int) -> None:
    assert wh_of_kwh(text) == wh


def test_a_reading_is_applied_once_per_key(client: TestClient, world: World) -> None:
    csrf = technician(client)
    key = str(uuid.uuid4())
    reading = {"key": key, "address": M1, "kwh": "1234.5", "read_at": "2026-11-24T16:30:00+08:00"}
    assert client.post("/field/readings", json=reading).status_code == 403  # no CSRF token
    assert client.post("/field/readings", json=reading,
                       headers={"X-CSRF-Token": "0" * 64}).status_code == 403  # fmt: skip
    header = {"X-CSRF-Token": csrf}
    for bad in ({"kwh": "12.345"}, {"kwh": "1,5"}, {"kwh": "-1"}, {"address": "M 1"},
                {"read_at": "2026-11-24T16:30:00"}, {"read_at": "2026-11-25T16:30:00+08:00"},
                {"key": "short"}):  # fmt: skip
        refused = client.post("/field/readings", json=reading | bad, headers=header)
        assert refused.status_code == 422, bad
    assert ir_rows(world) == []
    logged = count(world, OperatorLogEntry)
    for _ in range(2):  # the answer was lost: the phone sends it again
        sent = client.post("/field/readings", json=reading, headers=header)
        assert sent.status_code == 200, sent.text
    assert sent.json()["new"] is False and sent.json()["energy_wh"] == 1_234_500
    assert ir_rows(world) == [(M1, 1_234_500, f"field:{key}")]
    assert count(world, OperatorLogEntry) == logged + 1
    other = reading | {"key": str(uuid.uuid4()), "kwh": "1300"}  # same meter and time, other value
    assert client.post("/field/readings", json=other, headers=header).status_code == 409
    form = client.post("/field/readings", data={"csrf": csrf, "key": str(uuid.uuid4()),
                       "address": "000000000042", "kwh": "88"}, follow_redirects=False)  # fmt: skip
    assert form.status_code == 303
    assert sorted(r[:2] for r in ir_rows(world)) == sorted(
        [("000000000042", 88_000), (M1, 1_234_500)]
    )


def test_tickets_from_an_alarm_through_the_state_machine(client: TestClient, world: World) -> None:
    csrf = technician(client)
    with Session(world.engine) as session:
        alarm = session.scalars(select(Alarm).order_by(Alarm.id)).first()
        assert alarm is not None
    assert client.post("/field/faults", data={"alarm": str(alarm.id)}).status_code == 403
    opened = client.post("/field/faults", data={"csrf": csrf, "alarm": str(alarm.id)},
                         follow_redirects=False)  # fmt: skip
    assert opened.status_code == 303, opened.text
    ticket = opened.headers["location"]
    again = client.post("/field/faults", data={"csrf": csrf, "alarm": str(alarm.id)})
    assert again.status_code == 409 and "已有未关闭的工单" in again.text
    bad = client.post("/field/faults", data={"csrf": csrf, "kind": "meter_offline"})
    assert bad.status_code == 422 and "工单信息有误" in bad.text
    page = client.get(ticket)
    assert "开始处理" in page.text and "关闭工单" in page.text and "已修复" not in page.text
    refused = client.post(f"{ticket}/status", data={"csrf": csrf, "to": "fixed"})
    assert refused.status_code == 409 and "不允许" in refused.text
    assert count(world, FaultStep) == 1
    moved = client.post(f"{ticket}/status", data={"csrf": csrf, "to": "in_progress",
                        "note": "on my way"}, follow_redirects=False)  # fmt: skip
    assert moved.status_code == 303
    key = str(uuid.uuid4())  # queued offline; sent twice when back online
    for _ in range(2):
        done = client.post(f"{ticket}/status", json={"to": "fixed", "note": "fuse", "key": key},
                           headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert done.json() == {"id": int(ticket.rsplit("/", 1)[1]), "status": "fixed"}
    assert count(world, FaultStep) == 3
    reused = client.post(f"{ticket}/status", json={"to": "closed", "key": key},
                         headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert reused.status_code == 409
    with Session(world.engine) as session:
        fault = session.scalars(select(Fault)).one()
        steps = [(s.before, s.after, s.by) for s in session.scalars(
            select(FaultStep).order_by(FaultStep.id))]  # fmt: skip
        ours = OperatorLogEntry.action.like("fault.%")
        actions = list(session.scalars(select(OperatorLogEntry.action).where(ours)))
    assert (fault.status, fault.alarm_id) == ("fixed", alarm.id)
    assert steps == [(None, "open", INSTALLER), ("open", "in_progress", INSTALLER),
                     ("in_progress", "fixed", INSTALLER)]  # fmt: skip
    assert actions == ["fault.open", "fault.status", "fault.status"]
    assert "#" in client.get("/field/").text


def test_a_comment_keeps_the_status_and_is_applied_once_per_key(
    client: TestClient, world: World
) -> None:
    csrf = technician(client)
    form = {"csrf": csrf, "kind": "bus_down", "node": "edge-0001"}
    opened = client.post("/field/faults", data=form, follow_redirects=False)
    ticket = opened.headers["location"]
    header = {"X-CSRF-Token": csrf}
    key = str(uuid.uuid4())
    comment = {"note": "bus A: terminator missing", "key": key}
    assert client.post(f"{ticket}/comments", json=comment).status_code == 403  # no CSRF token
    for bad, code in (({"note": "  "}, 422), ({"note": "x" * 501}, 422), ({"key": "!"}, 422)):
        assert (
            client.post(f"{ticket}/comments", json=comment | bad, headers=header).status_code
            == code
        )
    assert (
        client.post("/field/faults/999999/comments", json=comment, headers=header).status_code
        == 404
    )
    assert count(world, FaultStep) == 1
    for _ in range(2):  # queued offline; sent twice when back online
        done = client.post(f"{ticket}/comments", json=comment, headers=header)
        assert done.status_code == 200, done.text
    reused = client.post(f"{ticket}/comments", json=comment | {"note": "other"}, headers=header)
    assert reused.status_code == 409
    by_form = client.post(f"{ticket}/comments", data={"csrf": csrf, "note": "replaced it"},
                          follow_redirects=False)  # fmt: skip
    assert by_form.status_code == 303
    with Session(world.engine) as session:
        fault = session.scalars(select(Fault)).one()
        steps = [(s.before, s.after, s.note) for s in session.scalars(
            select(FaultStep).order_by(FaultStep.id))]  # fmt: skip
        commented = OperatorLogEntry.action == "fault.comment"
        logged = list(session.scalars(select(OperatorLogEntry.action).where(commented)))
    assert fault.status == "open"
    assert steps == [(None, "open", ""), ("open", "open", "bus A: terminator missing"),
                     ("open", "open", "replaced it")]  # fmt: skip
    assert logged == ["fault.comment", "fault.comment"]
    page = client.get(ticket).text
    assert 'id="comment-form"' in page and page.count('class="comment"') == 2


def test_a_photo_as_the_queue_sends_it_is_kept_once_and_shown(
    client: TestClient, world: World
) -> None:
    csrf = technician(client)
    opened = client.post("/field/faults", data={"csrf": csrf, "kind": "tamper", "meter": M1},
                         follow_redirects=False)  # fmt: skip
    ticket = opened.headers["location"]
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (11, 110, 79)).save(out, "JPEG")
    key = str(uuid.uuid4())
    sent = {"Content-Type": "image/jpeg", "X-CSRF-Token": csrf, "X-Idempotency-Key": key}
    url = f"{ticket}/photos?taken=2026-11-24T08:00:00%2B08:00"
    assert client.post(url, content=out.getvalue(), headers=sent | {"X-CSRF-Token": "0" * 64}
                       ).status_code == 403  # fmt: skip
    for bad, code in (({"X-Idempotency-Key": "!"}, 422), ({"Content-Type": "image/png"}, 422),
                      ({"Content-Type": "application/json"}, 422)):  # fmt: skip
        assert client.post(url, content=out.getvalue(), headers=sent | bad).status_code == code
    assert client.post(url, content=b"\xff\xd8\xff\xe0 not a jpeg", headers=sent).status_code == 422
    assert client.post("/field/faults/999999/photos", content=out.getvalue(),
                       headers=sent).status_code == 404  # fmt: skip
    assert count(world, FaultPhoto) == 0
    answers = [client.post(url, content=out.getvalue(), headers=sent) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 200]  # queued offline, sent twice
    photo = answers[0].json()
    assert answers[1].json()["id"] == photo["id"] and photo["url"].startswith(ticket)
    assert count(world, FaultPhoto) == 1
    page = client.get(ticket).text
    assert f'<img src="{photo["url"]}"' in page and 'capture="environment"' in page
    shown = client.get(photo["url"])
    assert (shown.status_code, shown.headers["content-type"]) == (200, "image/jpeg")
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"{ticket}/photos/{photo['id'] + 1}").status_code == 404
    client.post("/field/logout", data={"csrf": csrf})
    assert client.get(photo["url"], follow_redirects=False).status_code in {303, 401}


def test_an_operator_assigns_a_ticket_and_the_installer_sees_it_as_theirs(
    client: TestClient, world: World
) -> None:
    csrf = technician(client)
    opened = client.post("/field/faults", data={"csrf": csrf, "kind": "bus_down",
                         "node": "edge-0001"}, follow_redirects=False)  # fmt: skip
    ticket = opened.headers["location"]
    assert 'id="assign-form"' not in client.get(ticket).text  # dispatching is not the installer's
    refused = client.post(f"{ticket}/assignee", data={"csrf": csrf, "user": INSTALLER})
    assert refused.status_code == 403 and "只有管理员和操作员可以指派工单" in refused.text
    assert "没有派给您的未关闭工单" in client.get("/field/?tickets=mine").text
    client.cookies.clear()
    log_in(client, OPERATOR)
    csrf = csrf_of(client.get(ticket).text)
    page = client.get(ticket).text
    assert 'id="assign-form"' in page and f'value="{INSTALLER}"' in page
    assert f'value="{STAFF_USERS[Role.FINANCE]}"' not in page  # not a field role
    bad = client.post(f"{ticket}/assignee", data={"csrf": csrf, "user": STAFF_USERS[Role.FINANCE]})
    assert bad.status_code == 422 and "无法指派" in bad.text
    assert client.post(f"{ticket}/assignee", data={"user": INSTALLER}).status_code == 403  # CSRF
    done = client.post(f"{ticket}/assignee", data={"csrf": csrf, "user": INSTALLER},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert f'id="ticket-assignee">{INSTALLER}<' in client.get(ticket).text
    with Session(world.engine) as session:
        logged = session.scalars(select(OperatorLogEntry).where(
            OperatorLogEntry.action == "fault.assign")).one()  # fmt: skip
        assert (logged.user, logged.after) == (OPERATOR, {"assignee": INSTALLER})
    client.cookies.clear()
    technician(client)
    mine = client.get("/field/?tickets=mine").text
    assert ticket in mine and f"负责人 {INSTALLER}" in mine
    assert client.get("/field/?tickets=nonsense").status_code == 422


def test_an_assignment_from_the_queue_is_applied_once_per_key(
    client: TestClient, world: World
) -> None:
    log_in(client, OPERATOR)
    csrf = csrf_of(client.get("/field/").text)
    opened = client.post("/field/faults", data={"csrf": csrf, "kind": "bus_down",
                         "node": "edge-0001"}, follow_redirects=False)  # fmt: skip
    ticket = opened.headers["location"]
    header = {"X-CSRF-Token": csrf}
    key = str(uuid.uuid4())
    assign = {"user": INSTALLER, "key": key}
    assert client.post(f"{ticket}/assignee", json=assign).status_code == 403  # no CSRF token
    refused = client.post(f"{ticket}/assignee", json=assign | {"key": "!"}, headers=header)
    assert refused.status_code == 422
    for _ in range(2):  # queued offline; sent twice when back online
        done = client.post(f"{ticket}/assignee", json=assign, headers=header)
        assert (done.status_code, done.json()["assignee"]) == (200, INSTALLER), done.text
    # Given to nobody since: the first answer's resend does not give it back.
    by_form = client.post(f"{ticket}/assignee", data={"csrf": csrf, "user": ""},
                          follow_redirects=False)  # fmt: skip
    assert by_form.status_code == 303
    again = client.post(f"{ticket}/assignee", json=assign, headers=header)
    assert (again.status_code, again.json()["assignee"]) == (200, None)
    reused = client.post(f"{ticket}/assignee", json=assign | {"user": OPERATOR}, headers=header)
    assert reused.status_code == 409
    # The same assignee again with a new key changes nothing, but its key is kept.
    same = {"user": "", "key": str(uuid.uuid4())}
    for _ in range(2):
        assert client.post(f"{ticket}/assignee", json=same, headers=header).status_code == 200
    with Session(world.engine) as session:
        assigned = OperatorLogEntry.action == "fault.assign"
        logged = [(e.before, e.after) for e in session.scalars(
            select(OperatorLogEntry).where(assigned).order_by(OperatorLogEntry.seq))]  # fmt: skip
    assert logged == [({"assignee": None}, {"assignee": INSTALLER, "key": key}),
                      ({"assignee": INSTALLER}, {"assignee": None}),
                      ({"assignee": None}, {"assignee": None, "key": same["key"]})]  # fmt: skip


def test_a_photo_sent_by_a_form_without_script_is_checked_kept_once_and_stripped(
    client: TestClient, world: World
) -> None:
    csrf = technician(client)
    opened = client.post("/field/faults", data={"csrf": csrf, "kind": "tamper", "meter": M1},
                         follow_redirects=False)  # fmt: skip
    ticket = opened.headers["location"]
    page = client.get(ticket).text
    assert 'enctype="multipart/form-data"' in page and 'id="photo-send"' in page
    found = re.search(r'id="photo-form".*?name="key" value="([^"]+)"', page, re.S)
    assert found is not None
    key = found[1]
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (22.0, 32.0, 0.0)}  # GPSInfo: where it was taken
    out = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 30, 30)).save(out, "JPEG", exif=exif)
    camera = {"photo": ("IMG_0001.jpg", out.getvalue(), "image/jpeg")}
    form = {"csrf": csrf, "key": key}
    assert client.post(f"{ticket}/photos", data={"key": key}, files=camera).status_code == 403
    for sent in ({"photo": ("x.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "image/jpeg")},
                 {"photo": ("x.png", out.getvalue(), "image/png")}):  # fmt: skip
        refused = client.post(f"{ticket}/photos", data=form, files=sent)
        assert refused.status_code == 422 and "照片未保存" in refused.text
    no_file = client.post(f"{ticket}/photos", data=form, files={"other": ("a", b"b", "text/plain")})
    assert no_file.status_code == 422
    assert count(world, FaultPhoto) == 0
    for _ in range(2):  # sent again (a double tap, the back button): kept once
        done = client.post(f"{ticket}/photos", data=form, files=camera, follow_redirects=False)
        assert (done.status_code, done.headers["location"]) == (303, ticket)
    with Session(world.engine) as session:
        kept = session.scalars(select(FaultPhoto)).one()
        assert (kept.content_type, kept.width, kept.height) == ("image/jpeg", 80, 60)
        with Image.open(io.BytesIO(kept.data)) as image:
            assert not image.getexif()
    out = io.BytesIO()
    Image.new("RGB", (80, 60), (30, 30, 200)).save(out, "JPEG")
    other = {"photo": ("IMG_0002.jpg", out.getvalue(), "image/jpeg")}  # another photo, the key
    assert client.post(f"{ticket}/photos", data=form, files=other).status_code == 409


def test_a_photo_of_the_register_is_kept_once_beside_its_reading(
    client: TestClient, world: World
) -> None:
    csrf = technician(client)
    reading_key = str(uuid.uuid4())
    reading = {"key": reading_key, "address": M1, "kwh": "1300.25",
               "read_at": "2026-11-24T16:45:00+08:00"}  # fmt: skip
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (22.0, 32.0, 0.0)}  # GPSInfo
    Image.new("RGB", (64, 48), (250, 200, 0)).save(out, "JPEG", exif=exif)
    key = str(uuid.uuid4())
    sent = {"Content-Type": "image/jpeg", "X-CSRF-Token": csrf, "X-Idempotency-Key": key}
    url = f"/field/readings/{reading_key}/photos"
    early = client.post(url, content=out.getvalue(), headers=sent)
    assert early.status_code == 404  # the queue sends the reading first
    assert (
        client.post("/field/readings", json=reading, headers={"X-CSRF-Token": csrf}).status_code
        == 200
    )
    assert client.post(url, content=out.getvalue(), headers=sent | {"X-CSRF-Token": "0" * 64}
                       ).status_code == 403  # fmt: skip
    for bad, data in (({"Content-Type": "image/png"}, out.getvalue()),
                      ({}, b"\xff\xd8\xff\xe0 not a jpeg"),
                      ({"X-Idempotency-Key": "!"}, out.getvalue())):  # fmt: skip
        assert client.post(url, content=data, headers=sent | bad).status_code == 422
    assert count(world, FaultPhoto) == 0
    answers = [client.post(url, content=out.getvalue(), headers=sent) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 200]
    photo = answers[0].json()
    assert answers[1].json()["id"] == photo["id"]
    with Session(world.engine) as session:
        kept = session.scalars(select(FaultPhoto)).one()
        row = session.scalars(select(IrReading)).one()
        assert (kept.ir_reading_id, kept.fault_id) == (row.id, None)
        with Image.open(io.BytesIO(kept.data)) as image:
            assert not image.getexif()
        logged = session.scalars(select(OperatorLogEntry.action).where(
            OperatorLogEntry.target == f"ir_reading:{row.id}")).all()  # fmt: skip
        assert logged == ["ir.photo"]
    home = client.get("/field/").text
    assert f'<img src="{photo["url"]}"' in home and "1300.25 kWh" in home
    shown = client.get(photo["url"])
    assert (shown.status_code, shown.headers["content-type"]) == (200, "image/jpeg")
    # A reading's photo is not a ticket's, and the other way round.
    assert client.get(f"/field/faults/1/photos/{photo['id']}").status_code == 404
    other = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 0, 0)).save(other, "JPEG")
    assert client.post(url, content=other.getvalue(), headers=sent).status_code == 409
    camera = {"photo": ("IMG.jpg", other.getvalue(), "image/jpeg")}
    by_form = client.post(url, data={"csrf": csrf, "key": str(uuid.uuid4())}, files=camera,
                          follow_redirects=False)  # fmt: skip
    assert (by_form.status_code, by_form.headers["location"]) == (303, "/field/")
    assert count(world, FaultPhoto) == 2
