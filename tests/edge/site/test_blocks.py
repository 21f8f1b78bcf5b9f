"""`[[blocks]]` in site.toml: each bad block refused at load in one sentence naming the file,
the block and what is wrong; good ones parsed into `BlockConfig`s the drivers can read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.drivers.registry import driver_for
from edge.site import SiteConfigError
from edge.site.model import BlockConfig
from edge.site.site_file import parse_site_file

SITE = """
[site]
node = "edge-0001"

[[buses]]
name = "rs485-1"
kind = "serial"
protocol = "dlt645"
port = "/dev/ttyUSB0"
"""
WATER_BUS = """
[[buses]]
name = "water-1"
kind = "serial"
protocol = "cjt188"
port = "/dev/ttyUSB1"
"""


def blocks_of(tmp_path: Path, text: str, *, extra_bus: str = "") -> tuple[BlockConfig, ...]:
    path = tmp_path / "site.toml"
    path.write_text(SITE + extra_bus + text)
    settings, _, _ = parse_site_file(path)
    return settings.blocks


def test_a_site_file_without_blocks_has_none(tmp_path: Path) -> None:
    assert blocks_of(tmp_path, "") == ()


def test_blocks_parse_with_their_defaults(tmp_path: Path) -> None:
    blocks = blocks_of(
        tmp_path,
        """
[[blocks]]
name = "power"
interval_s = 30

[[blocks]]
name = "trips"
items = ["malicious_load_trips", "overload_trips", "over_voltage_trips"]
interval_s = 3600
""",
    )
    assert blocks == (
        BlockConfig("power", dt.timedelta(seconds=30), ("dlt645",)),
        BlockConfig(
            "trips",
            dt.timedelta(hours=1),
            ("dlt645",),
            ("malicious_load_trips", "overload_trips", "over_voltage_trips"),
        ),
    )
    driver = driver_for("dlt645").with_blocks({"trips": blocks[1].items})
    assert {"power", "trips"} <= driver.blocks


def test_a_block_may_name_its_protocols_in_a_mixed_site(tmp_path: Path) -> None:
    text = '\n[[blocks]]\nname = "power"\ninterval_s = 30\nprotocols = ["dlt645"]\n'
    (block,) = blocks_of(tmp_path, text, extra_bus=WATER_BUS)
    assert block.protocols == ("dlt645",)


def block(**fields: object) -> str:
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in fields.items()]
    return "\n[[blocks]]\n" + "\n".join(lines) + "\n"


BAD: list[tuple[str, str, list[str]]] = [
    (
        "unknown item",
        block(name="p", items=["active_power", "power_factor_total"], interval_s=30),
        ["block 'p'", "dlt645 has no item 'active_power'", "active_power_total"],
    ),
    ("interval not dividing the day", block(name="p", interval_s=7), ["divides the day", "7"]),
    ("interval zero", block(name="p", interval_s=0), ["interval_s", "from 1 to 86400"]),
    ("interval past a day", block(name="p", interval_s=172_800), ["interval_s", "86400"]),
    ("interval as text", block(name="p", interval_s="30"), ["interval_s", "integer"]),
    ("interval missing", block(name="power"), ["interval_s", "missing"]),
    (
        "duplicate name",
        block(name="power", interval_s=30) + block(name="power", interval_s=60),
        ["two blocks are named 'power'"],
    ),
    ("basic redefined", block(name="basic", interval_s=60), ["'basic' is the billing read"]),
    ("bad name", block(name="Power!", interval_s=30), ["name", "lower-case"]),
    (
        "no block of the driver's own",
        block(name="trips", interval_s=60),
        ["dlt645 has no block 'trips' of its own", "list its items"],
    ),
    ("empty items", block(name="p", items=[], interval_s=30), ["items", "a list of names"]),
    (
        "repeated item",
        block(name="p", items=["overload_trips", "overload_trips"], interval_s=30),
        ["without repeats", "'overload_trips' twice"],
    ),
    (
        "item that fills nothing a reading carries",
        block(name="p", items=["active_power_a"], interval_s=30),
        ["no item 'active_power_a'"],
    ),
    (
        "protocol no bus runs",
        block(name="power", interval_s=30, protocols=["sdm120"]),
        ["protocols", "dlt645", "sdm120"],
    ),
    ("misspelt field", block(name="power", interval_s=30, every=5), ["unknown field 'every'"]),
    ("not an array of tables", '\n[blocks]\nname = "power"\n', ["array of tables"]),
]


@pytest.mark.parametrize(("text", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_block_is_refused_in_one_sentence(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    with pytest.raises(SiteConfigError) as caught:
        blocks_of(tmp_path, text)
    message = str(caught.value)
    assert "site.toml" in message and "\n" not in message
    for word in words:
        assert word in message


def test_a_block_every_protocol_cannot_read_is_refused_in_a_mixed_site(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="cjt188 has no block 'power'"):
        blocks_of(tmp_path, block(name="power", interval_s=30), extra_bus=WATER_BUS)


@pytest.mark.parametrize(
    ("protocol", "items", "good"),
    [
        ("dlt645", ("active_power_a",), ("active_power_total", "reactive_power_total")),
        ("sdm120", ("active_power",), ("power_w", "reactive_var")),
        ("cjt188", ("volume",), ("metering",)),
    ],
)
def test_drivers_learn_blocks_of_their_items_only(
    protocol: str, items: tuple[str, ...], good: tuple[str, ...]
) -> None:
    driver = driver_for(protocol)
    assert "custom" in driver.with_blocks({"custom": good}).blocks
    assert "custom" not in driver.blocks
    with pytest.raises(ValueError, match="custom"):
        driver.with_blocks({"custom": items})
