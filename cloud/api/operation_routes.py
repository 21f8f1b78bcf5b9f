"""What the routers of the money operations (corrections, refunds, meter swaps, moves) share:
the list and get routes of an operation's table, and the answer to a POST that books or changes
one. Each router keeps only what is particular to it: its bodies, its answers' fields, and the
call into `cloud.operations`.

    add_reads(router, Correction, CorrectionOut, STAFF, param="correction", noun="correction")

adds, with the names, summaries and OpenAPI the hand-written routes had,

    GET ""              list_corrections  Page[CorrectionOut], ListFilters, limit, offset
    GET "/{correction}" get_correction    CorrectionOut, 404 "no correction 'c-1'"

This module does not use `from __future__ import annotations`: FastAPI reads the routes'
parameters from their signatures, and the readers' roles are only known when a router calls in.
"""

import datetime as dt
import inspect
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import DbSession, Limit, Offset, Page, answers, page
from cloud.api.operation_lists import ListFilters, ReferencePath, apply
from cloud.errors import NotFound
from cloud.operations import records
from cloud.operations.receipts import Voucher
from cloud.people.auth import Principal, Role

AnswerT = TypeVar("AnswerT", bound=BaseModel)


def answer(
    out: type[AnswerT],
    row: Any,
    created: bool,
    *,
    who: Principal,
    session: Session,
    now: dt.datetime,
    action: str,
    target: str,
    voucher: Voucher | None = None,
    response: Response | None = None,
) -> AnswerT:
    """The answer to a POST on an operation: `row` as `out`, after its receipt (`voucher`) and,
    when this request `created` (or changed) it, the operator-log row. Given the `response` of
    a create (201), the same request again answers 200 with the operation already booked."""
    records.record(
        session, who.actor, action, target, now, new=created, voucher=voucher,
        row=row if voucher is not None else None,
        after=lambda _receipt: out.model_validate(row).model_dump(mode="json"),
    )  # fmt: skip
    if response is not None and not created:
        response.status_code = status.HTTP_200_OK
    return out.model_validate(row)


def add_reads(
    router: APIRouter,
    model: Any,
    out: type[BaseModel],
    readers: Sequence[Role],
    *,
    param: str,
    noun: str,
    list_summary: str | None = None,
    **columns: Any,
) -> None:
    """Add `GET ""` (`list_{param}s`, filtered by `ListFilters`, `columns` as in `apply`) and
    `GET "/{param}"` (`get_{param}`, 404 "no {noun} …") over `model` (keyed by `id`, timed by
    `created`), answered as `out`, for the roles `readers`."""
    reader = Annotated[Principal, allow(*readers)]

    def convert(rows: Sequence[Any]) -> list[BaseModel]:
        return [out.model_validate(r) for r in rows]

    def list_rows(
        who: reader,  # type: ignore[valid-type]
        session: DbSession,
        filters: ListFilters,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, object]:
        query = apply(select(model), model, filters, time=model.created, key=model.id, **columns)
        return page(session, query, limit, offset, convert)

    def get_row(who: Principal, session: Session, **path: str) -> BaseModel:
        reference = path[param]
        row = session.get(model, reference)
        if row is None:
            raise NotFound(f"no {noun} {reference!r}")
        return out.model_validate(row)

    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    get_row.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(param, keyword, annotation=ReferencePath),
            inspect.Parameter("who", keyword, annotation=reader),
            inspect.Parameter("session", keyword, annotation=DbSession),
        ],
        return_annotation=out,
    )
    router.add_api_route(
        "", list_rows, methods=["GET"], name=f"list_{param}s", response_model=Page[out],
        summary=list_summary or f"List {noun}s",
    )  # fmt: skip
    router.add_api_route(
        f"/{{{param}}}", get_row, methods=["GET"], name=f"get_{param}", response_model=out,
        summary=f"One {noun}", responses=answers(e404=f"no such {param}"),
    )  # fmt: skip
