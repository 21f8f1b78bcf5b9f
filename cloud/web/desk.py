"""What the console's money desk (`console_desk`) reads and checks: a shop's account as the
desk sees it, the desk's queue, and the desk's forms turned into the API's own request bodies.

Reads come from the tables the API reads, through the code that already reads them: the
balances, subsidy and recharges of the merchant's page (`merchant_view.account_view`), the
meters of the monitoring table (`monitoring.meters_of`), receipts, corrections and refunds as
`/receipts`, `/corrections` and `/refunds` list them.

A form field is checked here before anything is sent: an amount in yuan (at most two decimals)
becomes integer fen within the API's bounds, a choice must be one offered, a form's token (the
operation's id, printed in the form when the page was made, so the same form sent twice is one
operation) must be an operation reference. A refusal is a `FormError` naming its catalogue
message; the API's own refusals (`CloudError`) are shown with their words (`refusal`).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.corrections import CorrectionIn
from cloud.api.meter_swaps import IrImportIn, MeterSwapIn, NewMeter
from cloud.api.moves import MoveIn
from cloud.api.recharges import RechargeIn
from cloud.api.refunds import RefundIn
from cloud.db import registry as reg
from cloud.db.models import Concentrator, LedgerEntry, ReportedAccount
from cloud.db.operations import Correction, IrReading, MeterSwap, Move, Receipt, Refund
from cloud.errors import CloudError, Conflict, Forbidden, Invalid, NotFound
from cloud.operations import corrections, meter_swaps, refunds
from cloud.operations.recharges import MAX_RECHARGE_FEN
from cloud.registry.values import PROTOCOLS
from cloud.web import merchant_view, monitoring
from cloud.web.forms import AmountError, fen_of_yuan
from cloud.web.merchant_view import AccountView
from cloud.web.monitoring import MeterRow
from ledger.accounts import Pocket, pocket_id
from ledger.signed import is_reference
from ledger.transfers import Code
from ledger.units import MAX_AMOUNT

T = TypeVar("T")

ROWS = 10  # receipts, originals, corrections and refunds shown on a shop's page
QUEUE_ROWS = 100
RECHARGE_METHODS = ("cash", "card")  # the desk's; online payments come through /payments
REFUND_METHODS = ("cash", "card", "original")  # `RefundIn.method`
DIRECTIONS = ("credit", "debit")  # a correction gives back or takes back
OPEN_REFUNDS = ("requested", "reserved")
SHOP = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # `MoveIn.to_shop`
MAX_YUAN = MAX_RECHARGE_FEN // 100  # what the forms' number fields allow
MAX_GRACE_KWH = refunds.MAX_GRACE_WH // 1000
MAX_GRACE_HOURS = refunds.MAX_GRACE_HOURS
WHOLE = re.compile(r"\d{1,7}")
KWH = re.compile(r"\d{1,9}(\.\d{1,3})?")  # a register typed in kWh: exact to the Wh
ADDRESS = re.compile(r"[0-9A-Za-z]{1,32}")  # `cloud.api.common.MeterAddress`
SOURCE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # `IrImportIn.source`
# An API refusal: the first class that matches gives the page's status and its lead words.
REFUSALS: tuple[tuple[type[CloudError], int, str], ...] = (
    (Forbidden, 403, "desk_refused_forbidden"),
    (NotFound, 404, "desk_refused_not_found"),
    (Conflict, 409, "desk_refused_conflict"),
    (Invalid, 422, "desk_refused_invalid"),
    (CloudError, 400, "desk_refused"),
)


class FormError(Exception):
    """A form field we do not send on: `key` is its catalogue message, `form` the form."""

    def __init__(self, form: str, key: str, **values: str) -> None:
        super().__init__(key)
        self.form, self.key, self.values = form, key, values


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a page shows of a refused form: its catalogue message and the API's own words."""

    form: str
    key: str
    values: dict[str, str]
    status: int
    detail: str = ""


def refusal(form: str, exc: CloudError) -> Refusal:
    """The API's refusal `exc` of `form`, as the page shows it."""
    status, key = next((s, k) for kind, s, k in REFUSALS if isinstance(exc, kind))
    return Refusal(form, key, {}, status, str(exc))


def invalid(exc: FormError) -> Refusal:
    return Refusal(exc.form, exc.key, exc.values, 422)


def sent_or_refused(form: str, send: Callable[[], T]) -> T | Refusal:
    """`send()`'s answer, or the refusal of `form` the page shows when our checks, the API's
    body or the API itself refused it."""
    try:
        return send()
    except FormError as exc:
        return invalid(exc)
    except ValidationError:  # what the checks let through and the API's body refuses
        return Refusal(form, "desk_field_bad", {}, 422)
    except CloudError as exc:
        return refusal(form, exc)


def new_token(kind: str) -> str:
    """A form's operation id (`desk-recharge-…`): the same form sent twice books once."""
    return f"desk-{kind}-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Original:
    """A booked fen credit of the account a correction may name (its transfer, hex)."""

    transfer: str
    fen: int
    time: dt.datetime
    payment: str | None


