"""The box's own status, from its store alone: what an installer needs on site with no cloud.

`site_status(site, store)` reads one snapshot of the runtime's store (`Store.open_readonly`: no
writer lock, nothing written, so a running runtime is not disturbed) and returns, per bus and
meter, the last reading, the read success of the last day, the errors, the relay as wanted and
as seen, and for the box the clock, the sync position, the outbox backlog and the alarms.
`voltbook-edge status` prints it (`edge/cli_status.py`); `edge/status_page.py` serves it on
the LAN when `[status] listen` is set.

Read success of a bus is the sum of its `read_round` events (`edge.runtime.read_success`) in
`WINDOW` before the last known time; a meter's is its stored readings over the rounds in that
window. Alarms: the conditions still raised (`rt:raised`: buses down, buses reading too
little, coarse registers; meters unread or whose relay keeps failing, from their states) and
the alarm events of that window, newest last.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from edge.drivers.reading import Reading
from edge.runtime.accounting import supply_seen
from edge.runtime.events import RuntimeKind
from edge.runtime.reconfigure import CONFIG_KEY
from edge.runtime.state import (
    CLOCK_KEY,
    RAISED_KEY,
    ClockState,
    MeterRuntime,
    RaisedAlarms,
    meter_key,
)
from edge.runtime.view import stored_state
from edge.site.model import Site
from edge.store import Category, Store
from edge.sync.commands import COMMAND_SEQ_KEY

WINDOW: Final = dt.timedelta(hours=24)
ALARMS_SHOWN: Final = 20


def _when(moment: dt.datetime | None, site: Site) -> str | None:
    return None if moment is None else moment.astimezone(site.zone).isoformat()


def _rate(read: int, tried: int) -> float | None:
    return None if tried == 0 else round(read / tried, 4)


def window_start(clock: ClockState) -> dt.datetime | None:
    """The start of the read success window: `WINDOW` before the last known time."""
    return None if clock.last_known is None else clock.last_known - WINDOW


def read_rounds(
    store: Store, since: dt.datetime | None
) -> tuple[int, dict[str, int], dict[str, int]]:
    """The read rounds since `since`: how many, and per bus the meters tried and read."""
    rounds = 0
    tried: dict[str, int] = {}
    read: dict[str, int] = {}
    for stored in store.events(since=since, category=Category.EVENT):
        if stored.event.kind != RuntimeKind.READ_ROUND.value:
            continue
        rounds += 1
        for bus in stored.event.detail.get("buses", []):  # type: ignore[attr-defined]
            tried[bus["bus"]] = tried.get(bus["bus"], 0) + int(bus["attempted"])
            read[bus["bus"]] = read.get(bus["bus"], 0) + int(bus["read"])
    return rounds, tried, read


def site_status(site: Site, store: Store) -> dict[str, Any]:
    """The status document (JSON-ready) of `site` as its store holds it."""
    clock: ClockState = stored_state(store, CLOCK_KEY, ClockState, ClockState())
    raised: RaisedAlarms = stored_state(store, RAISED_KEY, RaisedAlarms, RaisedAlarms())
    since = window_start(clock)
    rounds, tried, read = read_rounds(store, since)
    meters_alarmed: list[dict[str, Any]] = []
    buses = []
    for config in site.buses:
        meters = []
        for m in (m for m in site.meters if m.bus == config.name):
            meter = _meter(site, store, m.address, since, rounds)
            meter.update(shop=m.shop, account=m.account, protocol=m.protocol)
            meters.append(meter)
            if meter["read_failures"]:
                meters_alarmed.append(
                    {"kind": "meter_unreadable", "meter": m.address, "detail": meter["last_error"]}
                )
            if meter["relay_failures"]:
                meters_alarmed.append(
                    {"kind": "relay_failed", "meter": m.address, "detail": meter["relay_wanted"]}
                )
        buses.append(
            {
                "bus": config.name,
                "kind": config.kind.value,
                "protocol": config.protocol,
                "port": config.port,
                "down": raised.buses_down.get(config.name),
                "read_success_low": config.name in raised.low_read_buses,
                "reads": read.get(config.name, 0),
                "reads_tried": tried.get(config.name, 0),
                "read_success": _rate(read.get(config.name, 0), tried.get(config.name, 0)),
                "meters": meters,
            }
        )
    acked, _ = store.acknowledged()
    config = store.get_state(CONFIG_KEY)
    open_alarms = [
        *({"kind": "bus_down", "bus": b, "detail": why} for b, why in raised.buses_down.items()),
        *({"kind": "read_success_low", "bus": b, "detail": ""} for b in raised.low_read_buses),
        *({"kind": "energy_quantisation", "meter": a, "detail": ""} for a in raised.coarse_meters),
        *meters_alarmed,
    ]
    recent = [
        {
            "time": _when(s.event.time, site),
            "kind": s.event.kind,
            "meter": s.event.meter,
            "account": s.event.account,
            "message": s.event.detail.get("message", ""),
        }
        for s in store.events(since=since, category=Category.ALARM)
    ][-ALARMS_SHOWN:]
    return {
        "node": site.settings.node,
        "site": site.settings.name,
        "window_h": int(WINDOW.total_seconds() // 3600),
        "rounds": rounds,
        "clock": {
            "last_known": _when(clock.last_known, site),
            "held": clock.held_since is not None,
            "held_since": _when(clock.held_since, site),
            "cycles": clock.cycles,
        },
        "sync": {
            "cloud": None if site.settings.cloud is None else site.settings.cloud.host,
            "chain_seq": store.chain.seq,
            "acknowledged_seq": acked,
            "unacknowledged": store.chain.seq - acked,
            "not_checkpointed": store.not_checkpointed(),
            "outbox": store.outbox_size(),
            "config_version": None if config is None else config.get("version"),
            "commands_applied": store.get_state(COMMAND_SEQ_KEY, 0),
        },
        "buses": buses,
        "open_alarms": open_alarms,
        "recent_alarms": recent,
    }


def _meter(
    site: Site, store: Store, address: str, since: dt.datetime | None, rounds: int
) -> dict[str, Any]:
    state: MeterRuntime = stored_state(store, meter_key(address), MeterRuntime, MeterRuntime())
    latest = store.latest_reading(address)
    readings = len(store.readings(address, since=since))
    reading = None if latest is None else latest.reading
    seen = None if reading is None else supply_seen(reading)  # a valve in the relay's sense
    return {
        "address": address,
        "last_read": None if latest is None else _when(latest.time, site),
        "register": None if reading is None else _register(reading),
        "readings": readings,
        "read_success": _rate(min(readings, rounds), rounds),
        "read_failures": state.read_failures,
        "last_error": state.last_error,
        "relay_seen": None if seen is None else seen.value,
        "relay_wanted": state.relay.desired.value,
        "held_by": sorted(c.value for c in state.relay.held),
        "relay_failures": state.relay.failures,
        "relay_failing_since": _when(state.relay.failing_since, site),
    }


def _register(reading: Reading) -> int | None:
    return reading.volume_l if reading.energy_wh is None else reading.energy_wh


def status_text(status: dict[str, Any]) -> str:
    """The status as lines for a terminal."""
    clock, sync = status["clock"], status["sync"]
    lines = [
        f"node {status['node']} — {status['site']}",
        f"clock   last known {clock['last_known'] or '-'}"
        + (f", HELD since {clock['held_since']}" if clock["held"] else ", plausible")
        + f", {clock['cycles']} cycles",
        f"sync    chain seq {sync['chain_seq']}, acknowledged {sync['acknowledged_seq']} "
        f"({sync['unacknowledged']} to send), outbox {sync['outbox']}, "
        f"cloud {sync['cloud'] or 'none (offline site)'}",
    ]
    for bus in status["buses"]:
        rate = "-" if bus["read_success"] is None else f"{bus['read_success']:.1%}"
        state = f"DOWN ({bus['down']})" if bus["down"] else "up"
        lines.append(
            f"bus {bus['bus']} ({bus['protocol']}, {bus['port'] or bus['kind']}): {state}, "
            f"read {bus['reads']}/{bus['reads_tried']} ({rate}) in {status['window_h']} h"
        )
        for m in bus["meters"]:
            rate = "-" if m["read_success"] is None else f"{m['read_success']:.0%}"
            relay = m["relay_seen"] or "-"
            if m["relay_seen"] is not None and m["relay_seen"] != m["relay_wanted"]:
                relay += f" (wanted {m['relay_wanted']})"
            lines.append(
                f"  {m['address']:>14} last {m['last_read'] or 'never'}  reg {m['register']}"
                f"  ok {rate}  relay {relay}"
                + (f"  ERR x{m['read_failures']}: {m['last_error']}" if m["read_failures"] else "")
            )
    lines.append(f"open alarms: {len(status['open_alarms'])}")
    for alarm in status["open_alarms"]:
        lines.append(
            f"  {alarm['kind']} {alarm.get('bus') or alarm.get('meter')} {alarm['detail']}"
        )
    lines.append(f"alarms in the last {status['window_h']} h: {len(status['recent_alarms'])}")
    for alarm in status["recent_alarms"]:
        lines.append(f"  {alarm['time']} {alarm['kind']} {alarm['meter'] or ''} {alarm['message']}")
    return "\n".join(lines)
