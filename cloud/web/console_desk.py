"""The console's money desk: a shop's account page and its forms, each a client of the API's
own route (the same service call, idempotency, operator-log row and receipt), never a second
write path.

    GET  /console/accounts/{account}              merchant, meters, balance, subsidy, receipts,
                                                  and the forms the role may use
    POST /console/accounts/{account}/recharge     MONEY_DESK   → POST /recharges
    POST /console/accounts/{account}/correction   OPERATIONS   → POST /corrections
    POST /console/accounts/{account}/refund       OPERATIONS   → POST /refunds
    POST /console/accounts/{account}/move         OPERATIONS   → POST /moves
    GET  /console/desk                            held corrections, refunds open for payout
    POST /console/corrections/{id}/approve|reject PAYOUT       → POST /corrections/{id}/…
    POST /console/refunds/{id}/pay                PAYOUT       → POST /refunds/{id}/pay
    POST /console/refunds/{id}/cancel             MONEY_DESK   → POST /refunds/{id}/cancel
    GET  /console/receipts/{number}?paper=roll|a4 the receipt to print (80 mm roll or A4)
    GET  /console/receipts/{number}/pdf           the receipt's PDF (as GET /receipts/…?format=pdf)

Roles are the API routes' (`allow(...)` there): a form a role may not use is not shown, and is
refused here too (403) before the API is called. A form's fields are checked first
(`cloud.web.desk`); a refusal re-shows the page with its words and the API's, and nothing is
kept (the request's transaction is rolled back). A success answers 303: a recharge to its
receipt, the others back to the page they came from, saying what happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.api import corrections as corrections_api
from cloud.api import moves as moves_api
from cloud.api import receipts as receipts_api
from cloud.api import recharges as recharges_api
from cloud.api import refunds as refunds_api
from cloud.api.common import CloudKey, DbSession, Now, silent_after
from cloud.api.operation_lists import REF
from cloud.db.operations import Receipt
from cloud.errors import CloudError
from cloud.operations import receipt_print, receipts
from cloud.people.auth import MONEY_DESK, OPERATIONS, PAYOUT, STAFF, Principal, Role
from cloud.web import desk, sessions
from cloud.web.console import Form, Staff, frame
from cloud.web.desk import FormError, Refusal
from cloud.web.i18n import Lang
from cloud.web.page_errors import PageError, Refused
from cloud.web.render import page
from ledger.signed import is_reference

router = APIRouter(prefix="/console", include_in_schema=False)

Account = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,40}$")]  # `cloud.api.common.Owner`
Ref = Annotated[str, Path(pattern=REF)]
Number = Annotated[str, Path(pattern=r"^\d{4}-\d{6,9}$")]
# What each form may do, as the API route it calls allows it.
MAY: dict[str, tuple[Role, ...]] = {
    "recharge": MONEY_DESK,
    "correction": OPERATIONS,
    "refund": OPERATIONS,
    "move": OPERATIONS,
    "decide": PAYOUT,  # approve or reject a held correction
    "pay": PAYOUT,
    "cancel": MONEY_DESK,
}
FORMS = ("recharge", "correction", "refund", "move")  # on a shop's page, each with its token
# What a page says after a form succeeded (`?done=`).
DONE = ("correction_booked", "correction_held", "refund_requested", "move_requested",
        "approved", "rejected", "paid", "cancelled")  # fmt: skip
Done = Annotated[str, Query(pattern="^(" + "|".join(DONE) + ")?$")]


def _money(who: Principal) -> None:
    """The desk shows balances: staff only (an installer is refused, as `/accounts` does)."""
    if who.role not in STAFF:
        raise Refused(who)


def _may(who: Principal, form: str) -> None:
    if who.role not in MAY[form]:
        raise PageError("desk_not_allowed", 403)


def _mays(who: Principal) -> dict[str, bool]:
    return {form: who.role in roles for form, roles in MAY.items()}


def api_route(router_: APIRouter, name: str) -> Callable[..., Any]:
    """The endpoint of one of the API's generated routes (`cloud.api.operation_routes`)."""
    found = next(r for r in router_.routes if getattr(r, "name", "") == name)
    endpoint: Callable[..., Any] = getattr(found, "endpoint")  # noqa: B009 (a BaseRoute's)
    return endpoint


REQUEST_REFUND = api_route(refunds_api.router, "request_refund")
REQUEST_MOVE = api_route(moves_api.router, "request_move")
CANCEL_REFUND = api_route(refunds_api.router, "cancel_refund")
APPROVE_CORRECTION = api_route(corrections_api.router, "approve_correction")
REJECT_CORRECTION = api_route(corrections_api.router, "reject_correction")


