"""The console's meter swaps: the IR handheld import and the swap form, each a client of the
API's own route (`cloud.api.meter_swaps`: the same service call, operator-log row and receipt).

    GET  /console/meter-swaps?meter=…             held and recent swaps, imported IR readings
    POST /console/meter-swaps/ir-import           FIELD       → POST /meter-swaps/ir-import
    POST /console/meter-swaps                     FIELD       → POST /meter-swaps
    POST /console/meter-swaps/{id}/approve|reject OPERATIONS  → POST /meter-swaps/{id}/…

Installers swap meters too (`FIELD`), so this page shows no balance. The handheld's file is read
into the form's text by the browser (`static/desk.js`) or pasted, and sent as the API takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.orm import Session

from cloud.api import meter_swaps as swaps_api
from cloud.api.common import CloudKey, DbSession, Now
from cloud.api.operation_lists import REF
from cloud.people.auth import FIELD, OPERATIONS, Principal
from cloud.registry.values import PROTOCOLS
from cloud.web import desk
from cloud.web.console import Form, Staff, frame
from cloud.web.console_desk import api_route, posted
from cloud.web.desk import Refusal
from cloud.web.forms import read_file_form
from cloud.web.i18n import Lang
from cloud.web.render import page

router = APIRouter(prefix="/console", include_in_schema=False)

MAY = {"swap": FIELD, "ir": FIELD, "decide": OPERATIONS}  # as the API routes' allow(...)
DONE = ("swap_requested", "ir_imported", "approved", "rejected")
Done = Annotated[str, Query(pattern="^(" + "|".join(DONE) + ")?$")]
Meter = Annotated[str, Query(pattern=r"^[0-9A-Za-z]{0,32}$")]
FileForm = Annotated[dict[str, str], Depends(read_file_form)]
REQUEST_SWAP = api_route(swaps_api.router, "request_swap")
APPROVE_SWAP = api_route(swaps_api.router, "approve_swap")
REJECT_SWAP = api_route(swaps_api.router, "reject_swap")


def _page(
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, meter: str = "",
    *, done: str = "", refused: Refusal | None = None, fields: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    kept = fields or {}
    token = kept["token"] if refused and refused.form == "swap" and "token" in kept else None
    other = "en" if lang[0] == "zh" else "zh"
    return page(
        request, "console/desk_swaps.html", lang, status=refused.status if refused else 200,
        **frame(request, who), s=desk.swaps(session, meter), meter=meter, done=done,
        refused=refused, fields=kept, may={f: who.role in r for f, r in MAY.items()},
        token=token or desk.new_token("swap"), protocols=tuple(PROTOCOLS),
        lang_link=f"/console/meter-swaps?meter={meter}&lang={other}",
    )  # fmt: skip


@router.get("/meter-swaps")
def swaps_page(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, meter: Meter = "",
    done: Done = "",
) -> Response:  # fmt: skip
    return _page(request, lang, who, session, meter, done=done)


def _post(  # noqa: PLR0917 (the form's context)
    form: str, request: Request, lang: tuple[str, bool], who: Principal, session: Session,
    fields: dict[str, str], send: Callable[[], str],
) -> Response:  # fmt: skip
    """CSRF and role first; then `send` (the page to go to), or the page again with why not."""
    return posted(form, request, who.role in MAY[form], session, fields, send,
                  lambda refused: _page(request, lang, who, session, _meter(fields),
                                        refused=refused, fields=fields))  # fmt: skip


def _meter(fields: dict[str, str]) -> str:
    """The meter the page was about (the swap's old one, or the import form's), if one."""
    meter = fields.get("old") or fields.get("meter") or ""
    return meter if desk.ADDRESS.fullmatch(meter) else ""


@router.post("/meter-swaps/ir-import")
def ir_import(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: FileForm, session: DbSession, now: Now
) -> Response:  # fmt: skip
    def send() -> str:
        swaps_api.import_ir(body=desk.ir_body(form), who=who, session=session, now=now)
        return f"/console/meter-swaps?meter={_meter(form)}&done=ir_imported"

    return _post("ir", request, lang, who, session, form, send)


@router.post("/meter-swaps")
def request_swap(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now,
) -> Response:  # fmt: skip
    def send() -> str:
        body = desk.swap_body(form)
        REQUEST_SWAP(body=body, who=who, response=Response(), session=session, key=key, now=now)
        return f"/console/meter-swaps?meter={body.old}&done=swap_requested"

    return _post("swap", request, lang, who, session, form, send)


@router.post("/meter-swaps/{ref}/{verb}")
def decide_swap(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, ref: Annotated[str, Path(pattern=REF)], verb: Literal["approve", "reject"],
) -> Response:  # fmt: skip
    def send() -> str:
        decide = APPROVE_SWAP if verb == "approve" else REJECT_SWAP
        decide(who=who, session=session, key=key, now=now, swap=ref)
        return f"/console/meter-swaps?done={'approved' if verb == 'approve' else 'rejected'}"

    return _post("decide", request, lang, who, session, form, send)
