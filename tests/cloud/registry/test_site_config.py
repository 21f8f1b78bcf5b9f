"""The registry → a concentrator's configuration documents → a signed CONFIG command, read back
by the edge's own parser (`edge.site.load`) and signature check (`ledger.signed`); subsidy
rules (the built-in `per_m2`, one registered in code, one found through an entry point).
Real databases (SQLite and PostgreSQL), real signatures."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.registry_bodies import MeterIn
from cloud.chains.commands import check_args
from cloud.errors import Invalid
from cloud.registry import entities, site_config
from cloud.registry import rows as registry
from cloud.registry.subsidy_rules import (
    ShopFacts,
    account_amount,
    register_subsidy_rule,
    subsidy_rule,
    unregister_subsidy_rule,
)
from cloud.registry.values import ADDRESSES, PROTOCOLS, meter_address
from edge.drivers.errors import DriverUsageError
from edge.drivers.registry import ADDRESS_RULES, check_address
from edge.drivers.registry import PROTOCOLS as EDGE_PROTOCOLS
from edge.rules.subsidy import SubsidyAccount
from edge.site.load import load_site
from edge.site.model import Site
from edge.store.config_db import ConfigDB, ConfigKind
from ledger.chain import NodeKey
from ledger.signed import CommandKind, open_command, trusted
from tests.cloud.fake_edge import T0
from tests.cloud.registry_world import ME, NODE, OTHER, make_registry

SITE_TOML = """\
[site]
node = "{node}"
name = "test"
zone = "Asia/Shanghai"
data_dir = "data"
config = "config.json"
node_key = "node.key"

[[buses]]
name = "rs485-1"
kind = "serial"
protocol = "dlt645"
port = "/dev/ttyUSB0"

