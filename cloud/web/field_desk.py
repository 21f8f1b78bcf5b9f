"""The field app's money and meter work (issue 16 §7): cash taken on site and meter swaps, each
typed on the phone — online or offline — with the phone's idempotency key, and each a client of
the API's own route, as the console's desk is (`console_desk`, `console_swaps`): the same
service call, operator-log row and receipt, never a second write path.

    POST /field/recharges         MONEY_DESK ∩ FIELD (admin, operator) → POST /recharges
                                  {key, account, amount (yuan)}: cash only
    POST /field/swaps             FIELD                                → POST /meter-swaps
                                  {key, old, final_kwh, new_address, protocol, multiplier,
                                   initial_kwh}: a swap past the plausibility limit is held for
                                   a second user (the console's swap page), as the API does
    GET  /field/receipts/{number} the cash receipt to show the shop and print

The phone's key is the operation's own id (`field-<key>`: the recharge's payment id, the swap's
id), so the API's idempotency applies it once whatever the phone resends: the same key again
answers the booked row (200), the same key with other content is refused (409). An installer
may not take money (`cloud.people.auth`: `MONEY_DESK`); the app does not show it the form, and
this route refuses it (403). JSON posts (the offline queue) are answered in JSON; a form without
script is answered with the receipt, or the home page saying what was wrong.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cloud.api import meter_swaps as swaps_api
from cloud.api import recharges as recharges_api
from cloud.api.common import CloudKey, DbSession, Now
from cloud.errors import CloudError, Invalid
from cloud.operations import receipt_print, receipts
from cloud.people.auth import MONEY_DESK, Principal
from cloud.web import desk, field
from cloud.web.console_desk import api_route
from cloud.web.desk import FormError
from cloud.web.field import Fields, Technician
from cloud.web.i18n import Lang, translator
from cloud.web.page_errors import PageError
from cloud.web.render import page

router = APIRouter(prefix="/field", include_in_schema=False)

REQUEST_SWAP = api_route(swaps_api.router, "request_swap")
Number = Annotated[str, Path(pattern=r"^\d{4}-\d{6,9}$")]


def may_take_cash(who: Principal) -> bool:
    """Cash is the money desk's (`MONEY_DESK`); the field app is `FIELD`'s: both, or neither."""
    return who.role in MONEY_DESK


def operation_id(fields: dict[str, str]) -> str:
    """`field-<key>`: the phone's key as the operation's id (a reference the API takes)."""
    key = fields.get("key", "")
    if not field.KEY.fullmatch(key):
        raise Invalid("each record carries its key, 8-64 letters, digits or dashes")
    return f"field-{key}"


def _refused(
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, exc: Exception,
    *, form: dict[str, str],
) -> Response:  # fmt: skip
    """Nothing kept; JSON says why (the queue shows it), a form re-shows the home page."""
    session.rollback()
    t = translator(lang[0])
    if isinstance(exc, FormError):
        status, said = 422, t(exc.key, **exc.values)
    elif isinstance(exc, ValidationError):
        status, said = 422, t("desk_field_bad")
    elif isinstance(exc, CloudError):
        refusal = desk.refusal("field", exc)
        status, said = refusal.status, f"{t(refusal.key)} {exc}"
    else:
        raise exc
    if field.is_json(request):
        return JSONResponse({"error": said}, status_code=status)
    return field.home_page(request, lang, who, session, error_text=said, status=status, form=form)


@router.post("/recharges")
def take_cash(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession,
    key: CloudKey, now: Now,
) -> Response:  # fmt: skip
    field.check_csrf(request, form)
    if not may_take_cash(who):
        raise PageError("desk_not_allowed", 403)
    account = form.get("account", "").strip()
    try:
        if not desk.SHOP.fullmatch(account):
            raise FormError("recharge", "field_account_bad")
        fields = {"amount": form.get("amount", ""), "method": "cash",
                  "token": operation_id(form)}  # fmt: skip
        body = desk.recharge_body(account, fields)
        done = recharges_api.create_recharge(body=body, who=who, response=Response(),
                                             session=session, key=key, now=now)  # fmt: skip
    except (FormError, ValidationError, CloudError) as exc:
        return _refused(request, lang, who, session, exc, form=form)
    url = f"/field/receipts/{done.receipt}" if done.receipt else None
    if field.is_json(request):
        said = {"payment": done.payment, "account": done.account, "fen": done.fen,
                "status": done.status, "receipt": done.receipt, "url": url}  # fmt: skip
        return JSONResponse(said)
    return RedirectResponse(url or "/field/", status_code=303)


@router.post("/swaps")
def request_swap(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Technician, form: Fields, session: DbSession,
    key: CloudKey, now: Now,
) -> Response:  # fmt: skip
    field.check_csrf(request, form)
    try:
        body = desk.swap_body({**form, "token": operation_id(form)})
        done: Any = REQUEST_SWAP(body=body, who=who, response=Response(), session=session,
                                 key=key, now=now)  # fmt: skip
    except (FormError, ValidationError, CloudError) as exc:
        return _refused(request, lang, who, session, exc, form=form)
    if field.is_json(request):
        return JSONResponse({"id": done.id, "status": done.status, "old": done.old,
                             "new": done.new_address, "receipt": done.receipt})  # fmt: skip
    return RedirectResponse("/field/", status_code=303)


@router.get("/receipts/{number}")
def receipt_page(
    request: Request, lang: Lang, who: Technician, session: DbSession, number: Number
) -> Response:
    """The receipt as the desk prints it (`receipt_print.lines`), to show and print on site."""
    if not may_take_cash(who):
        raise PageError("desk_not_allowed", 403)
    try:
        receipt = receipts.get(session, number)
    except CloudError:
        raise PageError("desk_receipt_not_found", 404) from None
    title, lines = receipt_print.lines(session, receipt, "en" if lang[0] == "en" else "zh")
    rows = [line.partition(": ")[::2] for line in lines]
    return page(request, "field/receipt.html", lang, **field.frame(request, who),
                receipt=receipt, title=title, rows=rows)  # fmt: skip
