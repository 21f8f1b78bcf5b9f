"""The site as the runtime sees it: typed, frozen, validated values.

`site.toml` (edited by hand on the concentrator) gives the node, where things live and the
buses; the configuration documents (tinydb, pushed by the cloud or written by `voltbook-demo
site`) give meters, shops, accounts, tariffs and the rules' policies.
`edge.site.load.load_site` reads both into one `Site`, checking every reference (a meter's bus,
shop and account; an account's tariff), so the runtime never discovers a dangling name in the
middle of a billing cycle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.drivers.base import MeterDriver, SerialSettings
from edge.drivers.dlt645_meter import Dlt645Driver
from edge.drivers.dlt645_requests import PLAINTEXT_LEVEL
from edge.drivers.dlt645_vendor import MaliciousLoadMap, malicious_load_map
from edge.drivers.lora import RadioConfig
from edge.drivers.registry import NO_OPTIONS, DriverOptions, driver_for, protocol
from edge.rules.arrears import ArrearsPolicy
from edge.rules.commodities import ENERGY, WATER
from edge.rules.consumption import ConsumptionPolicy
from edge.rules.low_balance import LowBalancePolicy, Place
from edge.rules.protection import ProtectionPolicy
from edge.rules.subsidy import SubsidyPolicy
from edge.rules.tariffs import Tariff, reference_price
from ledger.accounts import Account, Pocket, pocket_id
from ledger.units import Price

STORE_FILE = "edge.sqlite"


class BusKind(StrEnum):
    SIMULATED = "simulated"  # meters simulated by the runtime itself (demo, tests, benches)
    SERIAL = "serial"  # an RS-485 port
    LORA = "lora"  # an SX127x radio on SPI (Raspberry Pi)


# What a `simulated` bus may put between the concentrator and its meters (`radio = "lora"`):
# the simulator serves it with its SX127x stand-in under the real pyLoRa, on a lossy medium.
SIMULATED_RADIOS: tuple[str, ...] = ("lora",)


Parity = Literal["E", "N", "O"]


@dataclass(frozen=True, slots=True)
class BusConfig:
    name: str
    kind: BusKind
    protocol: str
    port: str | None = None  # serial only
    baud: int | None = None
    parity: Parity | None = None
    frequency_hz: int | None = None  # lora (or a simulated radio) only
    spreading_factor: int | None = None
    bandwidth_hz: int | None = None
    radio: str | None = None  # simulated only: "lora" puts its meters behind a LoRa radio
    options: DriverOptions = NO_OPTIONS  # the meters' driver options (relay variant, DI order…)
    meter_options: Mapping[str, DriverOptions] = field(default_factory=dict)  # by address
    # DL/T 645 only: the credentials of writes (14) and relay commands (1C) to its meters.
    password_level: int = PLAINTEXT_LEVEL
    password: int = 0  # 3 bytes, as written on the meter's documents: "123456" → 0x123456
    operator_code: int = 0  # 4 bytes (2007 only)

    def driver(self) -> MeterDriver:
        """This bus's driver: its protocol at its line settings, with its meters' options and
        (DL/T 645) its credentials."""
        made = driver_for(self.protocol, self.settings(), self.options, self.meter_options)
        if isinstance(made, Dlt645Driver):
            return replace(
                made,
                password_level=self.password_level,
                password=self.password,
                operator=self.operator_code,
            )
        return made

    def settings(self) -> SerialSettings:
        base = protocol(self.protocol).default_settings
        return SerialSettings(
            baudrate=self.baud or base.baudrate,
            parity=self.parity or base.parity,
            bytesize=base.bytesize,
            stopbits=base.stopbits,
        )

    def radio_config(self) -> RadioConfig:
        """The LoRa channel and modulation of a radio bus (real or simulated), unvalidated."""
        base = RadioConfig()
        return RadioConfig(
            frequency_hz=self.frequency_hz or base.frequency_hz,
            sf=self.spreading_factor or base.sf,
            bw_hz=self.bandwidth_hz or base.bw_hz,
        )


BILLING_BLOCK = "basic"  # the block every poll cycle reads and bills, at the poll interval


@dataclass(frozen=True, slots=True)
class BlockConfig:
    """`[[blocks]]`: a reading block the runtime polls at its own interval (site.toml).

    `items` are names from the drivers' tables (`MeterDriver.items`); () means the drivers'
    own block of that name (e.g. `power`). It is read from the meters of the buses running
    one of `protocols`.
    """

    name: str
    interval: dt.timedelta
    protocols: tuple[str, ...]
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """Where simulated meters keep their registers, relays and clock, and how they start."""

    state_dir: Path
    start: dt.datetime | None  # the simulated clock's first value (None: the wall clock)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The concentrator's TLS identity: the CA to trust, its client certificate and key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """`[cloud]`: where the MQTT broker is, whom to trust, and how hard to push the link."""

    host: str
    port: int
    tls: TlsFiles | None  # None: plain TCP (tests, a demo on one machine)
    cloud_keys: Mapping[str, Ed25519PublicKey]  # key id → the cloud's public key(s)
    keepalive_s: int = 60
    batch_bytes: int = 32 * 1024  # compressed payload of one uplink batch, at most
    batch_items: int = 2000  # outbox items per batch, at most
    window: int = 4  # batches sent and not yet acknowledged, at most
    ack_timeout_s: float = 60.0  # resend from the last acknowledged item after this
    rate_bytes_s: int = 4096  # uplink pacing (0: unpaced)
    priority_alarms: int = 16  # newest alarms carried ahead of a backlog, per batch
    tick_s: float = 0.5  # how often the runtime thread handles the link


@dataclass(frozen=True, slots=True)
class SiteSettings:
    path: Path  # the site.toml itself
    node: str
    name: str
    zone: ZoneInfo
    data_dir: Path
    config_path: Path  # the configuration documents (tinydb)
    node_key: Path
    seed_file: Path | None
    poll_interval: dt.timedelta
    checkpoint_interval: dt.timedelta
    prune_interval: dt.timedelta
    keep_readings: dt.timedelta
    keep_events: dt.timedelta
    store_limit_bytes: int | None
    watchdog: bool = True
    # Entries and readings the cloud acknowledged leave the store once older than this
    # (`edge.runtime.retention`); `keep_readings` still bounds readings never acknowledged.
    keep_synced: dt.timedelta = dt.timedelta(days=2)
    cloud: CloudSettings | None = None  # None: run offline (no [cloud] in site.toml)
    read_success_min: float = 0.9  # a bus reading fewer of its meters in a round is alarmed
    blocks: tuple[BlockConfig, ...] = ()  # `[[blocks]]`: polled besides the billing read
    # `[status] listen = "HOST:PORT"`: the read-only status page on the LAN (None: off).
    status_listen: tuple[str, int] | None = None
    # `[metrics] listen = "HOST:PORT"`: `run`'s Prometheus endpoint (None: off; edge/metrics.py).
    metrics_listen: tuple[str, int] | None = None
    # `backup_dir`: a folder on a second medium the store is copied to (edge.store.backup), every
    # `backup_interval` (None: no backup).
    backup_dir: Path | None = None
    backup_interval: dt.timedelta = dt.timedelta(hours=1)

    @property
    def store_path(self) -> Path:
        return self.data_dir / STORE_FILE


@dataclass(frozen=True, slots=True)
class MeterConfig:
    address: str  # normalised for its protocol (DL/T 645: 12 digits)
    bus: str
    protocol: str
    shop: str
    account: str
    multiplier: int = 1  # current-transformer ratio: registers and power are scaled by it
    max_power_w: float | None = None  # breaker rating × voltage (None: the billing rule's)
    profile: str | None = None  # simulated meters only: the load profile behind them
    model: str | None = None  # the meter's model: selects its vendor maps (dlt645_vendor)

    @property
    def malicious_load_map(self) -> MaliciousLoadMap | None:
        """Where this meter keeps a malicious-load window it judges itself (None: it has none,
        and only the concentrator's rule judges it)."""
        return malicious_load_map(self.model) if self.protocol == "dlt645" else None


@dataclass(frozen=True, slots=True)
class ShopConfig:
    id: str
    building: str
    floor: str
    category: str
    area_m2: float | None = None


@dataclass(frozen=True, slots=True)
class AccountConfig:
    id: str
    type: str
    credit_limit_fen: int = 0
    keep_power: bool = False
    tariff: str | None = None  # None: the billing rule's tariff
    water_tariff: str | None = None  # None: the water rule's tariff
    arriving: str | None = None  # the move bringing the tenant here: no subsidy before its move_in

    def ledger_accounts(self) -> list[Account]:
        """The account's pockets with their floors (the credit limit on prepaid)."""
        return [
            Account.for_id(pocket_id(self.id, Pocket.PREPAID), self.credit_limit_fen),
            Account.for_id(pocket_id(self.id, Pocket.SUBSIDY)),
            Account.for_id(pocket_id(self.id, Pocket.GRACE)),
            Account.for_id(pocket_id(self.id, Pocket.DEBT)),
            Account.for_id(pocket_id(self.id, Pocket.WATER_SUBSIDY)),
        ]


@dataclass(frozen=True, slots=True)
class BillingRules:
    tariff: str
    max_power_w: float
    jump_margin: float = 1.5


@dataclass(frozen=True, slots=True)
class WaterRules:
    """How water meters are billed: the tariff (price per m³, tiers in litres) and the most a
    meter's pipe passes, for the plausibility of its register."""

    tariff: str
    max_flow_l_h: float = 2500.0  # DN15's permanent flow rate Q3, 2.5 m³/h
    jump_margin: float = 1.5


@dataclass(frozen=True, slots=True)
class Rules:
    billing: BillingRules
    subsidy: SubsidyPolicy
    protection: ProtectionPolicy
    arrears: ArrearsPolicy
    low_balance: LowBalancePolicy
    water: WaterRules | None = None  # None: water meters are read, not billed
    water_subsidy: SubsidyPolicy | None = None  # litres; None: no free water


@dataclass(frozen=True, slots=True)
class Site:
    settings: SiteSettings
    buses: tuple[BusConfig, ...]
    simulation: SimulationSettings | None
    meters: tuple[MeterConfig, ...]
    shops: Mapping[str, ShopConfig]
    accounts: Mapping[str, AccountConfig]
    tariffs: Mapping[str, Tariff]
    rules: Rules
    # Indexes over `meters`, built once: the runtime asks these for every meter every cycle.
    _by_address: Mapping[str, MeterConfig] = field(init=False, repr=False, compare=False)
    _by_account: Mapping[str, tuple[MeterConfig, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_account: dict[str, list[MeterConfig]] = {}
        for m in self.meters:
            by_account.setdefault(m.account, []).append(m)
        object.__setattr__(self, "_by_address", {m.address: m for m in self.meters})
        object.__setattr__(self, "_by_account", {a: tuple(ms) for a, ms in by_account.items()})

    @property
    def zone(self) -> ZoneInfo:
        return self.settings.zone

    def meters_of(self, account: str) -> tuple[MeterConfig, ...]:
        return self._by_account.get(account, ())

    def meter(self, address: str) -> MeterConfig:
        return self._by_address[address]

    def tariff_of(self, account: str) -> Tariff:
        name = self.accounts[account].tariff or self.rules.billing.tariff
        return self.tariffs[name]

    def is_water(self, meter: MeterConfig) -> bool:
        return protocol(meter.protocol).kind == "water"

    def water_tariff_of(self, account: str) -> Tariff | None:
        water = self.rules.water
        if water is None:
            return None
        return self.tariffs[self.accounts[account].water_tariff or water.tariff]

    def water_price(self, account: str) -> Price | None:
        """The reference price of the account's water, if it has a billed water meter."""
        tariff = self.water_tariff_of(account)
        if tariff is None or not any(self.is_water(m) for m in self.meters_of(account)):
            return None
        return reference_price(tariff)

    def consumption_policy(self, meter: MeterConfig) -> ConsumptionPolicy | None:
        """How the meter is billed; None for a water meter when the site bills no water."""
        if self.is_water(meter):
            water = self.rules.water
            tariff = self.water_tariff_of(meter.account)
            if water is None or tariff is None:
                return None
            return ConsumptionPolicy(
                tariff=tariff,
                max_power_w=water.max_flow_l_h,
                jump_margin=water.jump_margin,
                commodity=WATER,
            )
        billing = self.rules.billing
        return ConsumptionPolicy(
            tariff=self.tariff_of(meter.account),
            max_power_w=meter.max_power_w or billing.max_power_w,
            jump_margin=billing.jump_margin,
            commodity=ENERGY,
        )

    def consumption_policies(self) -> dict[str, ConsumptionPolicy]:
        """The policy of every meter billed, by address (a water meter is not, without the
        `water` rules)."""
        return {
            m.address: policy
            for m in self.meters
            if (policy := self.consumption_policy(m)) is not None
        }

    def shop_of(self, account: str) -> ShopConfig | None:
        """The shop of the account's first meter (an account's meters share a shop)."""
        meters = self.meters_of(account)
        return self.shops.get(meters[0].shop) if meters else None

    def place(self, account: str) -> Place:
        shop = self.shop_of(account)
        if shop is None:
            return Place("-", "-", "-")
        return Place(shop.building, shop.floor, shop.id)

    def ledger_accounts(self) -> list[Account]:
        return [a for account in self.accounts.values() for a in account.ledger_accounts()]

    def blocks_of(self, bus: BusConfig) -> dict[str, tuple[str, ...]]:
        """The site-defined blocks a bus's driver must learn (name → items)."""
        return {
            b.name: b.items for b in self.settings.blocks if b.items and bus.protocol in b.protocols
        }

    @property
    def simulated(self) -> bool:
        """True when every bus is simulated (the only case `--speed` is allowed)."""
        return all(bus.kind is BusKind.SIMULATED for bus in self.buses)
