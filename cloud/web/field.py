"""`/field/`: the field technician's app (issue 16 §7), a progressive web app for installers and
operators (`FIELD`) on a phone, usable offline.

    GET  /field/                      the day's screen: queued readings, open alarms, tickets
                                      (`?tickets=mine`: those assigned to the user)
    GET  /field/login   POST          password login (the console's sessions, SameSite=Strict)
    POST /field/logout
    GET  /field/faults/{id}           a ticket, its history and the moves `TRANSITIONS` allows
    POST /field/faults                open a ticket (by hand, or `alarm=` from an alarm; a form,
                                      or JSON with `key` from the offline queue)
    POST /field/faults/{id}/status    move it (a form; or JSON with `key` from the offline queue)
    POST /field/faults/{id}/comments  a comment on it (the same; the status is kept)
    POST /field/faults/{id}/assignee  give it to a technician (the same; admin and operator only)
    POST /field/readings              a register typed on site (JSON from the offline queue, with
                                      the phone's idempotency `key`; or a form without script)
    POST /field/faults/{id}/photos    a photo of it, the image's bytes (`field_photos`)
    POST /field/readings/{key}/photos a photo of the register beside a reading (`field_photos`)
    POST /field/recharges, /swaps     cash taken on site, a meter swap (`field_desk`)
    GET  /field/receipts/{number}     the cash receipt to show and print (`field_desk`)
    GET  /field/sw.js                 the service worker (`static/field-sw.js`; scope /field/)
    GET  /field/manifest.webmanifest  the web app manifest

Offline: `static/field.js` keeps the pages and their files in the Cache API and what is typed
offline in IndexedDB — tickets opened, readings, ticket moves, comments and assignments, cash
taken, meter swaps — each with a key made on the phone (a form without script carries one the
server made), and sends them when the phone is back online; the service worker answers from the
cache when the network does not. The server applies each once: a reading is an IR reading
(`meter_swaps.import_ir`, the handheld import's service: one row per meter and time, the key
kept in its `source`), an opening, a move or a comment carries its key into the ticket's
history (`faults.open_fault`, `faults.move`, `faults.comment`), an assignment into its
`fault.assign` log row (`faults.assign`). JSON posts carry the CSRF token in `X-CSRF-Token`.
Cash and swaps are the API's own services with the key as the operation's id (`field_desk`);
cash only for the roles of the money desk. A ticket opened offline exists only once sent: a
comment or photo for it waits until then (the queue links to the ticket once it is opened).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.common import DbSession, Now
from cloud.db.operations import IrReading
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import faults, handheld, meter_swaps, photos
from cloud.operations.alarms import AlarmFilters, listed
from cloud.people import oplog
from cloud.people.auth import FIELD, MONEY_DESK, OPERATIONS, Principal, Role
from cloud.registry.values import PROTOCOLS
from cloud.web import sessions
from cloud.web.forms import parse_form
from cloud.web.i18n import Lang, translator
from cloud.web.icons import ICONS
from cloud.web.page_errors import NotStaff, PageError
from cloud.web.render import SECURITY_HEADERS, STATIC, page, static_url

T = TypeVar("T")

router = APIRouter(prefix="/field", include_in_schema=False)

KEY = re.compile(r"[A-Za-z0-9\-]{8,64}")  # a phone's idempotency key (a UUID)
KWH = re.compile(r"(\d{1,8})(?:\.(\d{1,2}))?")  # typed: 1234, 1234.5, 1234.56
FUTURE = dt.timedelta(minutes=10)  # a phone clock a little ahead is tolerated, no more
SHOWN = 50  # tickets and alarms on the screen
READINGS_SHOWN = 10  # the user's latest readings typed on site, with their photos


def _technician(request: Request, session: DbSession, now: Now) -> Principal:
    who = sessions.principal(request, session, now)
    if who.role is Role.MERCHANT:
        raise NotStaff(f"{who.user} is a merchant")
    if who.role not in FIELD:
        raise PageError("field_not_allowed", 403)
    return who


Technician = Annotated[Principal, Depends(_technician)]


async def _fields(request: Request) -> dict[str, str]:
    """A form's fields, or a JSON object of strings (the offline queue's posts)."""
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        return parse_form(body, kind)
    data = json.loads(body or b"null")  # already checked by `guards.BodyGuard`
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise Invalid("send a JSON object of strings")
    return data


Fields = Annotated[dict[str, str], Depends(_fields)]


def is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("application/json")


def check_csrf(request: Request, fields: dict[str, str]) -> None:
    sessions.check_csrf(request, request.headers.get("x-csrf-token") or fields.get("csrf"))


def frame(request: Request, who: Principal) -> dict[str, Any]:
    return {"who": who, "csrf": sessions.csrf_token(sessions.token_of(request))}


@router.get("")
def root() -> Response:
    return RedirectResponse("/field/", status_code=303)


@router.get("/")
def home(
    request: Request, lang: Lang, who: Technician, session: DbSession,
    tickets: Annotated[Literal["all", "mine"], Query()] = "all",
) -> Response:  # fmt: skip
    return home_page(request, lang, who, session, mine=tickets == "mine")


def home_page(request: Request, lang: tuple[str, bool], who: Principal, session: Session, *,
          error: str | None = None, status: int = 200, form: dict[str, str] | None = None,
          error_text: str = "", mine: bool = False) -> Response:  # fmt: skip
    """The day's screen; `error` a catalogue key, `error_text` words already said; `mine`: only
    the tickets assigned to the user."""
    query = faults.listed(active=True, assignee=who.user if mine else None)
    tickets = session.scalars(query.limit(SHOWN)).all()
    mine_typed = IrReading.source.like("field:%") & (IrReading.operator == who.user)
    latest = select(IrReading).where(mine_typed).order_by(IrReading.id.desc())
    readings = session.scalars(latest.limit(READINGS_SHOWN)).all()
    alarms = session.scalars(listed(AlarmFilters(cleared=False), newest_first=True)
                             .limit(SHOWN)).all()  # fmt: skip
    return page(request, "field/home.html", lang, status=status, **frame(request, who),
                tickets=tickets, alarms=alarms, kinds=faults.KINDS, error=error,
                ticket_of={f.alarm_id: f.id for f in tickets if f.alarm_id is not None},
                form=form or {}, error_text=error_text, new_key=str(uuid.uuid4()),
                may_take_cash=who.role in MONEY_DESK, protocols=tuple(PROTOCOLS),
                mine=mine, readings=readings,
                reading_photos=photos.of_readings(session, [r.id for r in readings]))  # fmt: skip


# -- logging in and out -----------------------------------------------------------------------


def _login_page(request: Request, lang: tuple[str, bool], *, error: str | None = None,
                status: int = 200, user: str = "") -> Response:  # fmt: skip
    token = sessions.login_csrf(request)
    response = page(request, "field/login.html", lang, status=status, csrf=token, error=error,
                    user=user)  # fmt: skip
    sessions.keep_login_csrf(response, request, token)
    return response


@router.get("/login")
def login_form(request: Request, lang: Lang) -> Response:
    return _login_page(request, lang)


@router.post("/login")
def login(request: Request, lang: Lang, form: Fields, session: DbSession, now: Now) -> Response:
    try:
        done = sessions.form_login(request, form, session, now)
    except sessions.LoginFailed as failed:
        return _login_page(request, lang, error=failed.key, status=failed.status,
                           user=failed.user)  # fmt: skip
    response = RedirectResponse("/field/", status_code=303)
    sessions.start(response, request, done, now, samesite="strict")
    return response


@router.post("/logout")
def logout(request: Request, form: Fields, session: DbSession, now: Now) -> Response:
    response = RedirectResponse("/field/login", status_code=303)
    sessions.form_logout(request, form, session, now, response)
    return response


# -- fault tickets ----------------------------------------------------------------------------

FaultId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def ticket_page(
    request: Request,
    lang: tuple[str, bool],
    who: Principal,
    session: Session,
    fault_id: int,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        fault = faults.one(session, fault_id)
    except NotFound:
        raise PageError("fault_not_found", 404) from None
    # The history: its steps and its photos, in the order they were made.
    entries = sorted([*((s.time, 0, s.id, s) for s in faults.history(session, fault_id)),
                      *((p.created, 1, p.id, p) for p in photos.listed(session, fault_id))],
                     key=lambda e: e[:3])  # fmt: skip
    return page(request, "field/fault.html", lang, status=status, **frame(request, who),
                fault=fault, entries=[(kind, row) for _, kind, _, row in entries],
                moves=sorted(faults.TRANSITIONS[fault.status], key=faults.STATUSES.index),
                error=error, new_key=str(uuid.uuid4()), photo_key=str(uuid.uuid4()),
                technicians=faults.technicians(session) if may_assign(who) else [])  # fmt: skip


def may_assign(who: Principal) -> bool:
    """Dispatching is the operators' (`OPERATIONS`), as the API's `/faults/{id}/assignee`."""
    return who.role in OPERATIONS


@router.get("/faults/{fault_id}")
def ticket(request: Request, lang: Lang, who: Technician, session: DbSession,
           fault_id: FaultId) -> Response:  # fmt: skip
    return ticket_page(request, lang, who, session, fault_id)


def client_key(form: dict[str, str]) -> str | None:
    """The phone's idempotency key, if the record carries one (the offline queue's posts)."""
    key = form.get("key") or None
    if key is not None and not KEY.fullmatch(key):
        raise Invalid("bad idempotency key")
    return key


def _optional(form: dict[str, str], name: str) -> str | None:
    return form.get(name, "").strip() or None


@router.post("/faults")
def open_ticket(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession, now: Now
) -> Response:
    """Open a ticket, once per `key` (`faults.open_fault`). JSON (the offline queue) is answered
    with the ticket and its URL — the first's, for its key again — or the refusal, with the URL
    of the ticket that holds the alarm (`AlarmTaken`); a form with the ticket's page."""
    check_csrf(request, form)
    key, note, alarm = client_key(form), form.get("note", ""), form.get("alarm", "").strip()
    try:
        if alarm:
            if not alarm.isdigit() or not 1 <= int(alarm) < 2**63:
                raise Invalid("bad alarm id")
            fault, new = faults.open_from_alarm(session, int(alarm), note=note, actor=who.actor,
                                                now=now, client_key=key)  # fmt: skip
        else:
            place = faults.Place(_optional(form, "site"), _optional(form, "node"),
                                 _optional(form, "meter"))  # fmt: skip
            fault, new = faults.open_fault(session, form.get("kind", ""), place, note=note,
                                           actor=who.actor, now=now, client_key=key)  # fmt: skip
    except (Invalid, NotFound, Conflict) as exc:
        session.rollback()
        status = {Invalid: 422, NotFound: 404}.get(type(exc), 409)
        said = "fault_alarm_taken" if isinstance(exc, faults.AlarmTaken) else "fault_form_bad"
        if is_json(request):
            taken = exc.fault_id if isinstance(exc, faults.AlarmTaken) else None
            said = translator(lang[0])(said) if taken else str(exc)
            url = f"/field/faults/{taken}" if taken else None
            return JSONResponse({"error": said, "url": url}, status_code=status)
        return home_page(request, lang, who, session, error=said, status=status, form=form)
    url = f"/field/faults/{fault.id}"
    if is_json(request):
        return JSONResponse({"id": fault.id, "status": fault.status, "new": new, "url": url})
    return RedirectResponse(url, status_code=303)