@dataclass
class DeskAccount:
    account: str
    node: str
    merchant: str
    view: AccountView  # balances, subsidy left, recent recharges (the merchant's page's)
    meters: list[MeterRow]
    receipts: list[Receipt] = field(default_factory=list)
    originals: list[Original] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # where a tenant may move to

    @property
    def open_refund(self) -> Refund | None:
        return next((r for r in self.refunds if r.status in OPEN_REFUNDS), None)


def _originals(session: Session, account: str) -> list[Original]:
    rows = session.execute(
        select(LedgerEntry.transfer_id, LedgerEntry.amount, LedgerEntry.time, LedgerEntry.refs)
        .where(LedgerEntry.credit == pocket_id(account, Pocket.PREPAID),
               LedgerEntry.code == Code.RECHARGE.value)
        .order_by(LedgerEntry.time.desc(), LedgerEntry.id.desc())
        .limit(ROWS)
    ).all()  # fmt: skip
    return [Original(r.transfer_id, r.amount, r.time, (r.refs or {}).get("payment")) for r in rows]


def desk_account(
    session: Session, account: str, now: dt.datetime, heard_since: dt.datetime
) -> DeskAccount | None:
    """Everything a shop's page shows of `account`; None when the account is not known
    (`heard_since`: its meters' nodes heard from before count offline)."""
    place = session.get(ReportedAccount, account)
    if place is None:
        return None
    merchant = session.scalar(
        select(reg.Merchant.name).join(reg.Account, reg.Account.merchant_id == reg.Merchant.id)
        .where(reg.Account.id == account)
    )  # fmt: skip
    found = DeskAccount(
        account=account, node=place.node, merchant=merchant or "",
        view=merchant_view.account_view(session, account, now),
        meters=monitoring.meters_of(session, account, now, heard_since),
    )  # fmt: skip
    found.receipts = list(session.scalars(
        select(Receipt).where(Receipt.account == account)
        .order_by(Receipt.time.desc(), Receipt.number.desc()).limit(ROWS)
    ))  # fmt: skip
    found.originals = _originals(session, account)
    found.corrections = list(session.scalars(
        select(Correction).where(Correction.account == account)
        .order_by(Correction.created.desc(), Correction.id).limit(ROWS)
    ))  # fmt: skip
    found.refunds = list(session.scalars(
        select(Refund).where(Refund.account == account)
        .order_by(Refund.created.desc(), Refund.id).limit(ROWS)
    ))  # fmt: skip
    found.moves = list(session.scalars(
        select(Move).where(Move.account == account)
        .order_by(Move.created.desc(), Move.id).limit(ROWS)
    ))  # fmt: skip
    found.nodes = nodes(session)
    return found


def nodes(session: Session) -> list[str]:
    """The concentrators a tenant may move to."""
    return list(session.scalars(select(Concentrator.node).order_by(Concentrator.node)))


@dataclass(frozen=True, slots=True)
class Queue:
    """What waits for a second user: held corrections, and refunds open for payout."""

    held: list[Correction]
    refunds: list[Refund]


def queue(session: Session) -> Queue:
    held = session.scalars(
        select(Correction).where(Correction.status == "held")
        .order_by(Correction.created, Correction.id).limit(QUEUE_ROWS)
    )  # fmt: skip
    open_refunds = session.scalars(
        select(Refund).where(Refund.status.in_(OPEN_REFUNDS))
        .order_by(Refund.created, Refund.id).limit(QUEUE_ROWS)
    )  # fmt: skip
    return Queue(list(held), list(open_refunds))


# -- the forms --------------------------------------------------------------------------------


def _token(form: str, fields: dict[str, str]) -> str:
    token = fields.get("token", "")
    if not is_reference(token):
        raise FormError(form, "desk_token_bad")
    return token


def _fen(form: str, text: str, max_fen: int) -> int:
    try:
        return fen_of_yuan(text, min_fen=1, max_fen=max_fen)
    except AmountError as exc:
        raise FormError(form, f"desk_{exc.key}", **exc.values) from None


def _choice(form: str, text: str, offered: tuple[str, ...]) -> str:
    if text not in offered:
        raise FormError(form, "desk_choice_bad")
    return text


def recharge_body(account: str, fields: dict[str, str]) -> RechargeIn:
    """`POST /recharges`'s body from the recharge form (`FormError` if a field is wrong)."""
    return RechargeIn(
        account=account,
        fen=_fen("recharge", fields.get("amount", ""), MAX_RECHARGE_FEN),
        method=_choice("recharge", fields.get("method", ""), RECHARGE_METHODS),  # type: ignore[arg-type]
        payment=_token("recharge", fields),
    )


