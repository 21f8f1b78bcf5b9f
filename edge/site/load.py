"""Load a whole site: `site.toml` plus the configuration documents, cross-checked.

`load_site(path)` only reads. It raises `SiteConfigError` (one sentence: the file and what is
wrong) for a missing, truncated or corrupt file, a bad value, or a reference to something that
does not exist, before the runtime opens the store or a port: a bad configuration touches
nothing. Simulated meters are checked by the simulator the site finds through
`edge.site.simulation` (an unknown load profile is a bad document like any other).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from edge.site.documents import (
    Document,
    parse_account,
    parse_all,
    parse_meter,
    parse_rules,
    parse_shop,
    parse_tariff,
)
from edge.site.errors import SiteConfigError
from edge.site.model import BusConfig, BusKind, SimulationSettings, Site, SiteSettings
from edge.site.simulation import SimulatorUnavailable, find_simulator
from edge.site.site_file import parse_site_file
from edge.store.config_db import ConfigDB, ConfigKind
from edge.store.errors import CorruptConfig, StoreError


def load_site(path: str | Path) -> Site:
    """The site described by `path` (a site.toml) and the documents it names."""
    site_path = Path(path).absolute()
    settings, buses, simulation = parse_site_file(site_path)
    config_path = settings.config_path
    if not config_path.is_file():
        raise SiteConfigError(
            config_path,
            "the configuration documents do not exist (write them with `voltbook-demo site` "
            "or push them from the cloud)",
        )
    try:
        with ConfigDB.open(config_path) as config:
            docs = {kind: config.documents(kind) for kind in ConfigKind}
    except CorruptConfig as exc:
        raise SiteConfigError(exc.path, exc.detail) from None
    except StoreError as exc:
        raise SiteConfigError(config_path, str(exc)) from None
    return site_of(settings, buses, simulation, docs)


def with_documents(site: Site, docs: Mapping[ConfigKind, Sequence[Document]]) -> Site:
    """`site` (its site.toml part) with these configuration documents instead, parsed and
    checked as at boot; raises `SiteConfigError` (nothing is written either way)."""
    return site_of(site.settings, site.buses, site.simulation, docs)


def site_of(
    settings: SiteSettings,
    buses: tuple[BusConfig, ...],
    simulation: SimulationSettings | None,
    docs: Mapping[ConfigKind, Sequence[Document]],
) -> Site:
    """The site of these settings and documents, checked; a kind not given has no documents."""
    path = settings.config_path

    def of(kind: ConfigKind) -> Sequence[Document]:
        return docs.get(kind, ())

    meters = parse_all(path, "meters", of(ConfigKind.METERS), parse_meter)
    shops = parse_all(path, "shops", of(ConfigKind.SHOPS), parse_shop)
    accounts = parse_all(path, "accounts", of(ConfigKind.ACCOUNTS), parse_account)
    tariffs = parse_all(path, "tariffs", of(ConfigKind.TARIFFS), parse_tariff)
    rules = parse_rules(path, of(ConfigKind.RULES))
    site = Site(
        settings=settings,
        buses=buses,
        simulation=simulation,
        meters=tuple(sorted(meters.values(), key=lambda m: (m.bus, m.address))),
        shops=shops,
        accounts=accounts,
        tariffs=tariffs,
        rules=rules,
    )
    check_references(site)
    return site


def check_references(site: Site) -> None:
    """Every name used is defined, and every meter is on a bus of its own protocol."""
    path = site.settings.config_path
    buses = {bus.name: bus for bus in site.buses}
    seen: set[str] = set()
    # No meters is allowed: a new box waits for its configuration (or the `takeover` of a dead
    # box's accounts, docs/architecture.md §7.6) from the cloud, reading and billing nothing.
    for meter in site.meters:
        who = f"meter {meter.address}"
        if meter.address in seen:
            raise SiteConfigError(path, f"{who} is configured twice")
        seen.add(meter.address)
        bus = buses.get(meter.bus)
        if bus is None:
            raise SiteConfigError(
                path, f"{who} is on bus {meter.bus!r}, which {site.settings.path.name} lacks"
            )
        if bus.protocol != meter.protocol:
            raise SiteConfigError(
                path, f"{who} speaks {meter.protocol} but bus {bus.name!r} runs {bus.protocol}"
            )
        options_on = [b.name for b in site.buses if meter.address in b.meter_options]
        if options_on and options_on != [meter.bus]:
            raise SiteConfigError(
                site.settings.path,
                f"bus {options_on[0]!r} has meter_options for {who}, which is on bus {meter.bus!r}",
            )
        if meter.shop not in site.shops:
            raise SiteConfigError(
                path, f"{who} belongs to shop {meter.shop!r}, which is not defined"
            )
        if meter.account not in site.accounts:
            raise SiteConfigError(
                path, f"{who} bills account {meter.account!r}, which is not defined"
            )
    for account in site.accounts.values():
        name = account.tariff or site.rules.billing.tariff
        if name not in site.tariffs:
            raise SiteConfigError(
                path, f"account {account.id!r} is billed by tariff {name!r}, which is not defined"
            )
    water = site.rules.water
    if water is not None:
        named = {a.water_tariff for a in site.accounts.values() if a.water_tariff is not None}
        for name in sorted({water.tariff} | named):
            if name not in site.tariffs:
                raise SiteConfigError(path, f"water is billed by tariff {name!r}, not defined")
    if site.rules.billing.tariff not in site.tariffs:
        raise SiteConfigError(
            path, f"the billing rule names tariff {site.rules.billing.tariff!r}, not defined"
        )
    check_simulated(site)


def check_simulated(site: Site) -> None:
    """A site with simulated buses has a simulator, and it can simulate every meter on them
    (their load profiles exist): refused here, before anything is opened, not at boot."""
    simulated = {bus.name for bus in site.buses if bus.kind is BusKind.SIMULATED}
    if not simulated:
        return
    try:
        simulator = find_simulator()
    except SimulatorUnavailable as exc:
        name = min(simulated)
        raise SiteConfigError(site.settings.path, f"bus {name!r} is simulated but {exc}") from None
    for meter in site.meters:
        if meter.bus in simulated:
            try:
                simulator.check_meter(meter)
            except ValueError as exc:
                raise SiteConfigError(
                    site.settings.config_path, f"meter {meter.address}: {exc}"
                ) from None