@router.post("/faults/{fault_id}/status")
def move_ticket(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession, now: Now,
    fault_id: FaultId,
) -> Response:  # fmt: skip
    check_csrf(request, form)
    key = client_key(form)
    return _ticket_action(
        request, lang, who, session, fault_id, "fault_move_refused",
        lambda: faults.move(session, fault_id, form.get("to", ""), note=form.get("note", ""),
                            actor=who.actor, now=now, client_key=key),
        lambda fault: {"id": fault.id, "status": fault.status},
    )  # fmt: skip


def _ticket_action(  # noqa: PLR0917 (a route's context)
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, fault_id: int,
    refused: str,
    act: Callable[[], T], answer: Callable[[T], dict[str, Any]],
) -> Response:  # fmt: skip
    """A ticket action from the page or the offline queue: JSON for the queue, the ticket page
    again (with `refused` said in words) or a redirect to it for a form."""
    try:
        done = act()
    except (Invalid, NotFound, Conflict) as exc:
        session.rollback()
        status = {Invalid: 422, NotFound: 404, Conflict: 409}[type(exc)]
        if is_json(request):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return ticket_page(request, lang, who, session, fault_id, error=refused, status=status)
    if is_json(request):
        return JSONResponse(answer(done))
    return RedirectResponse(f"/field/faults/{fault_id}", status_code=303)


