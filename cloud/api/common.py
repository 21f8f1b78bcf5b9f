"""What every router shares: the per-request database session, the clock and the cloud key,
paging, strict value types, and the conversion of stored times.

Request bodies are strict (`StrictBody`): an amount is a JSON integer — a float, a bool or a
string is refused with 422 naming the field — and unknown members are refused too, so a typo in
a field name never silently becomes a default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from anyio import CancelScope
from fastapi import Depends, Query, Request
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ledger.chain import NodeKey

T = TypeVar("T")

MAX_PAGE = 1000

# Identifiers as the ledger and the wire spell them.
Owner = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,40}$", examples=["A0001"])]
NodeId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", examples=["edge-0001"])]
MeterAddress = Annotated[StrictStr, Field(pattern=r"^[0-9A-Za-z]{1,32}$")]
Operator = Annotated[StrictStr, Field(min_length=1, max_length=64, examples=["op-li"])]


class StrictBody(BaseModel):
    """A request body: no coercion (1.0, true, "5" are not integers), no unknown members."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Out(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    """Every answer that is not a success (`cloud.app`), malformed requests included."""

    error: str = Field(
        description="invalid, not_found, conflict, quarantined, unauthorized, forbidden, "
        "too_many_attempts, too_large, method_not_allowed, unavailable, internal"
    )
    detail: str = Field(description="what is wrong, in a sentence")


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOut"}


def answers(**by_status: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for refusals: `answers(e404="no such node")`."""
    return {
        int(code.removeprefix("e")): {"model": ErrorOut, "description": text}
        for code, text in by_status.items()
    }


class Page(Out, Generic[T]):
    items: list[T]
    total: int = Field(description="rows matching the filters, over all pages")
    limit: int
    offset: int


async def open_session(request: Request) -> AsyncIterator[Session]:
    """One session per request: committed when the endpoint returns, rolled back if it raises.

    Making a session does no I/O, so it is made on the event loop; ending it (the commit or
    rollback, and the connection's return to the pool) waits on the database, so that runs on
    the thread pool, shielded from cancellation like FastAPI's own generator dependencies."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    except BaseException:
        with CancelScope(shield=True):
            await run_in_threadpool(_end, session, commit=False)
        raise
    with CancelScope(shield=True):
        await run_in_threadpool(_end, session, commit=True)


def _end(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# The clock and the key are plain values: `async` keeps them off the thread pool.
async def _clock(request: Request) -> dt.datetime:
    now: Callable[[], dt.datetime] = request.app.state.now
    return now()


def silent_after(request: Request) -> dt.timedelta:
    """How long a node may send nothing and still count on line (`cloud.db.presence`)."""
    limit: dt.timedelta = request.app.state.silent_after
    return limit


async def _heard_since(request: Request) -> dt.datetime:
    """now − silent_after: a node heard from before this counts silent."""
    return await _clock(request) - silent_after(request)


async def _key(request: Request) -> NodeKey:
    key: NodeKey = request.app.state.key
    return key


# `scope="function"`: the commit happens before the response is sent, so a 2xx means stored.
DbSession = Annotated[Session, Depends(open_session, scope="function")]
Now = Annotated[dt.datetime, Depends(_clock)]
HeardSince = Annotated[dt.datetime, Depends(_heard_since)]
CloudKey = Annotated[NodeKey, Depends(_key)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]
MAX_OFFSET = 2**53 - 1  # beyond any table; keeps the value inside every backend's integer
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]


def count(session: Session, query: Select[Any]) -> int:
    """How many rows `query` (filtered, maybe ordered) has over all pages."""
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def page(
    session: Session,
    query: Select[T],
    limit: int,
    offset: int,
    convert: Callable[[Sequence[T]], Sequence[BaseModel]],
) -> dict[str, object]:
    """One page of `query` (already filtered and ordered; one ORM entity per row) with the total
    count of its rows."""
    return row_page(session, query, limit, offset, lambda rows: convert([r[0] for r in rows]))


def row_page(
    session: Session,
    query: Select,  # type: ignore[type-arg]  # any row shape (a TypeVarTuple in SQLAlchemy 2.1)
    limit: int,
    offset: int,
    convert: Callable[[Sequence[Row[Any]]], Sequence[BaseModel]],
) -> dict[str, object]:
    """`page` for a `query` of columns (what the answer needs, not whole ORM objects)."""
    total = count(session, query)
    rows = session.execute(query.limit(limit).offset(offset)).all() if total > offset else []
    return {"items": convert(rows), "total": total, "limit": limit, "offset": offset}


def utc(value: dt.datetime) -> dt.datetime:
    """A time for a query: in UTC, as the database stores it (SQLite keeps no offset)."""
    return value.astimezone(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    """A stored time, with its zone: SQLite returns UTC times without one."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# A time read from the database, always answered with its offset.
StoredTime = Annotated[dt.datetime, AfterValidator(aware)]


# The times and days a caller may name: every zone conversion and day step of them stays inside
# what Python and both databases hold (year 1 and 9999 are a few hours from an OverflowError).
FIRST_TIME = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LAST_TIME = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def _instant(value: dt.datetime) -> dt.datetime:
    try:
        in_range = FIRST_TIME <= value.astimezone(dt.UTC) <= LAST_TIME
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError(f"a time must lie from {FIRST_TIME:%Y} to {LAST_TIME:%Y}")
    return value


def _day(value: dt.date) -> dt.date:
    if not FIRST_TIME.date() <= value <= LAST_TIME.date():
        raise ValueError(f"a day must lie from {FIRST_TIME:%Y} to {LAST_TIME:%Y}")
    return value


# A time given by a caller: ISO 8601 with an offset, within FIRST_TIME..LAST_TIME.
Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
# A day given by a caller, within the same years.
Day = Annotated[dt.date, AfterValidator(_day)]
