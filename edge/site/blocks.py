"""`[[blocks]]` in site.toml: reading blocks an administrator defines, checked at load.

    [[blocks]]
    name = "power"                  # a driver's own block: items may be left out
    interval_s = 30

    [[blocks]]
    name = "trips"
    items = ["malicious_load_trips", "overload_trips", "over_voltage_trips"]
    interval_s = 3600
    protocols = ["dlt645"]          # default: every protocol the site's buses run

A block is read from the meters of every bus running one of its protocols, on its own grid
(`interval_s` divides the day, so its points fall on the same times every day and meet the
billing cycle's). Items are names from the drivers' tables (`MeterDriver.items`: DL/T 645 DI
rows such as `active_power_total`, Modbus fields such as `power_w`); each protocol must know
every item. `basic` is the billing read at `poll_interval_s` and cannot be redefined; another
built-in name (`power`, `abnormal_trips`, …) may be, with items.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from edge.drivers.registry import driver_for
from edge.site.errors import SiteConfigError
from edge.site.fields import Fields
from edge.site.model import BILLING_BLOCK, BlockConfig, BusConfig

DAY_S: Final = 86_400
NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _interval(f: Fields) -> dt.timedelta:
    seconds: int = f.integer("interval_s", low=1, high=DAY_S)
    if DAY_S % seconds:
        raise f.problem(
            "interval_s",
            "a whole number of seconds that divides the day (e.g. 10, 15, 30, 60, 300, 900, 3600)",
            seconds,
        )
    return dt.timedelta(seconds=seconds)


def _texts(f: Fields, name: str, default: Sequence[str]) -> tuple[str, ...]:
    raw = f.items(name, None)
    if raw is None:
        return tuple(default)
    if not raw or not all(isinstance(x, str) and x for x in raw):
        raise f.problem(name, "a list of names", raw)
    if len(set(raw)) != len(raw):
        twice = next(x for x in raw if raw.count(x) > 1)
        raise f.problem(name, "a list without repeats", f"{twice!r} twice")
    return tuple(raw)


def _check_items(f: Fields, block: BlockConfig) -> None:
    for proto in block.protocols:
        driver = driver_for(proto)
        if not block.items:
            if block.name not in driver.blocks:
                raise SiteConfigError(
                    f.path,
                    f"{f.where}: {proto} has no block {block.name!r} of its own; list its items",
                )
            continue
        for item in block.items:
            if item not in driver.items:
                near = difflib.get_close_matches(item, sorted(driver.items), n=3)
                hint = f" (did you mean {', '.join(near)}?)" if near else ""
                raise SiteConfigError(f.path, f"{f.where}: {proto} has no item {item!r}{hint}")


def parse_block(path: Path, number: int, raw: object, buses: Sequence[BusConfig]) -> BlockConfig:
    f = Fields(path, f"[[blocks]] #{number}", raw)
    name = f.text("name")
    if not NAME.fullmatch(name):
        raise f.problem("name", "lower-case letters, digits and _ (at most 32)", name)
    f.where = f"block {name!r}"
    if name == BILLING_BLOCK:
        raise SiteConfigError(
            path,
            f"{f.where}: {BILLING_BLOCK!r} is the billing read, at [site] poll_interval_s; "
            "choose another name",
        )
    run = sorted({bus.protocol for bus in buses})
    protocols = _texts(f, "protocols", run)
    for proto in protocols:
        if proto not in run:
            raise f.problem(
                "protocols", f"protocols the site's buses run ({', '.join(run)})", proto
            )
    block = BlockConfig(name, _interval(f), protocols, _texts(f, "items", ()))
    _check_items(f, block)
    f.unknown()
    return block


def parse_blocks(path: Path, raw: object, buses: Sequence[BusConfig]) -> tuple[BlockConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SiteConfigError(path, "[[blocks]] must be an array of tables")
    blocks = tuple(parse_block(path, i, entry, buses) for i, entry in enumerate(raw, 1))
    names = [b.name for b in blocks]
    for name in names:
        if names.count(name) > 1:
            raise SiteConfigError(path, f"two blocks are named {name!r}")
    return blocks