def see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def posted(  # noqa: PLR0917 (the form's context)
    form: str, request: Request, may: bool, session: Session, fields: dict[str, str],
    send: Callable[[], str], again: Callable[[Refusal], Response],
) -> Response:  # fmt: skip
    """A console form sent: CSRF and role (`may`) first; then `send` (the page to go to), or,
    refused, the transaction rolled back and `again(refusal)` (the page again, saying why)."""
    sessions.check_csrf(request, fields.get("csrf"))
    if not may:
        raise PageError("desk_not_allowed", 403)
    sent = desk.sent_or_refused(form, send)
    if isinstance(sent, Refusal):
        session.rollback()
        return again(sent)
    return see_other(sent)


# -- a shop's page ----------------------------------------------------------------------------


def _account_page(  # noqa: PLR0917 (the page's parts)
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, now: dt.datetime,
    account: str, *, refused: Refusal | None = None, fields: dict[str, str] | None = None,
    done: str = "",
) -> Response:  # fmt: skip
    found = desk.desk_account(session, account, now, now - silent_after(request))
    if found is None:
        raise PageError("desk_account_not_found", 404)
    kept = fields or {}
    # a refused form keeps its token: nothing was booked, and sent again it still books once
    tokens = {form: desk.new_token(form) for form in FORMS}
    if refused is not None and is_reference(kept.get("token")):
        tokens[refused.form] = kept["token"]
    other = "en" if lang[0] == "zh" else "zh"
    return page(
        request, "console/desk_account.html", lang, status=refused.status if refused else 200,
        **frame(request, who), a=found, may=_mays(who), tokens=tokens, refused=refused,
        fields=kept, done=done, recharge_methods=desk.RECHARGE_METHODS,
        refund_methods=desk.REFUND_METHODS, max_yuan=desk.MAX_YUAN,
        max_grace_kwh=desk.MAX_GRACE_KWH, max_grace_hours=desk.MAX_GRACE_HOURS,
        lang_link=f"/console/accounts/{account}?lang={other}",
    )  # fmt: skip


@router.get("/accounts/{account}")
def account_page(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, now: Now, account: Account,
    done: Done = "",
) -> Response:  # fmt: skip
    _money(who)
    return _account_page(request, lang, who, session, now, account, done=done)


def _form_post(  # noqa: PLR0917 (the form's context)
    form: str, request: Request, lang: tuple[str, bool], who: Principal, session: Session,
    now: dt.datetime, account: str, fields: dict[str, str], send: Callable[[], Response],
) -> Response:  # fmt: skip
    """Check the CSRF token and the role, then `send` the form to the API; a refusal (ours or
    the API's) re-shows the account's page with nothing kept."""
    sessions.check_csrf(request, fields.get("csrf"))
    _money(who)
    _may(who, form)
    try:
        return send()
    except FormError as exc:
        refused = desk.invalid(exc)
    except ValidationError:  # what the checks let through and the API's body refuses
        refused = Refusal(form, "desk_field_bad", {}, 422)
    except CloudError as exc:
        refused = desk.refusal(form, exc)
    session.rollback()
    return _account_page(request, lang, who, session, now, account, refused=refused,
                         fields=fields)  # fmt: skip


@router.post("/accounts/{account}/recharge")
def recharge(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, account: Account,
) -> Response:  # fmt: skip
    def send() -> Response:
        done = recharges_api.create_recharge(
            body=desk.recharge_body(account, form), who=who, response=Response(),
            session=session, key=key, now=now,
        )  # fmt: skip
        return see_other(f"/console/receipts/{done.receipt}")

    return _form_post("recharge", request, lang, who, session, now, account, form, send)


@router.post("/accounts/{account}/correction")
def correction(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, account: Account,
) -> Response:  # fmt: skip
    def send() -> Response:
        done = corrections_api.create_correction(
            body=desk.correction_body(account, form), who=who, request=request,
            response=Response(), session=session, key=key, now=now,
        )  # fmt: skip
        if done.status == "held":
            return see_other("/console/desk?done=correction_held")
        return see_other(f"/console/accounts/{account}?done=correction_booked")

    return _form_post("correction", request, lang, who, session, now, account, form, send)


@router.post("/accounts/{account}/refund")
def refund(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, account: Account,
) -> Response:  # fmt: skip
    def send() -> Response:
        REQUEST_REFUND(body=desk.refund_body(account, form), who=who, response=Response(),
                       session=session, key=key, now=now)  # fmt: skip
        return see_other(f"/console/accounts/{account}?done=refund_requested")

    return _form_post("refund", request, lang, who, session, now, account, form, send)