def correction_body(account: str, fields: dict[str, str]) -> CorrectionIn:
    """`POST /corrections`'s body from the correction form."""
    sign = 1 if _choice("correction", fields.get("direction", ""), DIRECTIONS) == "credit" else -1
    fen = _fen("correction", fields.get("amount", ""), MAX_RECHARGE_FEN)
    original = fields.get("original", "")
    if not is_reference(original):
        raise FormError("correction", "desk_original_missing")
    reason = " ".join(fields.get("reason", "").split())
    if len(reason) < corrections.MIN_REASON:
        raise FormError("correction", "desk_reason_short", min=str(corrections.MIN_REASON))
    return CorrectionIn(account=account, fen=sign * fen, original=original, reason=reason,
                        correction=_token("correction", fields))  # fmt: skip


def move_body(account: str, fields: dict[str, str], nodes: list[str]) -> MoveIn:
    """`POST /moves`'s body from the move form (`nodes`: the concentrators offered)."""
    to_shop = fields.get("to_shop", "").strip()
    if not SHOP.fullmatch(to_shop):
        raise FormError("move", "desk_shop_bad")
    return MoveIn(account=account, to_shop=to_shop,
                  to_node=_choice("move", fields.get("to_node", ""), tuple(nodes)),
                  move=_token("move", fields))  # fmt: skip


def _wh(form: str, text: str) -> int:
    text = text.strip()
    if not KWH.fullmatch(text) or int(Decimal(text) * 1000) > MAX_AMOUNT:
        raise FormError(form, "desk_kwh_bad")
    return int(Decimal(text) * 1000)


def _address(form: str, text: str) -> str:
    text = text.strip()
    if not ADDRESS.fullmatch(text):
        raise FormError(form, "desk_address_bad")
    return text


def swap_body(fields: dict[str, str]) -> MeterSwapIn:
    """`POST /meter-swaps`'s body from the swap form: the old meter's final register typed (kWh)
    or one imported from the IR handheld, exactly one; the new meter and its first register."""
    typed, chosen = fields.get("final_kwh", "").strip(), fields.get("ir_reading", "").strip()
    if bool(typed) == bool(chosen):
        raise FormError("swap", "desk_final_one")
    if chosen and not WHOLE.fullmatch(chosen):
        raise FormError("swap", "desk_choice_bad")
    return MeterSwapIn(
        old=_address("swap", fields.get("old", "")),
        final_wh=_wh("swap", typed) if typed else None,
        ir_reading=int(chosen) if chosen else None,
        new=NewMeter(address=_address("swap", fields.get("new_address", "")),
                     protocol=_choice("swap", fields.get("protocol", ""), tuple(PROTOCOLS)),
                     multiplier=_whole("swap", fields.get("multiplier", ""),
                                       meter_swaps.MAX_MULTIPLIER, low=1)),
        initial_wh=_wh("swap", fields.get("initial_kwh", "0") or "0"),
        swap=_token("swap", fields),
    )  # fmt: skip


def ir_body(fields: dict[str, str]) -> IrImportIn:
    """`POST /meter-swaps/ir-import`'s body: the handheld's export as it is, and its source."""
    source = fields.get("source", "").strip()
    if not SOURCE.fullmatch(source):
        raise FormError("ir", "desk_source_missing")
    csv = fields.get("csv", "")
    if not csv.strip():
        raise FormError("ir", "desk_csv_missing")
    return IrImportIn(source=source, csv=csv, readings=None)


@dataclass(frozen=True, slots=True)
class Swaps:
    """The meter-swap page: held swaps, recent swaps, imported IR readings (of `meter`, or the
    latest)."""

    held: list[MeterSwap]
    recent: list[MeterSwap]
    readings: list[IrReading]


def swaps(session: Session, meter: str) -> Swaps:
    held = session.scalars(
        select(MeterSwap).where(MeterSwap.status == "held")
        .order_by(MeterSwap.created, MeterSwap.id).limit(QUEUE_ROWS)
    )  # fmt: skip
    recent = session.scalars(
        select(MeterSwap).order_by(MeterSwap.created.desc(), MeterSwap.id).limit(ROWS)
    )
    readings = select(IrReading).order_by(IrReading.read_at.desc(), IrReading.id.desc())
    if meter:
        readings = readings.where(IrReading.address == meter)
    return Swaps(list(held), list(recent), list(session.scalars(readings.limit(ROWS * 2))))


def _whole(form: str, text: str, high: int, low: int = 0) -> int:
    text = text.strip() or str(low)
    if not WHOLE.fullmatch(text) or not low <= int(text) <= high:
        raise FormError(form, "desk_whole_bad", min=str(low), max=str(high))
    return int(text)


def refund_body(account: str, fields: dict[str, str]) -> RefundIn:
    """`POST /refunds`'s body from the refund form (the grace allowance in whole kWh)."""
    return RefundIn(
        account=account,
        method=_choice("refund", fields.get("method", ""), REFUND_METHODS),  # type: ignore[arg-type]
        grace_wh=_whole("refund", fields.get("grace_kwh", ""), MAX_GRACE_KWH) * 1000,
        grace_hours=_whole("refund", fields.get("grace_hours", ""), MAX_GRACE_HOURS),
        refund=_token("refund", fields),
    )
