"""The demo's operations act: what an operator and finance do from the cloud after the top-up —
a correction of a mistyped recharge, a meter swap with the final register from an infrared
handheld, and a refund to a departing tenant, each with its printed receipt.

Everything goes through the HTTP API while the real concentrator runtime and its MQTT sync
run: each operation is a signed command the concentrator applies once and a transfer (or a
pending one) in its chain, which the cloud sees arrive and settles. `demo.cloud_act` calls
`run_operations` with the clients and a `wait` that keeps the sync going.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from edge.runtime.clock import ManualClock
from edge.runtime.cycle import Runtime

Wait = Callable[[str, Callable[[], bool]], None]
MISTYPED_FEN = 5_000  # the operator typed 200.00 yuan for a 150.00 yuan payment
GRACE_WH = 3_000
GRACE_HOURS = 48
NEW_METER = "209901000001"
IR_EXTRA_WH = 120  # the dead meter counted a little more after its last reading reached us


@dataclass(frozen=True, slots=True)
class Desk:
    """The two people at the cloud (an operator and finance) and the site they work on."""

    operator: httpx.Client
    finance: httpx.Client
    runtime: Runtime
    clock: ManualClock
    wait: Wait


def _json(answer: httpx.Response) -> Any:
    if answer.is_error:
        raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: "
                           f"{answer.status_code} {answer.text}")  # fmt: skip
    return answer.json()


def _receipt(api: httpx.Client, number: str | None) -> None:
    if number is None:
        raise RuntimeError("the operation has no receipt")
    text = api.get(f"/receipts/{number}", params={"format": "txt"})
    text.raise_for_status()
    for line in text.text.splitlines():
        print(f"      │ {line}")


def _status(api: httpx.Client, path: str, *wanted: str) -> Callable[[], bool]:
    return lambda: _json(api.get(path))["status"] in wanted


def run_operations(desk: Desk, owner: str, payment: str) -> None:
    print("\nact 5 — operations from the cloud, each with its receipt")
    recharge_receipt(desk, payment)
    correct_mistyped_recharge(desk, owner, payment)
    swap_dead_meter(desk, owner)
    refund_departing_tenant(desk, owner)


def recharge_receipt(desk: Desk, payment: str) -> None:
    receipt = _json(desk.operator.post(f"/receipts/recharges/{payment}"))
    print(f"  receipt of the top-up (POST /receipts/recharges/{payment}):")
    _receipt(desk.operator, receipt["number"])


def correct_mistyped_recharge(desk: Desk, owner: str, payment: str) -> None:
    body = {"account": owner, "fen": -MISTYPED_FEN, "original": payment,
            "reason": "typed 200.00 for a 150.00 payment / 多录入50元"}  # fmt: skip
    made = _json(desk.operator.post("/corrections", json=body))
    print(f"  correction: {owner} −{MISTYPED_FEN / 100:.2f} yuan, linked to payment {payment} "
          f"(reason given) → {made['status']}")  # fmt: skip
    path = f"/corrections/{made['id']}"
    desk.wait("the correction to be posted", _status(desk.operator, path, "posted"))
    done = _json(desk.operator.get(path))
    print(f"  the concentrator booked it; the cloud posted its pending transfer "
          f"({done['status']}). Receipt:")  # fmt: skip
    _receipt(desk.operator, done["receipt"])


def _a_meter_of_another(desk: Desk, owner: str) -> tuple[str, str, int]:
    for meter in desk.runtime.site.meters:
        billing = desk.runtime.meters[meter.address].billing
        if meter.account and meter.account != owner and billing is not None:
            return meter.address, meter.account, billing.reg_wh
    raise RuntimeError("no billed meter of another tenant to swap")


def swap_dead_meter(desk: Desk, owner: str) -> None:
    address, account, last_wh = _a_meter_of_another(desk, owner)
    final_wh = -(-(last_wh + IR_EXTRA_WH) // 10) * 10  # the handheld shows 0.01 kWh
    read_at = desk.clock.true_now().astimezone(dt.UTC).isoformat()
    kwh = f"{final_wh // 1000}.{final_wh % 1000 // 10:02d}"
    csv = f"address,read_at,energy_kwh\n{address},{read_at},{kwh}\n"
    handheld = {"source": "IR handheld HH-01", "csv": csv}
    imported = _json(desk.operator.post("/meter-swaps/ir-import", json=handheld))
    reading = imported["readings"][0]
    print(f"  meter {address} ({account}) is dead; the installer's IR handheld read "
          f"{final_wh / 1000:.2f} kWh (POST /meter-swaps/ir-import)")  # fmt: skip
    body = {"old": address, "ir_reading": reading["id"], "initial_wh": 0,
            "new": {"address": NEW_METER, "protocol": "dlt645", "multiplier": 1}}  # fmt: skip
    made = _json(desk.operator.post("/meter-swaps", json=body))
    path = f"/meter-swaps/{made['id']}"
    desk.wait("the meter swap to be applied", _status(desk.operator, path, "applied"))
    done = _json(desk.operator.get(path))
    print(f"  swap {address} → {NEW_METER}: the old meter billed to its final register, the new "
          f"one starts at 0 Wh; {account}'s balance stays with the account ({done['status']}). "
          "Receipt:")  # fmt: skip
    _receipt(desk.operator, done["receipt"])
    desk.clock.advance(dt.timedelta(hours=2))
    desk.runtime.run_cycle()
    state = desk.runtime.meters.get(NEW_METER)
    if state is None or state.billing is None:
        raise RuntimeError(f"the new meter {NEW_METER} was not read after the swap")
    print(f"  the concentrator polls {NEW_METER} now (register {state.billing.reg_wh} Wh)")


def _richest_other(desk: Desk, owner: str) -> tuple[str, int]:
    accounts = _json(desk.operator.get("/accounts", params={"limit": 1000}))["items"]
    candidates = [(a["prepaid_fen"], a["account"]) for a in accounts if a["account"] != owner]
    fen, account = max(candidates)
    if fen <= 0:
        raise RuntimeError("no tenant with prepaid money to refund")
    return account, fen


def refund_departing_tenant(desk: Desk, owner: str) -> None:
    account, fen = _richest_other(desk, owner)
    body = {"account": account, "method": "cash", "grace_wh": GRACE_WH,
            "grace_hours": GRACE_HOURS}  # fmt: skip
    made = _json(desk.operator.post("/refunds", json=body))
    print(f"  {account} is leaving: refund of its prepaid (about {fen / 100:.2f} yuan; never its "
          f"subsidy), power kept on for {GRACE_WH / 1000:.0f} kWh / {GRACE_HOURS} h → "
          f"{made['status']}")  # fmt: skip
    path = f"/refunds/{made['id']}"
    desk.wait("the refund to be reserved", _status(desk.operator, path, "reserved"))
    reserved = _json(desk.operator.get(path))
    print(f"  the concentrator reserved {reserved['fen'] / 100:.2f} yuan (a pending transfer) and "
          "issued the grace allowance")  # fmt: skip
    paid = _json(desk.finance.post(f"{path}/pay"))
    print(f"  finance paid it out in cash (POST {path}/pay) → {paid['status']}; the concentrator "
          "posts the pending transfer. Receipt:")  # fmt: skip
    _receipt(desk.finance, paid["receipt"])