@router.post("/accounts/{account}/move")
def move(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, account: Account,
) -> Response:  # fmt: skip
    def send() -> Response:
        body = desk.move_body(account, form, desk.nodes(session))
        REQUEST_MOVE(body=body, who=who, response=Response(), session=session, key=key, now=now)
        return see_other(f"/console/accounts/{account}?done=move_requested")

    return _form_post("move", request, lang, who, session, now, account, form, send)


# -- the desk's queue: what waits for a second user -------------------------------------------


def _queue_page(
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, *,
    done: str = "", refused: Refusal | None = None,
) -> Response:  # fmt: skip
    other = "en" if lang[0] == "zh" else "zh"
    return page(request, "console/desk_queue.html", lang,
                status=refused.status if refused else 200, **frame(request, who),
                q=desk.queue(session), may=_mays(who), done=done, refused=refused,
                lang_link=f"/console/desk?lang={other}")  # fmt: skip


@router.get("/desk")
def queue_page(
    request: Request, lang: Lang, who: Staff, session: DbSession, done: Done = ""
) -> Response:
    _money(who)
    return _queue_page(request, lang, who, session, done=done)


def _decision(  # noqa: PLR0917 (the decision's context)
    form: str, done: str, request: Request, lang: tuple[str, bool], who: Principal,
    session: Session, fields: dict[str, str], decide: Callable[[], object],
) -> Response:  # fmt: skip
    sessions.check_csrf(request, fields.get("csrf"))
    _money(who)
    _may(who, form)
    try:
        decide()
    except CloudError as exc:
        session.rollback()
        return _queue_page(request, lang, who, session, refused=desk.refusal(form, exc))
    return see_other(f"/console/desk?done={done}")


@router.post("/corrections/{ref}/{verb}")
def decide_correction(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, ref: Ref, verb: Literal["approve", "reject"],
) -> Response:  # fmt: skip
    def decide() -> object:
        if verb == "approve":
            return APPROVE_CORRECTION(who=who, session=session, key=key, now=now, correction=ref)
        return REJECT_CORRECTION(who=who, session=session, key=key, now=now, correction=ref)

    done = "approved" if verb == "approve" else "rejected"
    return _decision("decide", done, request, lang, who, session, form, decide)


@router.post("/refunds/{ref}/{verb}")
def change_refund(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, ref: Ref, verb: Literal["pay", "cancel"],
) -> Response:  # fmt: skip
    def decide() -> object:
        if verb == "pay":
            return refunds_api.pay_refund(ref, request=request, who=who, session=session,
                                          key=key, now=now)  # fmt: skip
        return CANCEL_REFUND(who=who, session=session, key=key, now=now, refund=ref)

    done = "paid" if verb == "pay" else "cancelled"
    return _decision(verb, done, request, lang, who, session, form, decide)


# -- receipts ---------------------------------------------------------------------------------


@router.get("/receipts/{number}")
def receipt_page(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, number: Number,
    paper: Annotated[Literal["roll", "a4"], Query()] = "roll",
) -> Response:  # fmt: skip
    _money(who)
    receipt = _receipt(session, number)
    title, lines = receipt_print.lines(session, receipt, _print_lang(lang))
    rows = [line.partition(": ")[::2] for line in lines]
    other = "en" if lang[0] == "zh" else "zh"
    return page(request, "console/desk_receipt.html", lang, **frame(request, who),
                receipt=receipt, title=title, rows=rows, paper=paper,
                lang_link=f"/console/receipts/{number}?paper={paper}&lang={other}")  # fmt: skip


@router.get("/receipts/{number}/pdf")
def receipt_pdf(lang: Lang, who: Staff, session: DbSession, number: Number) -> Response:
    """`GET /receipts/{number}?format=pdf`, answered by the API's own route."""
    _money(who)
    _receipt(session, number)  # an unknown number is a page's 404, not the API's JSON
    answer: Response = receipts_api.get_receipt(number=number, who=who, session=session,
                                                format="pdf", lang=_print_lang(lang))  # fmt: skip
    return answer


def _print_lang(lang: tuple[str, bool]) -> receipt_print.Lang:
    return "en" if lang[0] == "en" else "zh"


def _receipt(session: Session, number: str) -> Receipt:
    try:
        return receipts.get(session, number)
    except CloudError:
        raise PageError("desk_receipt_not_found", 404) from None
