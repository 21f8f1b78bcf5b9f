"""The cloud's HTTP API (FastAPI): `create_app(engine, key)` wires the routers of `cloud/api/`
to a database and the cloud's signing key. OpenAPI documentation is served at `/docs`.

Every request gets one SQLAlchemy session, committed when the endpoint returns and rolled back
when it raises. Our errors become HTTP statuses here, in one place:

| error                                   | status |
|-----------------------------------------|--------|
| a malformed body or query (pydantic)    | 422, naming the field |
| `Invalid`, a ledger `InvalidValue`      | 422    |
| `NotFound`                              | 404    |
| `Conflict`, `Quarantined`, a duplicate  | 409    |
| a value the database cannot hold (NUL)  | 422    |
| the database unreachable                | 503    |
| no valid token (`Unauthorized`)         | 401    |
| a role (or merchant) not allowed        | 403    |
| logins throttled, or the user locked    | 429    |

Every endpoint but `/health` and `/auth/login` needs a bearer token (`POST /auth/login`) and
states the roles it admits with `cloud.api.auth.allow` (the role table is in `cloud.people.auth`);
every change is in the hash-chained operator log (`/operator-log`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from cloud.api import (
    accounts,
    alarms,
    auth,
    commands,
    concentrators,
    corrections,
    health,
    ledger,
    meter_swaps,
    meters,
    moves,
    oplog,
    receipts,
    recharges,
    refunds,
    registry,
    relays,
    reports,
    site_config,
    users,
)
from cloud.api.common import answers
from cloud.config import APPROVE_ABOVE_FEN
from cloud.db.engine import session_factory
from cloud.errors import (
    CloudError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Quarantined,
    TooManyAttempts,
    Unauthorized,
)
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
    users,
    oplog,
    concentrators,
    accounts,
    meters,
    ledger,
    recharges,
    corrections,
    refunds,
    meter_swaps,
    moves,
    receipts,
    relays,
    commands,
    alarms,
    registry,
    site_config,
    reports,
    health,
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
) -> FastAPI:
    """The API over `engine` (already migrated), signing commands with the cloud's `key`.

    `now` is the clock (tests pass a fixed one); `broker_connected`, when the server knows it,
    tells `/health` whether ingest is connected to the broker; `approve_above_fen`, the
    correction above which a second user approves (`[operations]` of cloud.toml).
    """
    app = FastAPI(
        title="Voltbook cloud",
        version=VERSION,
        description=DESCRIPTION,
        responses=answers(e503="the database is unavailable"),
    )
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.key = key
    app.state.now = now
    app.state.broker_connected = broker_connected
    app.state.approve_above_fen = approve_above_fen
    for module in ROUTERS:
        app.include_router(module.router)
    for error in (CloudError, InvalidValue, DecodeError):
        app.add_exception_handler(error, _domain_error)
    app.add_exception_handler(IntegrityError, _duplicate)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OperationalError, _database_down)
    return app


def _answer(code: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=code, content={"error": kind, "detail": detail})


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