@router.post("/faults/{fault_id}/comments")
def comment_ticket(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession, now: Now,
    fault_id: FaultId,
) -> Response:  # fmt: skip
    check_csrf(request, form)
    key = client_key(form)
    return _ticket_action(
        request, lang, who, session, fault_id, "fault_comment_bad",
        lambda: faults.comment(session, fault_id, form.get("note", ""), actor=who.actor,
                               now=now, client_key=key),
        lambda step: {"id": step.id, "fault": fault_id},
    )  # fmt: skip


@router.post("/faults/{fault_id}/assignee")
def assign_ticket(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession, now: Now,
    fault_id: FaultId,
) -> Response:  # fmt: skip
    check_csrf(request, form)
    if not may_assign(who):
        raise PageError("field_assign_not_allowed", 403)
    key = client_key(form)
    return _ticket_action(
        request, lang, who, session, fault_id, "field_assign_refused",
        lambda: faults.assign(session, fault_id, _optional(form, "user"), actor=who.actor,
                              now=now, client_key=key),
        lambda fault: {"id": fault.id, "assignee": fault.assignee},
    )  # fmt: skip


# -- readings typed on site -------------------------------------------------------------------


def wh_of_kwh(text: str) -> int:
    """`"1234.5"` → 1 234 500 Wh: by the digits, never a float (at most two decimals)."""
    match = KWH.fullmatch(text.strip())
    if match is None:
        raise Invalid(f"register {text!r} must be kWh with at most two decimals, e.g. 1234.56")
    return handheld.kwh_to_wh(f"{match[1]}.{(match[2] or '').ljust(2, '0')}")


