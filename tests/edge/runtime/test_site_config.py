"""The site configuration: typed and checked; a damaged or wrong one refuses to start, saying
which file and what is wrong in one sentence, and touching nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from demo.site import DemoSite
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
        "unknown load profile",
        lambda s: _put(s, ConfigKind.METERS, "202611000001", profile="disco"),
        "config.json",
        "meter 202611000001: unknown load profile 'disco'",
    ),
]


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
