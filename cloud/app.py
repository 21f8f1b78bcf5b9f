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
| the database unreachable                | 503    |

No roles or authentication yet: the API trusts whoever reaches it, so it listens on 127.0.0.1
by default. Roles (admin, operator, finance, auditor, installer, merchant) and the operator log
arrive with the security issue (DESIGN §7).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from cloud.api import (
    accounts,
    alarms,
    commands,
    concentrators,
    health,
    ledger,
    meters,
    recharges,
    relays,
)
from cloud.api.common import answers
from cloud.db.engine import session_factory
from cloud.errors import CloudError, Conflict, Invalid, NotFound, Quarantined
from ledger.chain import NodeKey
from ledger.errors import DecodeError, InvalidValue

log = logging.getLogger(__name__)

VERSION = "0.1.0"
DESCRIPTION = """\
Operator API of the Voltbook cloud: concentrators and their ledgers, accounts with live
balances, meters and readings, recharges, relay commands and alarms.

Amounts are integers: energy in Wh, money in fen (0.01 CNY). Times are ISO 8601 with an offset.

**No authentication yet** — roles and logins arrive in a later issue; keep the API on a
private address until then.
"""

ROUTERS = (concentrators, accounts, meters, ledger, recharges, relays, commands, alarms, health)

# Matched in order, so a subclass must come before its base (`Refused` is an `Invalid`).
STATUS_OF: tuple[tuple[type[Exception], int, str], ...] = (
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
) -> FastAPI:
    """The API over `engine` (already migrated), signing commands with the cloud's `key`.

    `now` is the clock (tests pass a fixed one); `broker_connected`, when the server knows it,
    tells `/health` whether ingest is connected to the broker.
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
    for module in ROUTERS:
        app.include_router(module.router)
    for error in (CloudError, InvalidValue, DecodeError):
        app.add_exception_handler(error, _domain_error)
    app.add_exception_handler(IntegrityError, _duplicate)
    app.add_exception_handler(OperationalError, _database_down)
    return app


def _answer(code: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=code, content={"error": kind, "detail": detail})


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    for error, code, kind in STATUS_OF:
        if isinstance(exc, error):
            return _answer(code, kind, str(exc))
    raise exc  # not reached: the handler is only registered for the classes above


async def _duplicate(request: Request, exc: Exception) -> JSONResponse:
    # Two requests racing to create the same thing (a payment id, a node): the loser's insert
    # hits the unique constraint. Nothing of it was stored (the session rolled back).
    log.info("%s %s: %s", request.method, request.url.path, exc)
    return _answer(status.HTTP_409_CONFLICT, "conflict", "it exists already (a concurrent request)")


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: database error", request.method, request.url.path, exc_info=exc)
    return _answer(
        status.HTTP_503_SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable"
    )
