"""`voltbook-demo site`: write a complete simulated site to a directory.

    DIR/site.toml        node, zone, paths, poll interval; one or two simulated DL/T 645 buses,
                         with `lora` > 0 a simulated LoRa radio bus (`radio = "lora"`), and
                         with `water` > 0 a simulated CJ/T 188 bus of water meters
    DIR/config.json      configuration documents: meters, shops (buildings, floors, categories),
                         accounts (types, a keep-power clinic, an overdraft), a time-of-use or
                         flat tariff, and the rules (subsidy, protection windows, arrears at
                         zero with friendly hours, low-balance alarms); with water meters, a
                         tiered water tariff and the `water` and `water_subsidy` rules
    DIR/seed.json        opening prepaid balances, booked once as recharges at the first run
    DIR/node.key         the node's Ed25519 signing key (PEM, mode 0600); node.pub beside it
    DIR/sim/meters.json  the simulated meters' registers, relays and clock

Everything comes from `seed`, so the same arguments write the same site (but a new key).
A few accounts start nearly empty, so that a simulated week shows arrears trips, low-balance
alarms and, after a top-up, closes; night heaters trip the malicious-load protection.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from demo.sim.persist import MeterSpec, SimulatedBuilding
from edge.site.errors import SiteConfigError
from edge.store.config_db import ConfigDB, ConfigKind, atomic_write
from ledger.chain import NodeKey, public_key_pem

ZONE: Final = "Asia/Shanghai"
DEFAULT_START: Final = dt.datetime(2026, 11, 1, 0, 0, tzinfo=ZoneInfo(ZONE))
NODE: Final = "edge-demo-0001"
METERS_PER_BUS: Final = 32  # beyond this a second bus keeps a poll round short
BUILDINGS: Final = ("B1", "B2")
FLOORS: Final = ("1F", "2F", "3F")
# (shop category, account type, load profile), repeated over the shops.
TENANTS: Final = (
    ("retail", "merchant", "shop"),
    ("restaurant", "merchant", "restaurant"),
    ("office", "office", "office"),
    ("retail", "merchant", "night_heater"),
    ("retail", "merchant", "shop"),
    ("clinic", "merchant", "office"),
)

TOU_TARIFF: Final = {
    "id": "commercial_tou",
    "kind": "tou",
    "prices": {"sharp": 13_000, "peak": 11_000, "flat": 8_365, "valley": 4_200},
    "ranges": [
        ["00:00", "07:00", "valley"],
        ["07:00", "08:00", "flat"],
        ["08:00", "11:00", "peak"],
        ["11:00", "18:00", "flat"],
        ["18:00", "19:00", "peak"],
        ["19:00", "21:00", "sharp"],
        ["21:00", "23:00", "peak"],
        ["23:00", "00:00", "valley"],
    ],
}
FLAT_TARIFF: Final = {"id": "commercial_flat", "kind": "flat", "price": 8_365}
# Water by the month's volume: 3.50 CNY/m³ up to 10 m³, then 4.50 (prices per m³, tiers in L).
WATER_TARIFF: Final = {
    "id": "water_tiered",
    "kind": "tiered",
    "tiers": [[10_000, 35_000], [None, 45_000]],
}
WATER_RULES: Final[list[dict[str, Any]]] = [
    {"id": "water", "tariff": "water_tiered", "max_flow_l_h": 2_500},
    {"id": "water_subsidy", "month_end": "clear", "by_type": {"merchant": 1_000}},
]
WATER_BUS: Final = "rs485-water"
WATER_PROFILE: Final = "water_shop"

RULES: Final[list[dict[str, Any]]] = [
    {"id": "billing", "tariff": "commercial_tou", "max_power_w": 11_000, "jump_margin": 1.5},
    {
        "id": "subsidy",
        "issue_day": 1,
        "issue_at": "00:00",
        "month_end": "clear",
        "by_type": {"merchant": 20_000, "office": 30_000},
        "by_category": {"restaurant": 50_000},
    },
    {
        "id": "protection",
        # A resistive heater (2 kW at PF 1.00), whether alone or switched on beside other loads.
        "windows": [{"min_w": 1_900, "max_w": 2_600, "min_pf": 0.98, "max_pf": 1.0}],
        "debounce_readings": 3,
        "overload_w": 10_000,
        "overload_hold_s": 30,
        "over_voltage_v": 264,
        "reclose_after_s": 300,
        "lockout_trips": 3,
        "lockout_window_s": 3_600,
    },
    {
        "id": "arrears",
        "mode": "at_zero",
        "cut_off": "10:00",
        "friendly_hours": [["20:00", "08:00"]],
        "holidays": ["2026-10-01", "2027-01-01"],
    },
    {"id": "low_balance", "alarm_at": "09:00", "below_fen": 2_000, "below_days": 3},
]


@dataclass(frozen=True, slots=True)
class DemoSite:
    directory: Path
    site_toml: Path
    meters: tuple[str, ...]
    accounts: tuple[str, ...]


LORA_BUS: Final = "lora-1"


def _site_toml(
    start: dt.datetime,
    buses: int,
    poll_s: int,
    seed: int,
    *,
    lora: bool,
    water: bool,
    blocks: str | None = None,
) -> str:
    lines = [
        "# A simulated Voltbook site, written by `voltbook-demo site`.",
        "[site]",
        f'node = "{NODE}"',
        'name = "Voltbook demo market"',
        f'zone = "{ZONE}"',
        'data_dir = "data"',
        'config = "config.json"',
        'node_key = "node.key"',
        'seed = "seed.json"',
        f"poll_interval_s = {poll_s}",
        "checkpoint_interval_s = 3600",
        "",
        "[simulation]",
        'state_dir = "sim"',
        f'start = "{start.isoformat()}"',
        f"seed = {seed}",
    ]
    for n in range(1, buses + 1):
        lines += [
            "",
            "[[buses]]",
            f'name = "rs485-{n}"',
            'kind = "simulated"',
            'protocol = "dlt645"',
            "baud = 2400",
            'parity = "E"',
        ]
        if blocks is not None:
            lines.append(f'blocks = "{blocks}"')
    if lora:
        # Its meters answer over the air: the real pyLoRa on the simulator's SX127x stand-in.
        lines += [
            "",
            "[[buses]]",
            f'name = "{LORA_BUS}"',
            'kind = "simulated"',
            'radio = "lora"',
            'protocol = "dlt645"',
            "frequency_hz = 470300000",
            "spreading_factor = 9",
            "bandwidth_hz = 125000",
        ]
    if water:
        lines += ["", "[[buses]]", f'name = "{WATER_BUS}"', 'kind = "simulated"']
        lines += ['protocol = "cjt188"', "baud = 2400", 'parity = "E"']
    return "\n".join(lines) + "\n"


def _check_counts(meters: int, lora: int, water: int = 0) -> None:
    if not 0 <= water <= meters:
        raise ValueError(f"a demo site gives 0..{meters} of its accounts water, not {water}")
    if not 1 <= meters <= 999:
        raise ValueError(f"a demo site has 1..999 meters, got {meters}")
    if not 0 <= lora <= meters:
        raise ValueError(f"a demo site puts 0..{meters} of its meters on LoRa, not {lora}")


def _add_water_meter(
    docs: list[dict[str, Any]], specs: list[MeterSpec], i: int, *, shop: str, owner: str
) -> None:
    """The CJ/T 188 water meter of the `i`th shop: its document and its simulated meter."""
    tap = f"{78330000000001 + i:014d}"
    docs.append({"id": tap, "bus": WATER_BUS, "protocol": "cjt188", "shop": shop,
                 "account": owner, "profile": WATER_PROFILE})  # fmt: skip
    specs.append(MeterSpec(tap, "cjt188", WATER_PROFILE))


def _tariffs_and_rules(
    tariff: str, *, water: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rules = [dict(r) for r in RULES]
    rules[0]["tariff"] = TOU_TARIFF["id"] if tariff == "tou" else FLAT_TARIFF["id"]
    tariffs: list[dict[str, Any]] = [TOU_TARIFF, FLAT_TARIFF]
    if water:
        rules += [dict(r) for r in WATER_RULES]
        tariffs.append(WATER_TARIFF)
    return tariffs, rules


def write_demo_site(
    directory: Path,
    meters: int = 30,
    *,
    seed: int = 7,
    start: dt.datetime = DEFAULT_START,
    tariff: str = "tou",
    poll_interval_s: int = 900,
    profiles: Sequence[str] | None = None,
    lora: int = 0,
    water: int = 0,
    blocks: str | None = None,
) -> DemoSite:
    """Write a new simulated site into `directory` (created; refused if it holds a site).

    `profiles` replaces the tenants' load profiles (round-robin), e.g. the steady ones of
    `demo.sim.persist` for a test whose energy must be cheap to simulate. `lora` meters (the
    last ones) answer over a simulated LoRa radio bus instead of RS-485. The first `water`
    accounts also have a CJ/T 188 water meter (on a bus of their own), billed by volume.
    `blocks` is the RS-485 buses' block capability (`edge.drivers.dlt645_blocks`; the simulated
    meters answer "voltbook-sim", `basic` in one exchange); None reads one DI an exchange.
    """
    _check_counts(meters, lora, water)
    site_toml = directory / "site.toml"
    if site_toml.exists():
        raise SiteConfigError(site_toml, "a site already exists there; choose another --dir")
    if start.tzinfo is None:
        raise ValueError(f"start {start.isoformat()} needs its UTC offset")
    # The instant given, in the site's zone: converted, not relabelled (the simulated meters'
    # clocks are naive local time, so a UTC start would put them 8 h off the site).
    start = start.astimezone(ZoneInfo(ZONE))
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    wired = meters - lora
    buses = 0 if wired == 0 else 1 if wired <= METERS_PER_BUS // 2 else 2
    meter_docs: list[dict[str, Any]] = []
    shop_docs: list[dict[str, Any]] = []
    account_docs: list[dict[str, Any]] = []
    specs: list[MeterSpec] = []
    seeds: list[dict[str, Any]] = []
    for i in range(meters):
        building = BUILDINGS[i % len(BUILDINGS)]
        floor = FLOORS[(i // len(BUILDINGS)) % len(FLOORS)]
        category, account_type, profile = TENANTS[i % len(TENANTS)]
        if profiles:
            profile = profiles[i % len(profiles)]
        shop = f"{building}-{floor}-{i + 1:03d}"
        owner = f"A{i + 1:04d}"
        address = f"{202611000001 + i:012d}"
        bus = LORA_BUS if i >= wired else f"rs485-{1 + i % buses}"
        shop_docs.append(
            {"id": shop, "building": building, "floor": floor, "category": category,
             "area_m2": float(rng.randrange(15, 120))}
        )  # fmt: skip
        account: dict[str, Any] = {"id": owner, "type": account_type}
        if category == "clinic":
            account["keep_power"] = True  # a clinic is never cut off for arrears
        if i % 10 == 7:
            account["credit_limit_fen"] = 5_000  # an overdraft of 50 yuan
        account_docs.append(account)
        meter_docs.append(
            {"id": address, "bus": bus, "protocol": "dlt645", "shop": shop, "account": owner,
             "multiplier": 1, "profile": profile}
        )  # fmt: skip
        specs.append(MeterSpec(address, "dlt645", profile, rng.randrange(10**8, 5 * 10**9)))
        if i < water:
            _add_water_meter(meter_docs, specs, i, shop=shop, owner=owner)
        # Most tenants start with 100-500 yuan; every fifth with 3 yuan, to run out quickly.
        opening = 300 if i % 5 == 3 else rng.randrange(100, 500) * 100
        seeds.append({"account": owner, "fen": opening, "payment": f"seed-{owner}"})
    tariffs, rules = _tariffs_and_rules(tariff, water=water > 0)
    with ConfigDB.open(directory / "config.json") as config:
        config.replace_all(
            {
                ConfigKind.METERS: meter_docs,
                ConfigKind.SHOPS: shop_docs,
                ConfigKind.ACCOUNTS: account_docs,
                ConfigKind.TARIFFS: tariffs,
                ConfigKind.RULES: rules,
            }
        )
    seed_text = json.dumps({"recharges": seeds}, indent=1)
    atomic_write(directory / "seed.json", seed_text.encode())
    key = NodeKey.generate()
    _write_secret(directory / "node.key", key.private_pem())
    atomic_write(directory / "node.pub", public_key_pem(key.public_key))
    SimulatedBuilding.create(directory / "sim", specs, start=start, seed=seed)
    atomic_write(
        site_toml,
        _site_toml(
            start, buses, poll_interval_s, seed, lora=lora > 0, water=water > 0, blocks=blocks
        ).encode(),
    )
    return DemoSite(
        directory,
        site_toml,
        tuple(str(m["id"]) for m in meter_docs),
        tuple(str(a["id"]) for a in account_docs),
    )


def _write_secret(path: Path, data: bytes) -> None:
    """A new file only its owner can read, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
