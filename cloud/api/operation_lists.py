"""Listing the money operations (corrections, refunds, swaps, moves, receipts): the filters
and sorts they share, as one query dependency.

    GET /refunds?from=2026-11-01T00:00:00%2B08:00&to=…&account=A0001&shop=S101
                &operator=op-li&method=cash&status=paid&sort=-time

`from`/`to` bound the operation's time (`from` inclusive, `to` exclusive); a filter a kind of
operation has no column for (a move has no method) is refused, 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query
from pydantic import Field, StrictStr
from sqlalchemy import Select, or_

from cloud.api.common import Instant, utc
from cloud.errors import Invalid
from ledger.signed import REFERENCE_PATTERN

Sort = Literal["time", "-time", "fen", "-fen"]
REF = f"^{REFERENCE_PATTERN}$"  # an operation reference, whole (`ledger.signed`)
Text = Annotated[StrictStr, Field(pattern=REF)]
Reference = Text
ReferencePath = Annotated[str, Path(pattern=REF)]


@dataclass(frozen=True, slots=True)
class Filters:
    time_from: Instant | None
    time_to: Instant | None
    account: str | None
    shop: str | None
    operator: str | None
    method: str | None
    status: str | None
    sort: Sort


def _filters(
    *,
    time_from: Annotated[Instant | None, Query(alias="from")] = None,
    time_to: Annotated[Instant | None, Query(alias="to")] = None,
    account: Annotated[Text | None, Query()] = None,
    shop: Annotated[Text | None, Query()] = None,
    operator: Annotated[Text | None, Query()] = None,
    method: Annotated[Text | None, Query()] = None,
    status: Annotated[Text | None, Query()] = None,
    sort: Annotated[Sort, Query(description="time or fen, '-' for descending")] = "time",
) -> Filters:
    return Filters(_utc(time_from, "from"), _utc(time_to, "to"), account, shop, operator,
                   method, status, sort)  # fmt: skip


def _utc(value: Instant | None, name: str) -> Instant | None:
    try:
        return None if value is None else utc(value)
    except OverflowError:
        raise Invalid(f"{name} {value} is out of range") from None


ListFilters = Annotated[Filters, Depends(_filters)]


def apply(
    query: Select[Any], model: Any, filters: Filters, *, time: Any, key: Any, **columns: Any
) -> Select[Any]:
    """`query` of `model` filtered and sorted (by `time` or `fen`, then `key`); `columns`
    names a filter's column(s) where the model's own name differs (a tuple: any of them)."""
    if filters.time_from is not None:
        query = query.where(time >= filters.time_from)
    if filters.time_to is not None:
        query = query.where(time < filters.time_to)
    for name in ("account", "shop", "operator", "method", "status"):
        value = getattr(filters, name)
        if value is None:
            continue
        column = columns.get(name, getattr(model, name, None))
        if column is None:
            raise Invalid(f"{model.__tablename__} cannot be filtered by {name}")
        if isinstance(column, tuple):
            query = query.where(or_(*(c == value for c in column)))
        else:
            query = query.where(column == value)
    by = time
    if filters.sort.endswith("fen"):
        by = getattr(model, "fen", None)
        if by is None:
            raise Invalid(f"{model.__tablename__} cannot be sorted by fen")
    descending = filters.sort.startswith("-")
    return query.order_by(by.desc() if descending else by, key.desc() if descending else key)
