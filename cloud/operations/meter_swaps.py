"""Meter swaps: a broken or replaced meter's final register, and the new meter's first.

    request  command meter_swap {swap: S, old, final_wh, meter: {id, protocol, multiplier,
             account, shop}, initial_wh} to the old meter's concentrator       status requested
    edge     bills the old meter up to final_wh (code meter_settle), then the new meter
             from initial_wh; the account's balance stays where it is         status applied
             (or refuses, e.g. final_wh below what it billed)                 status failed

The final register must not be below the last one the cloud holds for the old meter (its
readings and `meters.energy_wh`): energy already billed cannot be unbilled. Nor may it be
implausibly above it (`plausible_limit`): since its last reading the meter can have counted at
most the hours since then at the larger of the site's maximum load (its alarm rule's
`overload_w`, else `DEFAULT_MAX_LOAD_W`) and three times its own average power over the
`RECENT` days before that reading, plus `SLACK_WH`. A swap past that limit is stored `held`, no
command sent, until a second user (admin or operator, not the one who asked) overrides it
(`approve`: the command goes) or rejects it (`reject`; both are `cloud.operations.four_eyes`);
both are in the operator log. A dead meter's
final comes from an infrared handheld (`cloud.operations.handheld`): `import_ir` stores the export's
registers and a swap names one (`ir_reading`) instead of `final_wh`. The new meter's
document carries no bus: the concentrator keeps the old meter's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from functools import partial

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cloud.chains import commands
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock_active
from cloud.db import registry as tables
from cloud.db.models import MeterState, Reading, ReportedAccount
from cloud.db.operations import IrReading, MeterSwap
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import ownership
from cloud.operations.arguments import reference, whole
from cloud.operations.four_eyes import FourEyes
from cloud.operations.handheld import ADDRESS, IrRegister
from cloud.operations.once import add_once
from cloud.operations.receipts import Voucher
from cloud.operations.states import METER_SWAP, MeterSwapEvent, MeterSwapStatus
from ledger.chain import NodeKey
from ledger.signed import CommandKind
from ledger.units import MAX_AMOUNT

PROTOCOL = re.compile(r"[a-z0-9_]{1,32}")
MAX_MULTIPLIER = 10_000
DEFAULT_MAX_LOAD_W = 20_000  # a shop's supply (3 × 32 A) when its site declares no maximum
RECENT = dt.timedelta(days=30)  # the readings a meter's own average power is taken over
SLACK_WH = 1_000  # a register read a moment late, rounding
_WAITING = (MeterSwapStatus.HELD.value, MeterSwapStatus.REQUESTED.value)


def import_ir(
    session: Session,
    registers: Sequence[IrRegister],
    *,
    source: str,
    operator: str,
    now: dt.datetime,
) -> tuple[list[IrReading], int]:
    """Store a handheld's registers; `(rows, how many were new)`. A register already stored
    (same meter and time) is kept; the same time with another value is a Conflict."""
    rows, new = [], 0
    for register in registers:
        whole(register.energy_wh, "energy_wh", low=0, high=MAX_AMOUNT)
        existing = _ir_reading(session, register)
        if existing is None:
            row = IrReading(
                address=register.address, read_at=register.read_at,
                energy_wh=register.energy_wh, source=source[:200], operator=operator,
                imported=now,
            )  # fmt: skip
            # A concurrent import of the same register (a phone's resend) may commit first.
            existing = add_once(session, row, partial(_ir_reading, session, register))
            if existing is None:
                rows.append(row)
                new += 1
                continue
        if existing.energy_wh != register.energy_wh:
            raise Conflict(
                f"meter {register.address} at {register.read_at.isoformat()} was imported "
                f"as {existing.energy_wh} Wh, now {register.energy_wh} Wh"
            )
        rows.append(existing)
    return rows, new


def _ir_reading(session: Session, register: IrRegister) -> IrReading | None:
    query = select(IrReading).where(
        IrReading.address == register.address, IrReading.read_at == register.read_at
    )
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def _the_meter(session: Session, address: str) -> MeterState:
    found = session.scalars(select(MeterState).where(MeterState.address == address)).all()
    if not found:
        raise NotFound(f"meter {address!r} is not known")
    if len(found) > 1:
        nodes = ", ".join(sorted(m.node for m in found))
        raise Conflict(f"meter {address} is reported by several concentrators ({nodes})")
    return found[0]


def last_register(session: Session, meter: MeterState) -> int | None:
    """The highest energy register the cloud holds for the meter, Wh."""
    read = session.scalar(
        select(func.max(Reading.energy_wh)).where(
            Reading.node == meter.node, Reading.meter == meter.address
        )
    )
    known = [v for v in (read, meter.energy_wh) if v is not None]
    return max(known) if known else None


def _site_max_load(session: Session, meter: MeterState) -> int | None:
    """The maximum load (W) the registry's site of the meter declares, if any."""
    return session.scalar(
        select(tables.AlarmRule.overload_w)
        .join(tables.Shop, tables.Shop.site_id == tables.AlarmRule.site_id)
        .join(tables.Meter, tables.Meter.shop_id == tables.Shop.id)
        .where(tables.Meter.address == meter.address,
               or_(tables.Meter.node == meter.node, tables.Meter.node.is_(None)))
        .limit(1)
    )  # fmt: skip


