"""Meter swaps: a broken or replaced meter's final register, and the new meter's first.

    request  command meter_swap {swap: S, old, final_wh, meter: {id, protocol, multiplier,
             account, shop}, initial_wh} to the old meter's concentrator       status requested
    edge     bills the old meter up to final_wh (code meter_settle), then the new meter
             from initial_wh; the account's balance stays where it is         status applied
             (or refuses, e.g. final_wh below what it billed)                 status failed

The final register must not be below the last one the cloud holds for the old meter (its
readings and `meters.energy_wh`): energy already billed cannot be unbilled. A dead meter's
final comes from an infrared handheld (`cloud.operations.handheld`): `import_ir` stores the export's
registers and a swap names one (`ir_reading`) instead of `final_wh`. The new meter's
document carries no bus: the concentrator keeps the old meter's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.chains import commands
from cloud.chains.commands import CommandVerdict
from cloud.chains.locks import lock_active
from cloud.db.models import MeterState, Reading, ReportedAccount
from cloud.db.operations import IrReading, MeterSwap
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations import ownership
from cloud.operations.arguments import reference, whole
from cloud.operations.handheld import ADDRESS, IrRegister
from cloud.operations.receipts import Voucher
from cloud.operations.states import METER_SWAP, MeterSwapEvent, MeterSwapStatus
from ledger.chain import NodeKey
from ledger.signed import CommandKind
from ledger.units import MAX_AMOUNT

PROTOCOL = re.compile(r"[a-z0-9_]{1,32}")
MAX_MULTIPLIER = 10_000


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
        existing = session.scalars(
            select(IrReading).where(
                IrReading.address == register.address, IrReading.read_at == register.read_at
            )
        ).one_or_none()
        if existing is not None:
            if existing.energy_wh != register.energy_wh:
                raise Conflict(
                    f"meter {register.address} at {register.read_at.isoformat()} was imported "
                    f"as {existing.energy_wh} Wh, now {register.energy_wh} Wh"
                )
            rows.append(existing)
            continue
        row = IrReading(
            address=register.address, read_at=register.read_at, energy_wh=register.energy_wh,
            source=source[:200], operator=operator, imported=now,
        )  # fmt: skip
        session.add(row)
        session.flush()
        rows.append(row)
        new += 1
    return rows, new


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
    """Send the swap to the old meter's concentrator; `(row, created)`."""
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
        select(MeterSwap)
        .where(MeterSwap.old == old, MeterSwap.status == MeterSwapStatus.REQUESTED.value)
        .limit(1)
    ).first()
    if busy is not None:
        raise Conflict(f"meter {old} has swap {busy.id} still waiting for its concentrator")
    owner = session.get(ReportedAccount, meter.account) if meter.account else None
    document: dict[str, object] = {"id": new_address, "protocol": protocol,
                                   "multiplier": multiplier}  # fmt: skip
    if meter.account:
        document["account"] = meter.account
    if owner is not None and owner.shop:
        document["shop"] = owner.shop
    command = commands.issue(
        session,
        meter.node,
        CommandKind.METER_SWAP,
        {"swap": ref, "old": old, "final_wh": final, "meter": document,
         "initial_wh": initial_wh},
        key=key,
        now=now,
        operator=operator,
    )  # fmt: skip
    row = MeterSwap(
        id=ref, node=meter.node, account=meter.account, shop=owner.shop if owner else "",
        old=old, final_wh=final, ir_reading=ir_id, new_address=new_address, protocol=protocol,
        multiplier=multiplier, initial_wh=initial_wh,
        status=METER_SWAP.start(MeterSwapStatus.REQUESTED), command_id=command.id,
        operator=operator, receipt=None, created=now, resolved=None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, True


def voucher(row: MeterSwap) -> Voucher:
    """What the swap's receipt prints: no money, the two registers."""
    return Voucher(
        kind="meter_swap", ref=row.id, account=row.account, fen=0, method="",
        operator=row.operator, transfer=row.command_id,
        detail={"old_meter": row.old, "final_wh": row.final_wh, "new_meter": row.new_address,
                "initial_wh": row.initial_wh,
                "final_from": "ir" if row.ir_reading else "operator"},
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
        outcome = verdicts[row.command_id]
        applied = outcome.status.value == "applied"
        METER_SWAP.fire(row, MeterSwapEvent.APPLIED if applied else MeterSwapEvent.REFUSED)
        row.resolved = now
        if applied:
            ownership.swapped(session, row.node, row.old, row.new_address, row.account,
                              row.protocol)  # fmt: skip
