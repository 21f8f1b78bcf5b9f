"""The site configuration: typed and checked; a damaged or wrong one refuses to start, saying
which file and what is wrong in one sentence, and touching nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from demo.site import DemoSite
from edge.drivers.dlt645_meter import DLT645_2007, Dlt645Driver
from edge.drivers.dlt645_vendor import MALICIOUS_LOAD_MAPS, SIMULATED_MODEL
from edge.rules.arrears import ArrearsMode
from edge.rules.subsidy import MonthEnd
from edge.rules.tariffs import FlatTariff, TouTariff
from edge.site import SiteConfigError, load_site
from edge.site.model import BusKind
from edge.store.config_db import ConfigDB, ConfigKind
from tests.edge.runtime.conftest import cli, snapshot


def test_the_demo_site_loads_into_typed_values(small_site: DemoSite) -> None:
    site = load_site(small_site.site_toml)
    assert site.settings.node == "edge-demo-0001"
    assert str(site.zone) == "Asia/Shanghai"
    assert site.settings.poll_interval == dt.timedelta(minutes=15)
    assert [b.kind for b in site.buses] == [BusKind.SIMULATED]
    assert len(site.meters) == 8 and len(site.accounts) == 8
    assert isinstance(site.tariff_of("A0001"), FlatTariff)
    assert isinstance(site.tariffs["commercial_tou"], TouTariff)
    assert site.rules.subsidy.month_end is MonthEnd.CLEAR
    assert site.rules.arrears.mode is ArrearsMode.AT_ZERO
    assert site.rules.protection.windows[0].min_w == 1_900
    assert site.accounts["A0006"].keep_power  # the clinic
    assert site.simulation is not None and site.simulation.state_dir.is_dir()


def _cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


Damage = Callable[[DemoSite], None]

DAMAGES: list[tuple[str, Damage, str, str]] = [
    (
        "truncated toml",
        lambda s: _cut(s.site_toml, 0.5),
        "site.toml",
        "",
    ),
    ("garbage toml", lambda s: s.site_toml.write_bytes(b"[site\nnode = \x00"), "site.toml", "TOML"),
    ("empty toml", lambda s: s.site_toml.write_bytes(b""), "site.toml", "empty"),
    (
        "truncated documents",
        lambda s: _cut(s.directory / "config.json", 0.6),
        "config.json",
        "not valid JSON",
    ),
    (
        "misspelt field",
        lambda s: s.site_toml.write_text(
            s.site_toml.read_text().replace("poll_interval_s", "poll_intervall_s")
        ),
        "site.toml",
        "unknown field 'poll_intervall_s'",
    ),
    (
        "bad zone",
        lambda s: s.site_toml.write_text(
            s.site_toml.read_text().replace("Asia/Shanghai", "Mars/Olympus")
        ),
        "site.toml",
        "zone",
    ),
    (
        "unknown bus",
        lambda s: _put(s, ConfigKind.METERS, "202611000001", bus="rs485-9"),
        "config.json",
        "bus 'rs485-9'",
    ),
    (
        "unknown account",
        lambda s: _put(s, ConfigKind.METERS, "202611000001", account="Z9999"),
        "config.json",
        "account 'Z9999'",
    ),
    (
        "bad price",
        lambda s: _put(s, ConfigKind.TARIFFS, "commercial_flat", price=0.8365),
        "config.json",
        "price",
    ),
    (
        "time of use with a gap",
        lambda s: _put(
            s, ConfigKind.TARIFFS, "commercial_tou", ranges=[["00:00", "07:00", "valley"]]
        ),
        "config.json",
        "do not reach the end of the day",
    ),
    (
        "short password",
        lambda s: _bus_field(s, 'password = "12345"'),
        "site.toml",
        "password must be 6 hex digits in quotes",
    ),
    (
        "password as a number",
        lambda s: _bus_field(s, "password = 123456"),
        "site.toml",
        "password must be 6 hex digits in quotes",
    ),
    (
        "bad password level",
        lambda s: _bus_field(s, 'password_level = "2"'),
        "site.toml",
        "password_level must be 2 hex digits",
    ),
    (
        "credentials on a Modbus bus",
        lambda s: _bus_field(s, 'operator_code = "00000001"', protocol="sdm120"),
        "site.toml",
        "credentials are for DL/T 645 buses only",
    ),
    (
        "operator code on DL/T 645-1997",
        lambda s: _bus_field(s, 'operator_code = "00000001"', protocol="dlt645-1997"),
        "site.toml",
        "DL/T 645-1997 has no operator code",
    ),
    (
        "unknown load profile",
        lambda s: _put(s, ConfigKind.METERS, "202611000001", profile="disco"),
        "config.json",
        "meter 202611000001: unknown load profile 'disco'",
    ),
]


def _bus_field(site: DemoSite, line: str, *, protocol: str = "dlt645") -> None:
    text = site.site_toml.read_text().replace('protocol = "dlt645"', f'protocol = "{protocol}"')
    site.site_toml.write_text(text.replace('parity = "E"', f'parity = "E"\n{line}'))


def test_dlt645_credentials_per_bus_reach_its_driver(small_site: DemoSite) -> None:
    bus = load_site(small_site.site_toml).buses[0]
    assert bus.driver() == DLT645_2007.with_settings(bus.settings())  # the defaults
    _bus_field(small_site, 'password_level = "04"\npassword = "123456"')
    _bus_field(small_site, 'operator_code = "0000AB12"')
    driver = load_site(small_site.site_toml).buses[0].driver()
    assert isinstance(driver, Dlt645Driver)
    assert (driver.password_level, driver.password, driver.operator) == (4, 0x123456, 0xAB12)


def test_a_meter_model_selects_its_vendor_map(small_site: DemoSite) -> None:
    assert all(m.malicious_load_map is None for m in load_site(small_site.site_toml).meters)
    _put(small_site, ConfigKind.METERS, "202611000001", model=SIMULATED_MODEL)
    _put(small_site, ConfigKind.METERS, "202611000002", model="DDZY1234")  # no map: fine
    site = load_site(small_site.site_toml)
    assert site.meter("202611000001").malicious_load_map is MALICIOUS_LOAD_MAPS[SIMULATED_MODEL]
    assert site.meter("202611000002").malicious_load_map is None


def _put(site: DemoSite, kind: ConfigKind, key: str, **changes: object) -> None:
    with ConfigDB.open(site.directory / "config.json") as db:
        document = db.get(kind, key)
        assert document is not None
        db.put(kind, {**document, **changes})


@pytest.mark.parametrize(
    ("damage", "file", "says"), [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES]
)
def test_a_bad_configuration_is_refused_naming_the_file(
    small_site: DemoSite, damage: Damage, file: str, says: str
) -> None:
    damage(small_site)
    with pytest.raises(SiteConfigError) as refused:
        load_site(small_site.site_toml)
    message = str(refused.value)
    assert file in message and says in message
    assert message.count(". ") == 0, "one sentence"


@pytest.mark.slow  # the CLI in a subprocess
@pytest.mark.parametrize(
    ("damage", "file"), [(DAMAGES[0][1], "site.toml"), (DAMAGES[3][1], "config.json")]
)
def test_run_refuses_to_start_on_a_damaged_configuration_and_touches_nothing(
    small_site: DemoSite, damage: Damage, file: str
) -> None:
    damage(small_site)
    before = snapshot(small_site.directory)
    result = cli("run", "--config", str(small_site.site_toml), "--speed", "3600", "--cycles", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and file in lines[0] and "nothing was changed" in lines[0]
    assert snapshot(small_site.directory) == before
    assert not (small_site.directory / "data").exists()
