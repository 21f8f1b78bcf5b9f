"""The console's alarms: the live feed every console page listens to (`live`), the alarms
screen and each user's pop-up preferences.

    GET  /console/events                    Server-Sent Events for the session (`live`): new
                                            alarms, concentrators off/on line, meter values
    GET  /console/alarms                    alarms grouped by building and floor; filters
                                            kind, severity, acknowledged; printable
    POST /console/alarms/{id}/acknowledge   with a note: `cloud.operations.alarms.acknowledge`,
                                            logged as `POST /alarms/{id}/acknowledge` logs it
    GET  /console/alarms/settings   POST    the pop-up: on/off, sound, which kinds

Who may: as `/alarms`, staff and installers read (`READ_ALL`), the field acknowledges
(`FIELD`). The feed answers 401 without a session (an `EventSource` does not follow a
redirect to the login form) and ends when the session does. Streams are counted per session
and per worker: a fourth replaces the oldest (`live.Pace.streams_per_session`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator
from itertools import groupby
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from cloud.api.common import DbSession, Now, silent_after
from cloud.chains.alarm_kinds import GROUPS
from cloud.db.models import Alarm
from cloud.errors import Conflict, NotFound
from cloud.operations import alarms, silence
from cloud.operations.alarms import AlarmFilters
from cloud.people.auth import FIELD, READ_ALL, Principal
from cloud.web import live, sessions
from cloud.web.console import Form, Staff, frame
from cloud.web.i18n import Lang, Translate
from cloud.web.live import PACE, Cursor, Ended, Live, Prefs
from cloud.web.page_errors import NotStaff, PageError
from cloud.web.render import local_time, page

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 100
SEVERITIES = ("critical", "warning", "info")
FLAGS = {"": None, "yes": True, "no": False}
_OPEN: dict[str, list[Live]] = {}  # session → its open streams, oldest first (this worker's)
_OPEN_LOCK = threading.Lock()


# -- the live feed ----------------------------------------------------------------------------


def _open(request: Request, session: Any, now: Any, lang: str, resume: Cursor | None) -> Live:
    who = sessions.principal(request, session, now)
    if who.role not in READ_ALL:
        raise NotStaff(who.user)
    stream = Live(sessions.token_of(request), who.address, who, lang,
                  live.prefs_of(session, who.user), time.monotonic,
                  silent_after(request))  # fmt: skip
    stream.start(session, now, resume)
    return stream


@router.get("/events")
def events(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    session: DbSession,
    now: Now,
    last: Annotated[str | None, Query(max_length=40, description="a cursor")] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    try:
        stream = _open(request, session, now, lang[0], Cursor.parse(last_event_id or last))
    except sessions.NoSession:
        return Response("no session", status_code=401, media_type="text/plain")
    except NotStaff:
        return Response("not staff", status_code=403, media_type="text/plain")
    key = live.session_key(stream.token)
    with _OPEN_LOCK:  # this runs on the thread pool, the feed's end on the event loop
        streams = _OPEN.setdefault(key, [])
        streams[:] = [s for s in streams if not s.replaced]  # ending, or never started
        streams.append(stream)
        for old in streams[: -PACE.streams_per_session]:
            old.replaced = True
    return StreamingResponse(
        _feed(request, stream, key), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )  # fmt: skip


def _poll(request: Request, stream: Live) -> list[str]:
    with request.app.state.sessions() as session:
        return stream.tick(session, request.app.state.now())


async def _feed(request: Request, stream: Live, key: str) -> AsyncIterator[str]:
    started = quiet = time.monotonic()
    try:
        yield f"retry: 2000\n\n{stream.hello(request.app.state.now())}"
        while time.monotonic() - started < PACE.lifetime:
            await asyncio.sleep(PACE.tick)
            try:
                out = await run_in_threadpool(_poll, request, stream)
            except Ended as ended:
                yield live.event("end", Cursor(stream.alarm, 0), {"reason": ended.reason})
                return
            if out:
                quiet = time.monotonic()
                yield "".join(out)
            elif time.monotonic() - quiet >= PACE.beat:
                quiet = time.monotonic()
                yield stream.beat(request.app.state.now())
    finally:
        with _OPEN_LOCK:
            streams = _OPEN.get(key, [])
            if stream in streams:
                streams.remove(stream)
            if not streams:
                _OPEN.pop(key, None)


# -- the alarms screen ------------------------------------------------------------------------


def detail_text(t: Translate, alarm: Alarm) -> str:
    """An alarm's detail: a node's silence in the page's words, from its facts
    (`cloud.operations.silence`); any other as stored (the edge's message, the cloud's text)."""
    facts = alarm.facts if isinstance(alarm.facts, dict) else {}
    seen, status, minutes = (facts.get(k) for k in ("last_seen", "status", "silent_after_min"))
    if (alarm.kind != silence.KIND or not isinstance(seen, str)
            or status not in ("online", "offline") or type(minutes) is not int):  # fmt: skip
        return alarm.detail
    try:
        when = dt.datetime.fromisoformat(seen)
    except ValueError:
        return alarm.detail
    return t(f"alarm_detail_{silence.KIND}", minutes=minutes, status=t(f"state_{status}"),
             seen=local_time(when, "%Y-%m-%d %H:%M:%S"))  # fmt: skip


def _kinds(session: Any) -> list[str]:
    return list(session.scalars(select(Alarm.kind).distinct().order_by(Alarm.kind)))


@router.get("/alarms")
def alarms_page(  # noqa: PLR0917 (the screen's filters)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    kind: Annotated[str, Query(max_length=64)] = "",
    severity: Annotated[str, Query(pattern="^(|info|warning|critical)$")] = "",
    acknowledged: Annotated[str, Query(pattern="^(|yes|no)$")] = "no",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    chosen = {"kind": kind, "severity": severity, "acknowledged": acknowledged}
    return _screen(request, lang, who, session, chosen, now=now, offset=offset)


def _screen(request: Request, lang: tuple[str, bool], who: Principal, session: Any,
            chosen: dict[str, str], *, now: dt.datetime, offset: int = 0,
            error: str | None = None, status: int = 200) -> Response:  # fmt: skip
    """The alarms matching `chosen` (kind, severity, acknowledged: yes/no/empty), newest first,
    a page of them grouped by building and floor (those with no place last)."""
    query = {k: v for k, v in chosen.items() if v}
    filters = AlarmFilters(kind=query.get("kind"), severity=query.get("severity"),
                           acknowledged=FLAGS[chosen.get("acknowledged", "")])  # fmt: skip
    total = session.scalar(select(func.count()).select_from(alarms.listed(filters).subquery()))
    rows = list(session.scalars(
        alarms.listed(filters, newest_first=True).limit(PAGE_SIZE).offset(offset)
    ))  # fmt: skip
    places = alarms.places(session, rows)

    def floor_of(alarm: Alarm) -> tuple[str, str] | None:
        place = places.get(alarm.id)
        return None if place is None else place[:2]

    ordered = sorted(rows, key=lambda a: (a.id not in places, floor_of(a) or ("", "")))
    groups = [(floor, list(items)) for floor, items in groupby(ordered, key=floor_of)]
    shops = {i: shop for i, (_, _, shop) in places.items()}

    def link(**changes: object) -> str:
        return "/console/alarms?" + urlencode({**query, **{k: str(v) for k, v in changes.items()}})

    other = "en" if lang[0] == "zh" else "zh"
    return page(request, "console/alarms.html", lang, status=status, **frame(request, who),
                groups=groups, total=total or 0, offset=offset, size=PAGE_SIZE,
                kinds=_kinds(session), severities=SEVERITIES, chosen=chosen, link=link,
                may_ack=who.role in FIELD, error=error,
                detail_text=detail_text,
                back=urlencode(query), shops=shops, printed=now,
                lang_link=link(lang=other))  # fmt: skip


def _chosen(back: str) -> dict[str, str]:
    """The filters a form came from (its `back` field), the known ones only."""
    try:
        pairs = dict(parse_qsl(back[:300], strict_parsing=False))
    except ValueError:
        pairs = {}
    chosen = {"kind": pairs.get("kind", "")[:64], "severity": pairs.get("severity", ""),
              "acknowledged": pairs.get("acknowledged", "")}  # fmt: skip
    if chosen["severity"] not in ("", *SEVERITIES):
        chosen["severity"] = ""
    if chosen["acknowledged"] not in FLAGS:
        chosen["acknowledged"] = ""
    return chosen


@router.post("/alarms/{alarm_id}/acknowledge")
def acknowledge(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    form: Form,
    alarm_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> Response:
    sessions.check_csrf(request, form.get("csrf"))
    if who.role not in FIELD:
        raise PageError("alarm_ack_forbidden", 403)
    chosen = _chosen(form.get("back", ""))
    note = form.get("note", "").strip()
    error = None
    if not note:
        error = "alarm_note_missing"
    elif len(note) > alarms.MAX_NOTE:
        error = "alarm_note_long"
    else:
        try:
            alarms.acknowledge(session, alarm_id, note, who.actor, now)
        except NotFound:
            raise PageError("alarm_not_found", 404) from None
        except Conflict:
            error = "alarm_acknowledged_already"
    if error is None:
        query = urlencode({k: v for k, v in chosen.items() if v})
        return RedirectResponse(f"/console/alarms?{query}", status_code=303)
    status = 409 if error == "alarm_acknowledged_already" else 422
    return _screen(request, lang, who, session, chosen, now=now, error=error, status=status)


# -- the pop-up's preferences -----------------------------------------------------------------


@router.get("/alarms/settings")
def settings_form(request: Request, lang: Lang, who: Staff, session: DbSession) -> Response:
    return _settings(request, lang, who, live.prefs_of(session, who.user))


def _settings(request: Request, lang: tuple[str, bool], who: Principal, prefs: Prefs, *,
              saved: bool = False, error: str | None = None,
              status: int = 200) -> Response:  # fmt: skip
    return page(request, "console/alarm_settings.html", lang, status=status,
                **frame(request, who), prefs=prefs, groups=GROUPS, saved=saved,
                error=error)  # fmt: skip


@router.post("/alarms/settings")
def save_settings(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, now: Now, form: Form
) -> Response:
    sessions.check_csrf(request, form.get("csrf"))
    known = {"csrf", "popup", "sound"} | {f"show_{g}" for g in GROUPS}
    if set(form) - known or any(form[k] != "on" for k in form if k != "csrf"):
        return _settings(request, lang, who, live.prefs_of(session, who.user),
                         error="settings_bad", status=422)  # fmt: skip
    prefs = Prefs(popup="popup" in form, sound="sound" in form,
                  muted=frozenset(g for g in GROUPS if f"show_{g}" not in form))  # fmt: skip
    if prefs.popup and len(prefs.muted) == len(GROUPS):
        return _settings(request, lang, who, prefs, error="settings_no_kind", status=422)
    live.save_prefs(session, who.user, prefs, now)
    return _settings(request, lang, who, prefs, saved=True)
