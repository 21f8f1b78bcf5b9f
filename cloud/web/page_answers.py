"""Errors on a page's address answered as a page, in the layout of the app the address is in:
a query parameter a console, field or merchant page cannot take (`?offset=abc`, `?site=0`, a
name the page does not know) is said in words — which parameter, what it should be, a link to
the page without it — with status 422, where the API answers its JSON; a form sent to a page
address it cannot take (`/field/faults/abc/status`: only path parameters are FastAPI's to check,
the form's fields are read by the pages themselves) gets the same page, its link to the app's
start page; and a `PageError` on a console address is shown in the console's frame (its menu,
when someone is logged in).

`cloud.app` asks `answers_with_page` first and hands the error here; every other address keeps
the API's JSON answer, and so does the field app's offline queue (it sends JSON or a photo).
Pydantic's error types become catalogue words (`PROBLEMS`), never its English.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from cloud.people.auth import READ_ALL, Principal
from cloud.web import console, i18n, sessions
from cloud.web.render import page

PREFIXES = ("/console", "/field", "/m/", "/m?")  # the apps of pages; `/m` alone too
READING = frozenset({"GET", "HEAD"})
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")  # what a browser's form sends
# pydantic's error type → the catalogue's words for what the value should be.
PROBLEMS = {
    "int_parsing": "qp_integer",
    "int_from_float": "qp_integer",
    "greater_than_equal": "qp_range",
    "greater_than": "qp_range",
    "less_than_equal": "qp_range",
    "less_than": "qp_range",
    "string_pattern_mismatch": "qp_choice",
    "literal_error": "qp_choice",
    "enum": "qp_choice",
    "string_too_long": "qp_too_long",
    "date_parsing": "qp_date",
    "date_from_datetime_parsing": "qp_date",
    "datetime_parsing": "qp_date",
    "missing": "qp_missing",
    "unknown": "qp_unknown",  # a name the page does not take (`cloud.api.guards`)
}


def is_page(request: Request) -> bool:
    path = request.url.path
    return path == "/m" or path.startswith(PREFIXES)


def answers_with_page(request: Request) -> bool:
    """A malformed request answered with a page: a page's address, read or sent a browser's
    form (the field app's offline queue sends JSON or a photo's bytes, and reads JSON back)."""
    sent = request.headers.get("content-type", "")
    return is_page(request) and (request.method in READING or sent.startswith(FORMS))


@dataclass(frozen=True, slots=True)
class WrongParameter:
    name: str
    problem: str  # catalogue key


def wrong_parameters(errors: Iterable[dict[str, Any]]) -> list[WrongParameter]:
    """The query parameters of a validation error's list (a form's or a path's are not ours
    to name: they are said as the page's address)."""
    found: dict[str, WrongParameter] = {}
    for error in errors:
        where = tuple(error.get("loc", ()))
        name = str(where[1]) if len(where) > 1 and where[0] == "query" else "address"
        found.setdefault(name, WrongParameter(name, PROBLEMS.get(error.get("type", ""), "qp_bad")))
    return list(found.values())


def _lang(request: Request, wrong: Sequence[str] = ()) -> tuple[str, bool]:
    asked = None if "lang" in wrong else request.query_params.get("lang")
    return i18n.choose(request, asked)


def _who(request: Request) -> Principal | None:
    """The staff member logged in, or None (no session, a merchant's, the database down)."""
    if sessions.COOKIE not in request.cookies:
        return None
    session = request.app.state.sessions()
    try:
        who = sessions.principal(request, session, request.app.state.now())
    except sessions.NoSession:
        return None
    finally:
        session.rollback()
        session.close()
    return who if who.role in READ_ALL else None


async def _frame(request: Request) -> dict[str, Any]:
    """The console frame's context: its menu and logout when a staff member is logged in."""
    who = await run_in_threadpool(_who, request)
    return console.frame(request, who) if who is not None else {}


def _template(path: str, name: str) -> str:
    if path.startswith("/console"):
        return f"console/{name}.html"
    if path.startswith("/field"):
        return f"field/{name}.html"
    return f"{name}.html"


def _app_home(path: str) -> str:
    return next((f"{app}/" for app in ("/console", "/field") if path.startswith(app)), "/m/")


def _again(request: Request, names: set[str]) -> str:
    """The link to try again: the page without its wrong parameters; after a form, the app's
    start page (the form's address answers no GET)."""
    if request.method not in READING:
        return _app_home(request.url.path)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in names]
    return request.url.path + (f"?{urlencode(kept)}" if kept else "")


async def bad_query(request: Request, errors: Iterable[dict[str, Any]]) -> Response:
    """422: the page, saying which parameters are wrong, with a link to it without them."""
    wrong = wrong_parameters(errors)
    names = {w.name for w in wrong}
    again = _again(request, names)
    lang = _lang(request, list(names))
    context = await _frame(request) if request.url.path.startswith("/console") else {}
    return page(request, _template(request.url.path, "bad_query"), lang, status=422,
                wrong=wrong, again=again, **context)  # fmt: skip


async def unknown_query(request: Request, names: Sequence[str]) -> Response:
    return await bad_query(request, [{"loc": ("query", name), "type": "unknown"} for name in names])


async def page_error(request: Request, key: str, status: int) -> Response:
    """A `PageError`'s message: in the console's frame on a console address, the field app's
    on a field one, the merchant's page's elsewhere."""
    path = request.url.path
    context = await _frame(request) if path.startswith("/console") else {}
    return page(request, _template(path, "error"), _lang(request), status=status, message=key,
                login=False, **context)  # fmt: skip