def reading_of(fields: dict[str, str], now: dt.datetime) -> tuple[str, handheld.IrRegister]:
    """(the phone's key, the register) of a typed reading; `Invalid` saying what is wrong."""
    key, address = fields.get("key", ""), fields.get("address", "").strip()
    if not KEY.fullmatch(key):
        raise Invalid("each reading carries its key, 8-64 letters, digits or dashes")
    if not handheld.ADDRESS.fullmatch(address):
        raise Invalid(f"meter address {address!r} is not 1-32 letters/digits")
    try:
        read_at = dt.datetime.fromisoformat(fields.get("read_at", ""))
    except ValueError:
        raise Invalid("read_at must be ISO 8601 with an offset") from None
    if read_at.utcoffset() is None:
        raise Invalid("read_at has no offset")
    if read_at > now + FUTURE:
        raise Invalid("read_at is in the future: check the phone's clock")
    return key, handheld.IrRegister(address, read_at, wh_of_kwh(fields.get("kwh", "")))


@router.post("/readings")
def record_reading(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession, now: Now
) -> Response:
    check_csrf(request, form)
    if not is_json(request):  # a form without script: the time is the server's
        form = {**form, "read_at": now.isoformat()}
    try:
        key, register = reading_of(form, now)
        source = f"field:{key}"
        known = session.scalars(select(IrReading).where(IrReading.source == source)).first()
        if known is not None:
            row, new = known, 0
        else:
            rows, new = meter_swaps.import_ir(session, [register], source=source,
                                              operator=who.user, now=now)  # fmt: skip
            row = rows[0]
    except (Invalid, Conflict) as exc:
        session.rollback()
        status = 409 if isinstance(exc, Conflict) else 422
        if is_json(request):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return home_page(request, lang, who, session, error="reading_bad", status=status, form=form)
    if new:  # logged as the handheld import is
        oplog.record(session, who.actor, "ir.import", f"source:{source}", None,
                     {"readings": [row.id], "new": new}, now)  # fmt: skip
    if is_json(request):
        return JSONResponse({"id": row.id, "new": bool(new), "energy_wh": row.energy_wh})
    return RedirectResponse("/field/", status_code=303)


# -- the app's own files ----------------------------------------------------------------------


@router.get("/sw.js")
def service_worker() -> Response:
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return Response((STATIC / "field-sw.js").read_bytes(),
                    media_type="text/javascript; charset=utf-8", headers=headers)  # fmt: skip


@router.get("/manifest.webmanifest")
def manifest(lang: Lang) -> Response:
    name = "现场运维" if lang[0] == "zh" else "Voltbook field"
    body = {"name": name, "short_name": name, "lang": "zh-CN" if lang[0] == "zh" else "en",
            "start_url": "/field/", "scope": "/field/", "display": "standalone",
            "background_color": "#f2f4f3", "theme_color": "#0b6e4f",
            "icons": [{"src": static_url("field-icon.svg"), "sizes": "any",
                       "type": "image/svg+xml"},
                      *({"src": static_url(i.name), "sizes": f"{i.size}x{i.size}",
                         "type": "image/png", "purpose": i.purpose} for i in ICONS)]}  # fmt: skip
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/manifest+json",
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})  # fmt: skip
