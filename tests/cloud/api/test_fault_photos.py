"""Photos of a fault ticket through the API (`POST /faults/{id}/photos`, `GET …/{photo}`): the
image is the raw body; one kept per key (a resend answers the first, other bytes under the key
are refused); everything refused — by magic bytes, a wrong declared type, a truncated file,
too many bytes, a JSON body, a ticket that does not exist — changes nothing; the photo comes
back with its type and `nosniff`, only under its own ticket; who may is in the authorization
matrix (and checked here for the roles that differ)."""

from __future__ import annotations

import io

import httpx
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, func, select

from cloud.api.guards import FORM_OVERHEAD
from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import session_factory
from cloud.db.faults import FaultPhoto
from cloud.operations.photos import MAX_BYTES
from cloud.people.auth import Role
from tests.cloud.api.conftest import Site, bearer

KEY = "0b6e4f2a-1111-4c2d-9e3f-000000000001"


def png(colour: tuple[int, int, int] = (11, 110, 79)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


def counts(engine: Engine) -> tuple[int, int]:
    with session_factory(engine)() as session:
        return (session.scalar(select(func.count()).select_from(FaultPhoto)) or 0,
                session.scalar(select(func.count()).select_from(OperatorLogEntry)
                               .where(OperatorLogEntry.action == "fault.photo")) or 0)  # fmt: skip


def a_ticket(client: TestClient) -> int:
    made = client.post("/faults", json={"kind": "other", "site": "Plaza"})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def send(client: TestClient, fault: int, data: bytes, kind: str = "image/png",
         key: str | None = KEY, **headers: str) -> httpx.Response:  # fmt: skip
    sent = {"Content-Type": kind, **headers} | ({"Idempotency-Key": key} if key else {})
    answer: httpx.Response = client.post(f"/faults/{fault}/photos", content=data, headers=sent)
    return answer


def test_a_photo_is_kept_once_per_key_and_served_under_its_ticket(
    client: TestClient, site: Site, tokens: dict[Role, str]
) -> None:
    fault, other = a_ticket(client), a_ticket(client)
    installer = bearer(tokens[Role.INSTALLER])
    made = client.post(f"/faults/{fault}/photos?taken=2026-12-06T09:30:00%2B08:00",
                       content=png(), headers={"Content-Type": "image/png",
                                               "Idempotency-Key": KEY, **installer})  # fmt: skip
    assert made.status_code == 201, made.text
    photo = made.json()
    assert (photo["fault_id"], photo["content_type"], photo["width"], photo["height"],
            photo["by"]) == (fault, "image/png", 40, 30, "installer-1")  # fmt: skip
    assert photo["taken"].startswith("2026-12-06T01:30:00")
    assert counts(site.engine) == (1, 1)
    again = send(client, fault, png())  # the phone resends: the same photo, not a second
    assert (again.status_code, again.json()["id"]) == (200, photo["id"])
    other_bytes = send(client, fault, png((200, 0, 0)))
    assert other_bytes.status_code == 409
    other_ticket = send(client, other, png())
    assert other_ticket.status_code == 409
    assert counts(site.engine) == (1, 1)
    no_key = send(client, fault, png((0, 0, 200)), key=None)  # the API's own callers may omit it
    assert no_key.status_code == 201
    assert counts(site.engine) == (2, 2)

    url = f"/faults/{fault}/photos/{photo['id']}"
    got = client.get(url, headers=bearer(tokens[Role.AUDITOR]))
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]
    with Image.open(io.BytesIO(got.content)) as image:
        assert (image.format, image.size) == ("PNG", (40, 30))
    assert client.get(f"/faults/{other}/photos/{photo['id']}").status_code == 404
    assert client.get(f"/faults/{fault}/photos/999999").status_code == 404
    assert client.get(url, headers=bearer(tokens[Role.MERCHANT])).status_code == 403
    detail = client.get(f"/faults/{fault}").json()
    assert [p["id"] for p in detail["photos"]] == [photo["id"], no_key.json()["id"]]
    auditor = send(client, fault, png((1, 2, 3)), key=None, **bearer(tokens[Role.AUDITOR]))
    assert auditor.status_code == 403
    assert counts(site.engine) == (2, 2)


def test_what_is_not_a_photo_changes_nothing(client: TestClient, site: Site) -> None:
    fault = a_ticket(client)
    good = png()
    refused = [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", 422),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/png", 422),  # the magic decides
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png", 422),
        (good, "image/jpeg", 422),  # a PNG renamed .jpg
        (good, "text/html", 422),
        (good[: len(good) // 2], "image/png", 422),  # truncated
        (b'{"photo": "no"}', "application/json", 422),
        (b"", "image/png", 422),
        (good + b"\x00" * MAX_BYTES, "image/png", 422),  # past the photo limit
        (good + b"\x00" * (MAX_BYTES + FORM_OVERHEAD), "image/png", 413),  # past the body limit
    ]
    for data, kind, status in refused:
        answer = send(client, fault, data, kind, key=None)
        assert answer.status_code == status, (kind, len(data), answer.text)
    assert send(client, fault, good, key="bad key!").status_code == 422
    assert send(client, 999999, good).status_code == 404
    assert counts(site.engine) == (0, 0)
    assert send(client, fault, good).status_code == 201  # the key was not spent
