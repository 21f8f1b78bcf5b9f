"""The cloud's HTTP API (FastAPI): `create_app(engine, key)` wires the routers of `cloud/api/`
to a database and the cloud's signing key. OpenAPI documentation is served at `/docs`.

Every request gets one SQLAlchemy session, committed when the endpoint returns and rolled back
when it raises. Our errors become HTTP statuses here, in one place:

| error                                                     | status | `error`            |
|-----------------------------------------------------------|--------|--------------------|
| a malformed body or query (pydantic)                      | 422    | `invalid`, naming the field |
| an unknown query parameter, JSON we refuse (`api.guards`) | 422    | `invalid`          |
| `Invalid`, a ledger `InvalidValue`                        | 422    | `invalid`          |
| `NotFound`, an unknown path                               | 404    | `not_found`        |
| a method the path does not take                           | 405    | `method_not_allowed` |
| `Conflict`, `Quarantined`, a duplicate                    | 409    | `conflict`, `quarantined` |
| a body over `guards.MAX_BODY`                             | 413    | `too_large`        |
| a value the database cannot hold (NUL)                    | 422    | `invalid`          |
| the database unreachable                                  | 503    | `unavailable`      |
| a payment provider unreachable or unverifiable            | 502    | `provider_unavailable` |
| no valid token (`Unauthorized`)                           | 401    | `unauthorized`     |
| a role (or merchant) not allowed                          | 403    | `forbidden`        |
| logins throttled from one address                         | 429    | `too_many_attempts` |
| anything else (a bug)                                     | 500    | `internal` (logged) |

Every answer that is not a success has one shape, `{"error": code, "detail": text}` (`ErrorOut`,
so documented in OpenAPI for every operation, FastAPI's validation lists included).

Every endpoint but `/health`, `/auth/login` and `/provision` (a claim token is its permission)
needs a bearer token (`POST /auth/login`) and states the roles it admits with
`cloud.api.auth.allow` (the role table is in `cloud.people.auth`); every change is in the
hash-chained operator log (`/operator-log`). `/metrics`, served only when `[metrics]` configures
it, takes a token of its own (`cloud.metrics.endpoint`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from cloud.api import (
    accounts,
    alarms,
    auth,
    claims,
    commands,
    commissioning,
    concentrators,
    corrections,
    faults,
    guards,
    health,
    ledger,
    meter_swaps,
    meters,
    moves,
    notices,
    oplog,
    payment_refunds,
    payments,
    receipts,
    recharges,
    reconciliations,
    refunds,
    registry,
    relays,
    reports,
    site_config,
    takeovers,
    updates,
    users,
)
from cloud.api.common import ERROR_SCHEMA, answers
from cloud.api.transport import TransportSecurity
from cloud.config import APPROVE_ABOVE_FEN, SILENT_AFTER_MIN
from cloud.db.engine import session_factory
from cloud.errors import (
    CloudError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ProviderUnavailable,
    Quarantined,
    TooManyAttempts,
    Unauthorized,
)
from cloud.ingest.claims import Enrolment
from cloud.metrics import endpoint as metrics_endpoint
from cloud.metrics.endpoint import MetricsEndpoint
from cloud.payments.providers import Providers
from cloud.web import (
    console,
    console_alarms,
    console_batches,
    console_dashboard,
    console_desk,
    console_people,
    console_registry,
    console_reports,
    console_swaps,
    console_takeovers,
    docs,
    field,
    field_desk,
    field_photos,
    page_answers,
    phone,
    static,
    wechat_login,
)
from cloud.web import errors as web_errors
from cloud.web.wechat_login import WechatOAuth
from ledger.chain import NodeKey
from ledger.errors import DecodeError, InvalidValue

log = logging.getLogger(__name__)

VERSION = "0.1.0"
DESCRIPTION = """\
Operator API of the Voltbook cloud: concentrators and their ledgers, accounts with live
balances, meters and readings, recharges, relay commands and alarms.

Amounts are integers: energy in Wh, money in fen (0.01 CNY). Times are ISO 8601 with an offset.

