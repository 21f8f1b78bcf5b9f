"""Read-only views of a running site's store: accounts with balances, relays and alarms.

Opened with `Store.open_readonly` (no writer lock, one read transaction), so `voltbook-edge
accounts` works while `voltbook-edge run` holds the store and shows the state of one commit:
balances come from the book the store rebuilds at open, relay states from the runtime's stored
rule states and the latest readings, alarms from the event table — all of the same snapshot.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from edge.rules.pockets import Pockets
from edge.rules.tariffs import energy_of
from edge.runtime.accounting import supply_seen
from edge.runtime.codec import CodecError, decode
from edge.runtime.state import (
    CLOCK_KEY,
    AccountRuntime,
    ClockState,
    MeterRuntime,
    account_key,
    meter_key,
)
from edge.site.model import Site
from edge.store import Category, CorruptStore, Store

ALARM_WINDOW = dt.timedelta(days=7)
ALARMS_SHOWN = 10


def stored_state(store: Store, key: str, hint: type[Any], default: Any) -> Any:
    raw = store.get_state(key)
    if raw is None:
        return default
    try:
        return decode(hint, raw)
    except CodecError as exc:
        raise CorruptStore(store.path, None, f"rule state {key!r} does not decode ({exc})") from exc


def _meter_view(store: Store, address: str, zone: dt.tzinfo, water: bool) -> dict[str, Any]:
    """One meter; a water meter's registers are litres (`register_l`, `unbilled_l`), its
    `relay` the supply in the relay's sense (a valve closed is `open`) and `valve` as read."""
    state: MeterRuntime = stored_state(store, meter_key(address), MeterRuntime, MeterRuntime())
    latest = store.latest_reading(address)
    seen = None if latest is None else supply_seen(latest.reading)
    billing = state.billing
    unit = "l" if water else "wh"
    view = {
        "address": address,
        "kind": "water" if water else "electric",
        "relay": state.relay.desired.value,
        "relay_seen": None if seen is None else seen.value,
        "held_by": sorted(c.value for c in state.relay.held),
        f"register_{unit}": None if billing is None else billing.reg_wh,
        f"unbilled_{unit}": 0 if billing is None else energy_of(billing.unbilled),
        "last_read": None if latest is None else latest.time.astimezone(zone).isoformat(),
        "read_failures": state.read_failures,
    }
    if water:
        valve = None if latest is None else latest.reading.valve
        view["valve"] = None if valve is None else valve.value
    return view


def accounts_view(site: Site, store: Store) -> list[dict[str, Any]]:
    """One dict per account: id, shop, subsidy_wh, prepaid_fen, water_subsidy_l, relay, meters,
    alarms."""
    clock: ClockState = stored_state(store, CLOCK_KEY, ClockState, ClockState())
    since = None if clock.last_known is None else clock.last_known - ALARM_WINDOW
    alarms_by_account: dict[str, list[dict[str, Any]]] = {}
    for stored in store.events(since=since, category=Category.ALARM):
        event = stored.event
        if event.account is None:
            continue
        alarms_by_account.setdefault(event.account, []).append(
            {
                "time": event.time.astimezone(site.zone).isoformat(),
                "kind": event.kind,
                "meter": event.meter,
                "message": event.detail.get("message", ""),
            }
        )
    out = []
    for owner in sorted(site.accounts):
        account = site.accounts[owner]
        pockets = Pockets.from_book(store.book, owner)
        meters = [
            _meter_view(store, m.address, site.zone, site.is_water(m))
            for m in site.meters_of(owner)
        ]
        state: AccountRuntime = stored_state(
            store, account_key(owner), AccountRuntime, AccountRuntime()
        )
        shop = site.shop_of(owner)
        relays = {m["relay"] for m in meters}
        out.append(
            {
                "id": owner,
                "type": account.type,
                "shop": None if shop is None else shop.id,
                "building": None if shop is None else shop.building,
                "floor": None if shop is None else shop.floor,
                "subsidy_wh": pockets.subsidy_wh,
                "prepaid_fen": pockets.prepaid_fen,
                "grace_wh": pockets.grace_wh,
                "debt_fen": pockets.debt_fen,
                "water_subsidy_l": pockets.water_subsidy_l,
                "credit_limit_fen": account.credit_limit_fen,
                "keep_power": account.keep_power,
                "relay": relays.pop() if len(relays) == 1 else ("mixed" if relays else None),
                "in_arrears": state.arrears.tripped,
                "subsidy_periods": sorted(state.subsidy.issued),
                "water_in_arrears": state.water_arrears.tripped,
                "water_subsidy_periods": sorted(state.water_subsidy.issued),
                "meters": meters,
                "alarms": alarms_by_account.get(owner, [])[-ALARMS_SHOWN:],
            }
        )
    return out


def accounts_table(view: list[dict[str, Any]]) -> str:
    """The view as an aligned text table for a terminal."""
    lines = [
        f"{'account':8} {'shop':12} {'subsidy Wh':>11} {'prepaid fen':>12} {'debt fen':>9} "
        f"{'relay':6} alarms"
    ]
    for row in view:
        kinds = sorted({a["kind"] for a in row["alarms"]})
        lines.append(
            f"{row['id']:8} {row['shop'] or '-':12} {row['subsidy_wh']:>11} "
            f"{row['prepaid_fen']:>12} {row['debt_fen']:>9} {row['relay'] or '-':6} "
            f"{','.join(kinds)}"
        )
    return "\n".join(lines)
