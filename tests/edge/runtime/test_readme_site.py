"""The README's "Installing a real site" example is a site `load_site` accepts, without a port.

The example blocks are taken from README.md as written (each fenced block right after an
`<!-- example: NAME -->` comment is the file NAME), so the README cannot drift from the parser.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.drivers.base import SerialSettings
from edge.drivers.registry import DriverOptions, driver_for
from edge.rules.commodities import WATER
from edge.site import load_site
from edge.site.model import BusKind
from ledger.chain import NodeKey, public_key_pem

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w./-]+) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.S)

# Paths opened while a load is being watched (audit hooks cannot be removed: this one records
# only while `_watching` holds a list).
_watching: list[list[str]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _watching and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _watching[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def readme_examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    found = {m["name"]: m["body"] + "\n" for m in EXAMPLE.finditer(text)}
    assert text.count("<!-- example:") == len(found), "an example marker without a fenced block"
    return found


def _write_secret(path: Path, data: bytes) -> None:
    """As `demo.site` writes the node key: only its owner can read it, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture
def readme_site(tmp_path: Path) -> Path:
    """The README's example written out as an installer would: its files, a new node key, the
    cloud's public key and the TLS files `site.toml` names (the client certificate a real one
    naming the node, as the loader checks; the CA and key placeholders: only their presence is
    checked)."""
    examples = readme_examples()
    assert set(examples) == {"site.toml", "config.json"}
    for name, body in examples.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    node_key = NodeKey.generate()
    _write_secret(tmp_path / "node.key", node_key.private_pem())
    (tmp_path / "node.pub").write_bytes(public_key_pem(node_key.public_key))
    (tmp_path / "cloud.pub").write_bytes(public_key_pem(NodeKey.generate().public_key))
    (tmp_path / "tls").mkdir()
    for name in ("ca.crt", "edge-0001.key"):
        (tmp_path / "tls" / name).write_text("placeholder\n")
    (tmp_path / "tls" / "edge-0001.crt").write_bytes(_certificate("edge-0001"))
    return tmp_path / "site.toml"


def _certificate(common_name: str) -> bytes:
    """A self-signed PEM certificate whose subject CN is `common_name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def no_port_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path opened meanwhile; opening a serial port any way pyserial or the runtime
    would fails the test outright."""
    import serial

    from edge.drivers import reconnect

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a serial port was opened while loading: {args} {kwargs}")

    monkeypatch.setattr(serial, "Serial", refuse)
    monkeypatch.setattr(serial, "serial_for_url", refuse)
    monkeypatch.setattr(reconnect, "ReconnectingBus", refuse)
    opened: list[str] = []
    _watching.append(opened)
    try:
        yield opened
    finally:
        _watching.remove(opened)


def test_the_readme_example_is_a_site_load_site_accepts(
    readme_site: Path, no_port_opened: list[str]
) -> None:
    site = load_site(readme_site)

    ports = {bus.port for bus in site.buses}
    assert ports == {"/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyUSB2"}
    assert str(site.settings.config_path) in no_port_opened  # the watch does see opens
    assert not ports & set(no_port_opened), "load_site opened a bus's port"
    assert not any(path.startswith("/dev/") for path in no_port_opened)
    assert not (readme_site.parent / "data").exists(), "load_site created the store"

    assert site.settings.node == "edge-0001"
    assert site.settings.cloud is not None and site.settings.cloud.tls is not None
    assert site.settings.cloud.port == 8883
    assert all(bus.kind is BusKind.SERIAL for bus in site.buses)
    assert {bus.name: bus.settings() for bus in site.buses} == {
        "rs485-1": SerialSettings(2400, "E", 8, 1),
        "rs485-2": SerialSettings(9600, "N", 8, 1),
        "rs485-3": SerialSettings(2400, "E", 8, 1),  # cjt188's defaults
    }
    assert {m.address: (m.bus, m.protocol) for m in site.meters} == {
        "202611000001": ("rs485-1", "dlt645"),
        "202611000002": ("rs485-1", "dlt645"),
        "1": ("rs485-2", "sdm120"),
        "78330011223344": ("rs485-3", "cjt188"),
        "78330011223345": ("rs485-3", "cjt188"),
    }
    water = next(bus for bus in site.buses if bus.protocol == "cjt188")
    assert water.options == DriverOptions(meter_type=0x11, di_order="901F")
    assert water.meter_options == {
        "78330011223344": DriverOptions(meter_type=0x10, di_order="1F90")
    }
    assert site.meter("202611000002").multiplier == 20
    assert site.accounts["A0003"].keep_power
    assert site.tariff_of("A0003") == site.tariffs["commercial_flat"]
    assert {b.name: (b.interval.total_seconds(), b.protocols) for b in site.settings.blocks} == {
        "power": (30, ("dlt645", "sdm120")),
        "trips": (3600, ("dlt645",)),
    }
    learnt = {
        bus.name: driver_for(bus.protocol).with_blocks(site.blocks_of(bus)).blocks
        for bus in site.buses
    }
    assert {"power", "trips"} <= learnt["rs485-1"] and "trips" not in learnt["rs485-2"]
    # Its water meter is billed by volume, with the water tariff and free water configured.
    water = site.consumption_policy(site.meter("78330011223344"))
    assert water is not None and water.commodity is WATER
    assert water.tariff == site.tariffs["water_tiered"]
    assert site.rules.water_subsidy is not None and site.rules.low_balance.below_l == 1000


def test_the_readme_links_its_installing_section() -> None:
    text = README.read_text(encoding="utf-8")
    top = text.split("\n## ", 2)[1]  # the first section, under the title
    assert "(#installing-a-real-site)" in top
    assert "\n## Installing a real site\n" in text