def plausible_limit(session: Session, meter: MeterState, now: dt.datetime) -> int | None:
    """The highest final register the meter could plausibly show at `now` (see the module's
    docstring); None when the cloud holds no reading of it (nothing to judge from)."""
    last = session.execute(
        select(Reading.energy_wh, Reading.time)
        .where(Reading.node == meter.node, Reading.meter == meter.address,
               Reading.energy_wh.is_not(None))
        .order_by(Reading.energy_wh.desc(), Reading.time.desc())
        .limit(1)
    ).first()  # fmt: skip
    if last is None:
        if meter.energy_wh is None or meter.last_reading is None:
            return None
        register, at = meter.energy_wh, meter.last_reading
    else:
        register, at = last[0] or 0, last[1]
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # SQLite hands naive UTC back
    first = session.execute(
        select(Reading.energy_wh, Reading.time)
        .where(Reading.node == meter.node, Reading.meter == meter.address,
               Reading.energy_wh.is_not(None), Reading.time >= at - RECENT)
        .order_by(Reading.time)
        .limit(1)
    ).first()  # fmt: skip
    recent_w = 0
    if first is not None:
        since = first[1] if first[1].tzinfo else first[1].replace(tzinfo=dt.UTC)
        hours = (at - since).total_seconds() / 3600
        if hours > 0:
            recent_w = int((register - (first[0] or 0)) / hours)
    load_w = max(_site_max_load(session, meter) or DEFAULT_MAX_LOAD_W, 3 * recent_w)
    hours = max(0.0, (now - at).total_seconds() / 3600)
    return register + SLACK_WH + int(hours * load_w)


def _final(
    session: Session, old: str, final_wh: object, ir_reading: object
) -> tuple[int, int | None]:
    if (final_wh is None) == (ir_reading is None):
        raise Invalid("give the old meter's final register: final_wh or ir_reading, not both")
    if final_wh is not None:
        return whole(final_wh, "final_wh", low=0, high=MAX_AMOUNT), None
    number = whole(ir_reading, "ir_reading", low=1, high=MAX_AMOUNT)
    reading = session.get(IrReading, number)
    if reading is None:
        raise NotFound(f"no imported IR reading {number}")
    if reading.address != old:
        raise Invalid(f"IR reading {number} is of meter {reading.address}, not {old}")
    return reading.energy_wh, number


