"""An installer's time: `voltbook-edge clock set`, the local way to release a held clock.

A site with no meter clocks and no network has nobody to corroborate its clock: booted at
2038, it holds subsidies, month end and cut-offs (`edge.rules.clock_check`) until someone says
what time it is. The cloud does it with a signed `time` command; on site, an installer does it
with `clock set --time ISO8601-with-offset --note WHY`, with the runtime stopped:

- the command takes the store's writer lock like the runtime does, so it is refused while
  `run` holds the store (stop the service, set the clock, start it again): one writer, and
  the runtime reads the record at boot, where its clock guard starts;
- in one transaction it records the installer's time as the last known time, an
  `InstallerTime` (the time, the monotonic count and boot id it was given at, what the system
  clock said, the note) and an operator event `clock_set` with the note;
- at boot in the same boot of the box (the monotonic count goes on across processes), the
  guard trusts that time carried forward by the monotonic count, as it trusts the cloud's,
  until the system clock agrees with it; after a reboot only the last known time remains, and a
  system clock far from it is held again (fix the system clock, or set it again).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from edge.runtime.clock import Clock, ClockGuard
from edge.runtime.events import RuntimeKind, runtime_event
from edge.runtime.state import CLOCK_KEY, ClockState, StateTable
from edge.site.model import Site
from edge.store import Store

INSTALLER_TIME_KEY = "rt:clock:installer"


@dataclass(frozen=True, slots=True)
class InstallerTime:
    time: dt.datetime  # what the installer said it was (in the site's zone)
    monotonic: float  # the clock's monotonic count then
    boot: str  # the boot that count belongs to
    system: dt.datetime  # what the system clock said then
    note: str


def set_installer_time(site: Site, moment: dt.datetime, note: str, clock: Clock) -> InstallerTime:
    """Record `moment` (aware) as the trusted time now; `StoreBusy` while `run` holds the store."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no UTC offset")
    record = InstallerTime(
        time=moment.astimezone(site.zone),
        monotonic=clock.monotonic(),
        boot=clock.boot,
        system=clock.system_now().astimezone(site.zone),
        note=note,
    )
    from edge.runtime.boot import node_public_key  # boot imports this module

    with Store.open(
        site.settings.store_path,
        node=site.settings.node,
        accounts=site.ledger_accounts(),
        size_limit_bytes=site.settings.store_limit_bytes,
        public_key=node_public_key(site),
    ) as store:
        table = StateTable(store)
        state = table.load(CLOCK_KEY, ClockState, ClockState())
        event = runtime_event(
            site,
            record.time,
            RuntimeKind.CLOCK_SET,
            f"installer set the time to {record.time.isoformat()}: {note}",
            detail={
                "note": note,
                "time": record.time.isoformat(),
                "system": record.system.isoformat(),
                "previous": None if state.last_known is None else state.last_known.isoformat(),
            },
        )
        table.begin()
        with store.transaction() as tx:
            table.save(tx, CLOCK_KEY, dataclasses.replace(state, last_known=record.time))
            table.save(tx, INSTALLER_TIME_KEY, record)
            tx.add_events([event])
        table.committed()
    return record


def trust_installer_time(guard: ClockGuard, table: StateTable) -> InstallerTime | None:
    """Give the guard the installer's time if it was set in this boot of the box."""
    record = table.find(INSTALLER_TIME_KEY, InstallerTime)
    clock = guard.clock
    if record is None or not record.boot or record.boot != clock.boot:
        return None
    if clock.monotonic() < record.monotonic:
        return None  # not the same count after all
    guard.installer_time(record.time, record.monotonic, record.note)
    return record
