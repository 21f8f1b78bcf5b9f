"""What the routers of the money operations (corrections, refunds, meter swaps, moves) share:
the list and get routes of an operation's table, and the answer to a POST that books or changes
one. Each router keeps only what is particular to it: its bodies, its answers' fields, and the
call into `cloud.operations`.

    add_reads(router, Correction, CorrectionOut, STAFF, param="correction", noun="correction")

adds, with the names, summaries and OpenAPI the hand-written routes had,

    GET ""              list_corrections  Page[CorrectionOut], ListFilters, limit, offset
    GET "/{correction}" get_correction    CorrectionOut, 404 "no correction 'c-1'"

and `add_create` the POST that books one: 201 with the operation, 200 with the first one when
the same request (or reference) comes again; its receipt and operator-log row (`answer`).
`add_change` adds a POST that changes one (`POST "/{refund}/pay"`, `pay_refund`), and
`add_decisions` a held operation's (`cloud.operations.four_eyes`) two:

    POST "/{correction}/approve"  approve_correction  403 the asker, 404, 409 not held
    POST "/{correction}/reject"   reject_correction

This module does not use `from __future__ import annotations`: FastAPI reads the routes'
parameters from their signatures, and the readers' roles are only known when a router calls in.
"""

import datetime as dt
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.auth import allow
from cloud.api.common import CloudKey, DbSession, Limit, Now, Offset, Page, answers, page
from cloud.api.operation_lists import ListFilters, ReferencePath, apply
from cloud.errors import NotFound
from cloud.operations import records
from cloud.operations.receipts import Voucher
from cloud.people.auth import Principal, Role
from ledger.chain import NodeKey

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
        row=row,
        after=lambda _receipt: out.model_validate(row).model_dump(mode="json"),
    )  # fmt: skip
    if response is not None and not created:
        response.status_code = status.HTTP_200_OK
    return out.model_validate(row)