Log in with `POST /auth/login` and send the token as `Authorization: Bearer <token>`. Roles:
admin, operator, finance, auditor (read-only), installer, merchant (its own account only).
"""

ROUTERS = (
    auth,
    claims,
    commissioning,
    users,
    oplog,
    concentrators,
    takeovers,  # /concentrators/{old}/takeover: a dead box replaced
    accounts,
    meters,
    ledger,
    recharges,
    payments,
    corrections,
    refunds,
    meter_swaps,
    moves,
    receipts,
    relays,
    commands,
    alarms,
    faults,
    notices,
    registry,
    site_config,
    reports,
    payment_refunds,
    reconciliations,
    updates,
    health,
    phone,  # the merchant's phone page, /m/ (cloud.web)
    wechat_login,  # its WeChat login, /m/wechat/ (answers "not available" unless configured)
    static,  # the pages' CSS, font and scripts, /static/
    console,  # the operator console, /console/ (cloud.web)
    console_batches,  # its batch control, /console/batches
    console_dashboard,  # its dashboard
    console_people,  # its users and the operator log
    console_alarms,  # its live feed, alarms screen and pop-up preferences
    console_registry,  # its registry and rules, /console/registry/
    console_desk,  # its money desk: a shop's page, recharge, receipts, corrections, refunds
    console_swaps,  # its meter swaps and IR handheld import
    console_takeovers,  # its takeovers: a dead box replaced, asked for and approved
    console_reports,  # its reports and the monthly subsidy view, /console/reports
    field,  # the field technician's offline app, /field/ (cloud.web)
    field_desk,  # its cash taken on site and meter swaps, /field/recharges, /field/swaps
    field_photos,  # its photos of a fault ticket, /field/faults/{id}/photos
    docs,  # Swagger UI at /docs, its files from /static/vendor/
)

# Matched in order, so a subclass must come before its base (`Refused` is an `Invalid`).
STATUS_OF: tuple[tuple[type[Exception], int, str], ...] = (
    (Unauthorized, status.HTTP_401_UNAUTHORIZED, "unauthorized"),
    (Forbidden, status.HTTP_403_FORBIDDEN, "forbidden"),
    (TooManyAttempts, status.HTTP_429_TOO_MANY_REQUESTS, "too_many_attempts"),
    (NotFound, status.HTTP_404_NOT_FOUND, "not_found"),
    (Quarantined, status.HTTP_409_CONFLICT, "quarantined"),
    (Conflict, status.HTTP_409_CONFLICT, "conflict"),
    (Invalid, status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid"),
    (InvalidValue, status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid"),
    (DecodeError, status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid"),
    (ProviderUnavailable, status.HTTP_502_BAD_GATEWAY, "provider_unavailable"),
    (CloudError, status.HTTP_400_BAD_REQUEST, "refused"),
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    engine: Engine,
    key: NodeKey,
    now: Callable[[], dt.datetime] = utc_now,
    *,
    broker_connected: Callable[[], bool] | None = None,
    approve_above_fen: int = APPROVE_ABOVE_FEN,
    trusted_proxies: Iterable[str] = (),
    oplog_heads: Path | None = None,
    wechat_oauth: WechatOAuth | None = None,
    providers: Providers | None = None,
    enrolment: Enrolment | None = None,
    update_bundles: Path | None = None,
    tls_proxy: bool = False,
    retired_keys: Iterable[Ed25519PublicKey] = (),
    metrics: MetricsEndpoint | None = None,
    silent_after: dt.timedelta = dt.timedelta(minutes=SILENT_AFTER_MIN),
) -> FastAPI:
    """The API over `engine` (already migrated), signing commands with the cloud's `key`.

    `now` is the clock (tests pass a fixed one); `broker_connected`, when the server knows it,
    tells `/health` whether ingest is connected to the broker; `approve_above_fen`, the
    correction above which a second user approves (`[operations]` of cloud.toml);
    `trusted_proxies` are the addresses (or networks) whose `X-Forwarded-For` names the client
    (`cloud.api.guards`); `oplog_heads` is the file of signed operator-log heads
    `/operator-log/verify` holds the log to (`cloud.people.oplog_heads`); `providers`, the
    payment providers `[payments]` configures (None: online payments are not offered);
    `wechat_oauth`, the Official Account whose web OAuth logs merchants in on the phone page
    (none: password only); `enrolment`, the CA and broker address `POST /provision` hands a
    claimed box (None: provisioning answers 409); `tls_proxy`, whether a trusted proxy's
    `X-Forwarded-Proto: https` is believed (`cloud.api.transport`: HSTS, Secure cookies);
    `retired_keys`, the cloud's public keys before a rotation (`cloud.keys.switch`), which
    still verify the operator log's heads they signed; `metrics`, the token (and restore-drill
    status file) of `GET /metrics` (`cloud.metrics.endpoint`; None: no such route);
    `silent_after`, how long a node whose status says online may send nothing before the console
    and the metrics count it off line (`cloud.db.presence`, `[ingest] silent_after_min`).
    """
    app = FastAPI(
        title="Voltbook cloud",
        version=VERSION,
        description=DESCRIPTION,
        responses=answers(
            e413=f"the body is larger than {guards.MAX_BODY} bytes",
            e422="a malformed body or query: `detail` names the field",
            e500="a fault of the server (logged)",
            e503="the database is unavailable",
        ),
        dependencies=[Depends(guards.no_unknown_query)],
        docs_url=None,  # our own /docs (cloud.web.docs): Swagger UI from /static, no CDN
        redoc_url=None,
    )
    app.state.trusted_proxies = guards.networks(trusted_proxies)
    app.state.oplog_heads = oplog_heads
    app.state.declared_query = {}  # `guards.no_unknown_query`
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.key = key
    app.state.retired_keys = tuple(retired_keys)
    app.state.now = now
    app.state.silent_after = silent_after
    app.state.broker_connected = broker_connected
    app.state.approve_above_fen = approve_above_fen
    app.state.wechat_oauth = wechat_oauth
    app.state.providers = providers
    app.state.enrolment = enrolment
    app.state.update_bundles = update_bundles  # `[updates] bundles`: GET /updates/bundles/…
    for module in ROUTERS:
        app.include_router(module.router)
    for error in (CloudError, InvalidValue, DecodeError):
        app.add_exception_handler(error, _domain_error)
    for page_error, handler in web_errors.EXCEPTION_HANDLERS:  # pages answer with pages
        app.add_exception_handler(page_error, handler)
    app.add_exception_handler(IntegrityError, _duplicate)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(RequestValidationError, _malformed)
    app.add_exception_handler(guards.UnknownQuery, _unknown_query)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)
    app.add_middleware(guards.BodyGuard, refuse=_answer)
    if metrics is not None:  # after the guard: its middleware times the guard's refusals too
        metrics_endpoint.install(app, engine, now, metrics, silent_after)
    app.add_middleware(
        TransportSecurity, app.state.trusted_proxies, tls_proxy=tls_proxy
    )  # outermost: the scheme is settled before anything else sees the request
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with its validation lists (422) replaced by the one error shape."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)  # FastAPI's own, which it caches in `openapi_schema`
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                refusal = operation.setdefault("responses", {}).setdefault("422", {})
                refusal["description"] = refusal.get("description") or "Unprocessable"
                refusal["content"] = {"application/json": {"schema": ERROR_SCHEMA}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _answer(code: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=code, content={"error": kind, "detail": detail})


MAX_ERRORS_SHOWN = 5
HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}


def _where(location: Iterable[object]) -> str:
    return ".".join(str(part) for part in location) or "the request"


async def _malformed(request: Request, exc: Exception) -> Response:
    # FastAPI's list, as one sentence: where and what, never the value sent (it may not even
    # be encodable back). A page's address is answered with a page.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if page_answers.answers_with_page(request):
        return await page_answers.bad_query(request, errors)
    parts = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors]
    more = len(parts) - MAX_ERRORS_SHOWN
    detail = "; ".join(parts[:MAX_ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
    return _answer(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid", detail or "malformed")


async def _unknown_query(request: Request, exc: Exception) -> Response:
    if isinstance(exc, guards.UnknownQuery) and page_answers.is_page(request):
        return await page_answers.unknown_query(request, exc.names)
    return await _domain_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = str(exc.detail) if isinstance(exc, HTTPException) else ""
    answer = _answer(code, HTTP_ERRORS.get(code, "refused"), detail or "refused")
    answer.headers.update(getattr(exc, "headers", None) or {})
    return answer


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: unexpected error", request.method, request.url.path, exc_info=exc)
    return _answer(
        status.HTTP_500_INTERNAL_SERVER_ERROR, "internal", "a fault of the server (logged)"
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    for error, code, kind in STATUS_OF:
        if isinstance(exc, error):
            answer = _answer(code, kind, str(exc))
            if code == status.HTTP_401_UNAUTHORIZED:
                answer.headers["WWW-Authenticate"] = "Bearer"
            return answer
    raise exc  # not reached: the handler is only registered for the classes above


async def _duplicate(request: Request, exc: Exception) -> JSONResponse:
    # Two requests racing to create the same thing (a payment id, a node): the loser's insert
    # hits the unique constraint. Nothing of it was stored (the session rolled back).
    log.info("%s %s: %s", request.method, request.url.path, exc)
    return _answer(status.HTTP_409_CONFLICT, "conflict", "it exists already (a concurrent request)")


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL refuses some values SQLite takes (a NUL character in a text): bad input.
    log.info("%s %s: %s", request.method, request.url.path, exc)
    return _answer(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "invalid",
        "a value cannot be stored (a NUL character, or a number out of range)",
    )


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: database error", request.method, request.url.path, exc_info=exc)
    return _answer(
        status.HTTP_503_SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable"
    )
