"""Errors on pages answered as pages, in the merchant's words and language, never as the
API's JSON: no session → the login form; a staff login → "use the console"; a form without
its CSRF token → "this page has expired, go back"; a `PageError` → its message and status, in
the layout of its app (`cloud.web.page_answers`: the console's frame, the field app's); a
console screen outside the role (`Refused`) → the refusal page in the console's frame.

Registered by `cloud.app.create_app` for these classes only; Starlette picks the handler of
the most specific class, so the API's own errors keep their JSON answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from cloud.web import console, i18n, page_answers, sessions
from cloud.web.page_errors import NotMerchant, NotStaff, PageError, Refused
from cloud.web.render import page


def _lang(request: Request) -> tuple[str, bool]:
    return i18n.choose(request, request.query_params.get("lang"))


async def _no_session(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        login = "/m/login"
        if request.url.path.startswith("/field"):
            login = "/field/login"
        elif request.url.path.startswith("/console"):
            login = "/console/login"
            if sessions.COOKIE in request.cookies:  # there was a session: say it ended
                login += "?expired=1"
        response: Response = RedirectResponse(login, status_code=303)
    else:
        response = page(request, "error.html", _lang(request), status=401,
                        message="session_ended", login=True)  # fmt: skip
    sessions.end(response)  # a stale cookie goes
    return response


async def _not_merchant(request: Request, exc: Exception) -> Response:
    return page(request, "staff.html", _lang(request), status=403, csrf=_csrf(request))


async def _not_staff(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/m/", status_code=303)


def _csrf(request: Request) -> str:
    token = request.cookies.get(sessions.COOKIE, "")
    return sessions.csrf_token(token) if token else ""


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", _lang(request), status=403, message="csrf_refused",
                login=False)  # fmt: skip


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return await page_answers.page_error(request, exc.key, exc.status)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return console.refused_page(request, exc.who)


Handler = Callable[[Request, Exception], Awaitable[Response]]
EXCEPTION_HANDLERS: tuple[tuple[type[Exception], Handler], ...] = (
    (sessions.NoSession, _no_session),
    (NotMerchant, _not_merchant),
    (NotStaff, _not_staff),
    (sessions.CsrfRefused, _csrf_refused),
    (PageError, _page_error),
    (Refused, _refused),
)