def _sign(endpoint: Callable[..., Any], out: type[BaseModel], /, **parameters: Any) -> None:
    """Give `endpoint` the signature FastAPI reads its parameters from: `parameters` (name →
    annotation, in this order), answered as `out`. The routes are built at run time, so their
    path parameter's name and their roles cannot stand in a written signature."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, keyword, annotation=a) for name, a in parameters.items()],
        return_annotation=out,
    )


Book = Callable[[Any, Principal, Session, NodeKey, dt.datetime], tuple[Any, bool]]


def add_create(
    router: APIRouter,
    name: str,
    body: type[BaseModel],
    out: type[BaseModel],
    writers: Sequence[Role],
    *,
    summary: str,
    again: str,
    refusals: Mapping[int | str, Any],
    book: Book,
    action: str,
    target: Callable[[Any], str],
    voucher: Callable[[Any], Voucher | None] | None = None,
) -> None:
    """Add `POST ""` (`name`, 201) that books an operation: `book(body, who, session, key, now)`
    gives `(row, created)`; `again` describes the 200 of a repeat, `refusals` the errors. The
    operator log records `action` on `target(row)`; `voucher(row)` is its receipt, if any."""

    def create(
        *, body: Any, who: Principal, response: Response, session: Session, key: NodeKey,
        now: dt.datetime,
    ) -> BaseModel:  # fmt: skip
        row, created = book(body, who, session, key, now)
        return answer(out, row, created, who=who, session=session, now=now, action=action,
                      target=target(row), voucher=None if voucher is None else voucher(row),
                      response=response)  # fmt: skip

    _sign(create, out, body=body, who=Annotated[Principal, allow(*writers)], response=Response,
          session=DbSession, key=CloudKey, now=Now)  # fmt: skip
    router.add_api_route(
        "", create, methods=["POST"], name=name, response_model=out,
        status_code=status.HTTP_201_CREATED, summary=summary,
        responses={200: {"description": again}, **refusals},
    )  # fmt: skip


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
        who: reader,
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

    _sign(get_row, out, **{param: ReferencePath}, who=reader, session=DbSession)
    router.add_api_route(
        "", list_rows, methods=["GET"], name=f"list_{param}s", response_model=Page[out],  # type: ignore[valid-type]
        summary=list_summary or f"List {noun}s",
    )  # fmt: skip
    router.add_api_route(
        f"/{{{param}}}", get_row, methods=["GET"], name=f"get_{param}", response_model=out,
        summary=f"One {noun}", responses=answers(e404=f"no such {param}"),
    )  # fmt: skip


Change = Callable[[Session, str, Principal, NodeKey, dt.datetime], tuple[Any, bool]]


def add_change(
    router: APIRouter,
    verb: str,
    out: type[BaseModel],
    writers: Sequence[Role],
    *,
    param: str,
    summary: str,
    refusals: Mapping[int | str, Any],
    change: Change,
    action: str,
    target: Callable[[Any], str],
    voucher: Callable[[Any], Voucher | None] | None = None,
) -> None:
    """Add `POST "/{param}/{verb}"` (`{verb}_{param}`) that changes one operation, for the roles
    `writers`: `change(session, ref, who, key, now)` gives `(row, changed)`, answered as `out`;
    `refusals` are its errors. The operator log records `action` on `target(row)` when it
    changed; `voucher(row)` is its receipt, if any."""

    def change_row(
        who: Principal, session: Session, key: NodeKey, now: dt.datetime, **path: str
    ) -> BaseModel:
        row, changed = change(session, path[param], who, key, now)
        receipt = None if voucher is None else voucher(row)
        return answer(out, row, changed, who=who, session=session, now=now, action=action,
                      target=target(row), voucher=receipt)  # fmt: skip

    _sign(change_row, out, **{param: ReferencePath}, who=Annotated[Principal, allow(*writers)],
          session=DbSession, key=CloudKey, now=Now)  # fmt: skip
    router.add_api_route(
        f"/{{{param}}}/{verb}", change_row, methods=["POST"], name=f"{verb}_{param}",
        response_model=out, summary=summary, responses=dict(refusals),
    )  # fmt: skip


class Approve(Protocol):
    def __call__(
        self, session: Session, ref: str, /, *, approver: str, key: NodeKey, now: dt.datetime
    ) -> tuple[Any, bool]: ...


class Reject(Protocol):
    def __call__(
        self, session: Session, ref: str, /, *, approver: str, now: dt.datetime
    ) -> tuple[Any, bool]: ...


def add_decisions(
    router: APIRouter,
    out: type[BaseModel],
    deciders: Sequence[Role],
    *,
    param: str,
    held: str,
    approve: Approve,
    reject: Reject,
    action: str,
    target: Callable[[Any], str],
    voucher: Callable[[Any], Voucher | None],
    approve_as: str = "approve",
) -> None:
    """Add a held operation's two decisions (`add_change`) for the roles `deciders`:
    `POST "/{param}/approve"` (`approve_{param}`, `approve(session, ref, approver=, key=,
    now=)`, "{approve_as} {held}", its receipt `voucher(row)`) and `POST "/{param}/reject"`
    (`reject_{param}`, `reject(session, ref, approver=, now=)`, "Reject {held}"); the operator
    log records `{action}.approve` / `{action}.reject` on `target(row)`."""
    refusals = answers(e403="the user who asked for it", e404=f"no such {param}",
                       e409="not held")  # fmt: skip
    add_change(
        router, "approve", out, deciders, param=param,
        summary=f"{approve_as.capitalize()} {held}", refusals=refusals,
        change=lambda session, ref, who, key, now: approve(
            session, ref, approver=who.user, key=key, now=now
        ),
        action=f"{action}.approve", target=target, voucher=voucher,
    )  # fmt: skip
    # (a rejection issues nothing: it is handed the cloud's key like every change, and drops it)
    add_change(
        router, "reject", out, deciders, param=param, summary=f"Reject {held}",
        refusals=refusals,
        change=lambda session, ref, who, key, now: reject(
            session, ref, approver=who.user, now=now
        ),
        action=f"{action}.reject", target=target,
    )  # fmt: skip