[[buses]]
name = "rs485-2"
kind = "serial"
protocol = "sdm120"
port = "/dev/ttyUSB1"
"""


def edge_parses(tmp_path: Path, node: str, documents: dict[str, list[dict[str, Any]]]) -> Site:
    """The documents as a concentrator stores and loads them at boot."""
    directory = tmp_path / node
    directory.mkdir()
    (directory / "site.toml").write_text(SITE_TOML.format(node=node))
    with ConfigDB.open(directory / "config.json") as config:
        config.replace_all({ConfigKind(kind): docs for kind, docs in documents.items()})
    return load_site(directory / "site.toml")


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> Iterator[tuple[Session, dict[str, Any]]]:
    with sessions.begin() as session:
        yield session, make_registry(session)


def test_the_edge_parses_what_the_cloud_builds(world, tmp_path: Path) -> None:
    session, _ = world
    built = site_config.build(session, NODE)
    assert built.problems == ()
    site = edge_parses(tmp_path, NODE, dict(built.documents))
    assert [m.address for m in site.meters] == ["000000000001", "000000000002", "3"]
    assert {m.address: (m.shop, m.account) for m in site.meters} == {
        "000000000001": ("S101", "A0001"),
        "000000000002": ("S101", "A0001"),
        "3": ("S102", "A0002"),
    }
    assert site.shops["S101"].building == "B1" and site.shops["S101"].area_m2 == 32.5
    assert site.shops["S102"].category == "retail"
    assert site.accounts["A0002"].tariff == "tou"
    assert set(site.tariffs) == {"commercial", "tou"}  # A0101's tiered tariff is elsewhere
    assert site.rules.billing.tariff == "commercial"
    assert site.rules.protection.overload_w == 10_000
    assert site.rules.low_balance.below_fen == 2000
    assert site.rules.arrears.cut_off == dt.time(10, 0)
    assert site.rules.arrears.holidays == {dt.date(2026, 10, 1)}
    subsidy = site.rules.subsidy
    assert subsidy.carry_cap_wh == 20_000
    # The amount hook of the edge now answers what the cloud decided, per account.
    food = SubsidyAccount("A0001", "merchant", "food")
    assert subsidy.amount(food, "2026-11") == 80_000  # by category
    assert subsidy.amount(SubsidyAccount("A0002", "merchant", "retail"), "2026-11") == 50_000

    other = edge_parses(tmp_path, OTHER, dict(site_config.build(session, OTHER).documents))
    assert [m.address for m in other.meters] == ["000000000901"]
    assert set(other.tariffs) == {"commercial", "steps"}
    assert other.rules.subsidy.amount(SubsidyAccount("A0101", "office", "retail"), "x") == 0


def test_a_push_is_a_signed_config_command_whose_version_grows(world, cloud_key) -> None:
    session, _ = world
    first = site_config.push(session, NODE, key=cloud_key, now=T0, actor=ME)
    second = site_config.push(session, NODE, key=cloud_key, now=T0, actor=ME)
    assert (first.version, second.version) == (1, 2)
    command = open_command(second.command.payload, trusted(cloud_key.public_key), NODE, T0)
    assert command.kind is CommandKind.CONFIG
    assert command.args["version"] == 2
    assert command.args["documents"] == site_config.build(session, NODE).documents
    assert command.seq == first.command.seq + 1
    assert session.get(site_config.NodeConfig, NODE).version == 2
    assert site_config.marked(session) == [OTHER]  # NODE was sent what it has


def test_a_vacant_shop_is_served_without_its_meters(world, tmp_path: Path) -> None:
    session, _ = world
    registry.delete(session, entities.ACCOUNTS, "A0002", ME, T0)  # S102 (meter 3) is vacant
    built = site_config.build(session, NODE)
    assert built.problems == ()
    site = edge_parses(tmp_path, NODE, dict(built.documents))
    assert {m.address for m in site.meters} == {"000000000001", "000000000002"}
    assert "A0002" not in site.accounts


def test_a_node_with_problems_is_not_pushed(world, cloud_key) -> None:
    session, data = world
    registry.update(session, entities.SITES, data["site"], {"tariff": None}, ME, T0)
    registry.delete(session, entities.ACCOUNTS, "A0002", ME, T0)  # vacant: not a problem
    built = site_config.build(session, NODE)
    assert built.problems == (site_config.Problem.of("no_default_tariff", site="Market"),)
    assert str(built.problems[0]) == (
        "site 'Market' has no default tariff (the billing rule needs one)"
    )
    assert "3" not in {m["id"] for m in built.documents["meters"]}  # S102's meter, vacant
    with pytest.raises(Invalid, match="not usable"):
        site_config.push(session, NODE, key=cloud_key, now=T0, actor=ME)
    assert session.get(site_config.NodeConfig, NODE).version == 0


def test_a_moved_meter_marks_both_nodes(world, cloud_key) -> None:
    session, data = world
    for node in (NODE, OTHER):
        site_config.push(session, node, key=cloud_key, now=T0, actor=ME)
    assert site_config.marked(session) == []
    meter = data["meters"]["3"]
    registry.update(session, entities.METERS, meter, {"node": OTHER}, ME, T0)
    assert site_config.marked(session) == [NODE, OTHER]


def test_subsidy_rules_by_area_registered_and_by_entry_point(
    world, cloud_key: NodeKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, data = world
    policy = session.query(site_config.SubsidyPolicy).one()
    registry.update(session, entities.SUBSIDY_POLICIES, policy.id,
                    {"rule": "per_m2", "rule_params": {"wh_per_m2": 1000}}, ME, T0)  # fmt: skip
    amounts = _by_account(session)
    assert amounts == {"A0001": 32_500, "A0002": 20_000}
    # The edge issues what the cloud decided, not its own category table (food: 80 kWh).
    edge = edge_parses(tmp_path, NODE, dict(site_config.build(session, NODE).documents))
    assert edge.rules.subsidy.amount(SubsidyAccount("A0001", "merchant", "food"), "p") == 32_500
    assert edge.rules.subsidy.amount(SubsidyAccount("A9999", "merchant", "food"), "p") == 80_000
    # The shop grows: its node is marked, and its subsidy follows.
    site_config.push(session, NODE, key=cloud_key, now=T0, actor=ME)
    registry.update(session, entities.SHOPS, data["shops"]["S102"], {"area_m2": "25.25"}, ME,
                    T0)  # fmt: skip
    assert NODE in site_config.marked(session)
    assert _by_account(session)["A0002"] == 25_250

    register_subsidy_rule("offices_only", lambda shop, kind: 1 if kind == "office" else None)
    try:
        assert account_amount(_facts("food"), "office", "offices_only", {}, {}) == 1
        assert account_amount(_facts("food"), "merchant", "offices_only", {"food": 7}, {}) == 7
        assert account_amount(_facts("x"), "merchant", "offices_only", {}, {"merchant": 5}) == 5
    finally:
        unregister_subsidy_rule("offices_only")

    # A site's package declaring the rule under the entry point group `voltbook.subsidy`.
    package = tmp_path / "site_pkg"
    (package / "acme_subsidy-1.0.dist-info").mkdir(parents=True)
    (package / "acme_subsidy-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-subsidy\nVersion: 1.0\n"
    )
    (package / "acme_subsidy-1.0.dist-info" / "entry_points.txt").write_text(
        "[voltbook.subsidy]\nflat_9 = acme_subsidy_rules:flat_9\n"
    )
    (package / "acme_subsidy_rules.py").write_text(
        "def flat_9(shop, account_type):\n    return 9\n"
    )
    monkeypatch.syspath_prepend(str(package))
    assert subsidy_rule("flat_9")(_facts("food"), "merchant") == 9
    registry.update(session, entities.SUBSIDY_POLICIES, policy.id, {"rule": "flat_9"}, ME, T0)
    assert _by_account(session) == {"A0001": 9, "A0002": 9}
    with pytest.raises(Invalid, match="no subsidy rule named 'nope'"):
        registry.update(session, entities.SUBSIDY_POLICIES, policy.id, {"rule": "nope"}, ME, T0)
    sys.modules.pop("acme_subsidy_rules", None)


def _facts(category: str) -> ShopFacts:
    return ShopFacts("S1", "Market", "B1", "1F", category, None)


def _by_account(session: Session) -> dict[str, int]:
    rules = site_config.build(session, NODE).documents["rules"]
    return next(r for r in rules if r["id"] == "subsidy")["by_account"]


def test_the_protocol_table_is_the_edges() -> None:
    assert {n: (p.kind, p.addressing) for n, p in PROTOCOLS.items()} == {
        n: ("water" if p.kind == "water" else "electricity", p.addressing)
        for n, p in EDGE_PROTOCOLS.items()
    }
    assert {a: p.pattern for a, (p, _) in ADDRESSES.items()} == {
        a: p.pattern for a, (p, _) in ADDRESS_RULES.items()
    }
    assert get_args(MeterIn.model_fields["protocol"].annotation) == tuple(PROTOCOLS)


@pytest.mark.parametrize(
    ("protocol", "address"),
    [("dlt645", "1"), ("dlt645", "123456789012"), ("cjt188", "12345678901234"), ("sdm120", "007"),
     ("sdm630", "247"), ("dlt645-1997", "000000000042")],
)  # fmt: skip
def test_addresses_are_normalised_as_the_edge_does(protocol: str, address: str) -> None:
    assert meter_address(protocol, address) == check_address(protocol, address)


@pytest.mark.parametrize(
    ("protocol", "address"),
    [("dlt645", "1234567890123"), ("cjt188", "1234"), ("sdm120", "248"), ("sdm120", "0"),
     ("modbus", "1"), ("dlt645", "12a")],
)  # fmt: skip
def test_addresses_the_edge_refuses_are_refused(protocol: str, address: str) -> None:
    with pytest.raises(Invalid):
        meter_address(protocol, address)
    with pytest.raises(DriverUsageError):
        check_address(protocol, address)


@pytest.mark.parametrize(
    "args",
    [{"documents": {}}, {"version": 0, "documents": {}}, {"version": 1},
     {"version": 1, "documents": {"meterz": []}}, {"version": 1, "documents": {"meters": [{}]}},
     {"version": True, "documents": {}}],
)  # fmt: skip
def test_a_config_command_needs_a_version_and_documents(args: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        check_args(CommandKind.CONFIG, args)
    assert check_args(CommandKind.CONFIG, {"version": 3, "documents": {"meters": []}})