def request(
    session: Session,
    *,
    old: str,
    final_wh: int | None,
    ir_reading: int | None,
    new_address: str,
    protocol: str,
    multiplier: int,
    initial_wh: int,
    operator: str,
    swap: str | None,
    key: NodeKey,
    now: dt.datetime,
) -> tuple[MeterSwap, bool]:
    """Send the swap to the old meter's concentrator, or hold it past the plausibility limit;
    `(row, created)`."""
    if not isinstance(new_address, str) or not ADDRESS.fullmatch(new_address):
        raise Invalid(f"new meter address {new_address!r} is not 1-32 letters/digits")
    if new_address == old:
        raise Invalid("the new meter has the old meter's address")
    if not isinstance(protocol, str) or not PROTOCOL.fullmatch(protocol):
        raise Invalid(f"protocol {protocol!r} is not a protocol name (e.g. dlt645, modbus)")
    whole(multiplier, "multiplier", low=1, high=MAX_MULTIPLIER)
    whole(initial_wh, "initial_wh", low=0, high=MAX_AMOUNT)
    meter = _the_meter(session, old)
    final, ir_id = _final(session, old, final_wh, ir_reading)
    ref = reference(swap, "s", old, final, new_address, protocol, multiplier, initial_wh)
    lock_active(session, meter.node)
    existing = session.get(MeterSwap, ref, populate_existing=True)
    if existing is not None:
        if (existing.old, existing.final_wh, existing.new_address) != (old, final, new_address):
            raise Conflict(f"meter swap {ref} exists with other content")
        return existing, False
    last = last_register(session, meter)
    if last is not None and final < last:
        raise Invalid(f"final register {final} Wh of meter {old} is below the last reading "
                      f"{last} Wh the cloud holds")  # fmt: skip
    if (
        session.scalars(select(MeterState).where(MeterState.address == new_address)).first()
        is not None
    ):
        raise Conflict(f"meter {new_address} is already installed")
    busy = session.scalars(
        select(MeterSwap).where(MeterSwap.old == old, MeterSwap.status.in_(_WAITING)).limit(1)
    ).first()
    if busy is not None:
        raise Conflict(f"meter {old} has swap {busy.id} still {busy.status}")
    limit = plausible_limit(session, meter, now)
    held = limit is not None and final > limit
    owner = session.get(ReportedAccount, meter.account) if meter.account else None
    row = MeterSwap(
        id=ref, node=meter.node, account=meter.account, shop=owner.shop if owner else "",
        old=old, final_wh=final, ir_reading=ir_id, new_address=new_address, protocol=protocol,
        multiplier=multiplier, initial_wh=initial_wh, limit_wh=limit,
        status=METER_SWAP.start(MeterSwapStatus.HELD if held else MeterSwapStatus.REQUESTED),
        command_id=None, operator=operator, approved_by=None, receipt=None, created=now,
        resolved=None,
    )  # fmt: skip
    if not held:
        _send(session, row, key=key, now=now)
    session.add(row)
    session.flush()
    return row, True


def _send(session: Session, row: MeterSwap, *, key: NodeKey, now: dt.datetime) -> None:
    """The `meter_swap` command to the old meter's concentrator."""
    document: dict[str, object] = {"id": row.new_address, "protocol": row.protocol,
                                   "multiplier": row.multiplier}  # fmt: skip
    if row.account:
        document["account"] = row.account
    if row.shop:
        document["shop"] = row.shop
    command = commands.issue(
        session,
        row.node,
        CommandKind.METER_SWAP,
        {"swap": row.id, "old": row.old, "final_wh": row.final_wh, "meter": document,
         "initial_wh": row.initial_wh},
        key=key,
        now=now,
        operator=row.approved_by or row.operator,
    )  # fmt: skip
    row.command_id = command.id


HELD = FourEyes(
    MeterSwap, METER_SWAP, MeterSwapEvent.APPROVED, MeterSwapEvent.REJECTED,
    MeterSwapStatus.REJECTED, noun="meter swap", second="overrides it", approved="overridden",
    issue=_send,
)  # fmt: skip


# A second user overrides the plausibility limit of a held swap (the command goes) or rejects
# it; each gives `(row, changed)`.
get, approve, reject = HELD.get, HELD.approve, HELD.reject


def voucher(row: MeterSwap) -> Voucher | None:
    """What the swap's receipt prints: no money, the two registers (nothing while it is held
    or once rejected: no command was sent)."""
    if row.command_id is None:
        return None
    return Voucher(
        kind="meter_swap", ref=row.id, account=row.account, fen=0, method="",
        operator=row.operator, transfer=row.command_id,
        detail={"old_meter": row.old, "final_wh": row.final_wh, "new_meter": row.new_address,
                "initial_wh": row.initial_wh,
                "final_from": "ir" if row.ir_reading else "operator",
                **({"overridden_by": row.approved_by} if row.approved_by else {})},
    )  # fmt: skip


def on_verdicts(session: Session, outcomes: Sequence[CommandVerdict], now: dt.datetime) -> None:
    """The concentrator's verdict on swaps it was sent."""
    verdicts = {o.command_id: o for o in outcomes}
    if not verdicts:
        return
    for row in session.scalars(
        select(MeterSwap).where(
            MeterSwap.command_id.in_(list(verdicts)),
            MeterSwap.status == MeterSwapStatus.REQUESTED.value,
        )
    ):
        outcome = verdicts[row.command_id or ""]
        applied = outcome.status.value == "applied"
        METER_SWAP.fire(row, MeterSwapEvent.APPLIED if applied else MeterSwapEvent.REFUSED)
        row.resolved = now
        if applied:
            ownership.swapped(session, row.node, row.old, row.new_address, row.account,
                              row.protocol)  # fmt: skip
