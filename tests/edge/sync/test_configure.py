"""`config` and `meter_swap` through the real `CommandDesk` on a real runtime: the candidate
documents are parsed as at boot before anything is written, a stale or invalid configuration
changes nothing, the running site follows (new meters polled and billed, removed ones not,
kept ones keep their state), a swap bills the old meter to its final register and starts the
new one at its initial register, and a configuration the file lost is written again at boot.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.runtime.reconfigure import read_documents
from ledger.accounts import Pocket, System, pocket_id, system_id
from ledger.ids import derive_id
from ledger.invariants import ledger_violations
from ledger.signed import CommandKind
from ledger.transfers import Code
from tests.edge.sync.operations_kit import (
    Node,
    applied,
    by_id,
    per_meter_energy,
    refused,
    write_site,
)

NEW_METER = "202699000001"


@pytest.fixture
def site_toml(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site")


@pytest.fixture
def node(site_toml: Path) -> Iterator[Node]:
    running = Node.boot(site_toml)
    try:
        running.cycles(3)
        yield running
    finally:
        running.close()


def _documents(node: Node) -> dict[str, list[dict[str, Any]]]:
    return copy.deepcopy(read_documents(node.runtime.site))


def _sound(node: Node) -> None:
    transfers = node.transfers()
    assert ledger_violations(transfers, node.store.book.balances()) == []


# -- config -----------------------------------------------------------------------------------
def test_a_new_configuration_is_written_and_run(node: Node, site_toml: Path) -> None:
    docs = _documents(node)
    kept = {m: node.runtime.meters[m] for m in node.runtime.meters}
    removed = docs["meters"].pop()  # A0004's meter leaves; its account stays
    docs["shops"].append({"id": "B9-9F-999", "building": "B9", "floor": "9F"})
    docs["accounts"].append({"id": "A0100", "type": "merchant"})
    docs["meters"].append(
        {"id": NEW_METER, "bus": "rs485-1", "protocol": "dlt645", "shop": "B9-9F-999",
         "account": "A0100", "profile": "steady_shop"}
    )  # fmt: skip
    payload = node.command(CommandKind.CONFIG, {"version": 1, "documents": docs})
    applied(node.desk.handle(payload))
    assert node.store.get_state("sync:config")["version"] == 1
    assert read_documents(node.runtime.site)["meters"] == docs["meters"]
    addresses = {m.address for m in node.runtime.site.meters}
    assert NEW_METER in addresses and removed["id"] not in addresses
    assert "A0100" in node.runtime.site.accounts
    for address, state in kept.items():  # meters that stay keep their state
        if address != removed["id"]:
            assert node.runtime.meters[address] is state
    assert node.desk.handle(payload).outcome == "repeated"
    last_removed = node.store.latest_reading(removed["id"])
    node.cycles(2)
    assert node.store.latest_reading(removed["id"]) == last_removed  # no longer polled
    first = node.store.latest_reading(NEW_METER)
    assert first is not None  # polled, and billing started at its first reading
    assert node.runtime.meters[NEW_METER].billing is not None
    applied(node.send(CommandKind.RECHARGE, {"account": "A0100", "fen": 5000, "payment": "P-n"}))
    node.cycles(2)
    assert any(t.code is Code.CONSUME and t.refs["meter"] == NEW_METER for t in node.transfers())
    _sound(node)
    node.close()
    again = Node.boot(site_toml, node.clock.true_now())  # the file is what boot reads
    try:
        assert NEW_METER in {m.address for m in again.runtime.site.meters}
        assert again.runtime.meters[NEW_METER] == node.runtime.meters[NEW_METER]
    finally:
        again.close()


def test_stale_invalid_or_account_dropping_configurations_change_nothing(node: Node) -> None:
    docs = _documents(node)
    applied(node.send(CommandKind.CONFIG, {"version": 2, "documents": docs}))
    before = node.snapshot()
    refused(node.send(CommandKind.CONFIG, {"version": 2, "documents": docs}), "stale")
    refused(node.send(CommandKind.CONFIG, {"version": 1, "documents": docs}), "stale")
    bad_bus = copy.deepcopy(docs)
    bad_bus["meters"][0]["bus"] = "rs485-9"
    refused(node.send(CommandKind.CONFIG, {"version": 3, "documents": bad_bus}), "not valid")
    no_tariff = copy.deepcopy(docs)
    no_tariff["tariffs"] = []
    refused(node.send(CommandKind.CONFIG, {"version": 3, "documents": no_tariff}), "not valid")
    refused(
        node.send(CommandKind.CONFIG, {"version": 3, "documents": {**docs, "gadgets": []}}),
        "unknown document kinds",
    )
    dropping = copy.deepcopy(docs)
    dropping["meters"] = [m for m in dropping["meters"] if m["account"] != "A0002"]
    dropping["accounts"] = [a for a in dropping["accounts"] if a["id"] != "A0002"]
    refused(
        node.send(CommandKind.CONFIG, {"version": 3, "documents": dropping}),
        "drops account A0002",
        "prepaid",
    )
    assert node.snapshot() == before


def test_a_configuration_the_file_lost_is_written_again_at_boot(
    node: Node, site_toml: Path
) -> None:
    old_file = node.config_bytes()
    docs = _documents(node)
    docs["accounts"].append({"id": "A0200", "type": "office"})
    applied(node.send(CommandKind.CONFIG, {"version": 5, "documents": docs}))
    path = node.runtime.site.settings.config_path
    node.close()
    path.write_bytes(old_file)  # as if the process died between the commit and the file write
    again = Node.boot(site_toml, node.clock.true_now())
    try:
        assert "A0200" in again.runtime.site.accounts
        assert read_documents(again.runtime.site)["accounts"] == docs["accounts"]
    finally:
        again.close()


# -- meter swap -------------------------------------------------------------------------------
def _swap_args(node: Node, old: str, final_wh: int, **more: Any) -> dict[str, Any]:
    return {
        "swap": "S-1",
        "old": old,
        "final_wh": final_wh,
        "meter": {"id": NEW_METER, "profile": "steady_shop"},
        "initial_wh": 12_340,
        **more,
    }


def test_a_meter_swap_bills_the_old_meter_to_its_final_register_and_starts_the_new_one(
    node: Node, site_toml: Path
) -> None:
    old = node.runtime.site.meters_of("A0001")[0]
    billing = node.runtime.meters[old.address].billing
    assert billing is not None
    billed_to, final = billing.billed_to, billing.reg_wh + 800
    payload = node.command(CommandKind.METER_SWAP, _swap_args(node, old.address, final))
    applied(node.desk.handle(payload))
    settle = by_id(node.transfers())[derive_id("meter-settle", "S-1", "prepaid")]
    assert (settle.code, settle.debit, settle.credit) == (
        Code.METER_SETTLE,
        pocket_id("A0001", Pocket.PREPAID),
        system_id(System.ENERGY_SALES),
    )
    assert settle.refs["swap"] == "S-1" and settle.refs["meter"] == old.address
    assert (settle.refs["reg_from"], settle.refs["reg_to"]) == (billed_to, final)
    assert settle.refs["energy_wh"] == final - billed_to and settle.amount > 0
    new = node.runtime.site.meter(NEW_METER)
    assert (new.shop, new.account, new.bus) == (old.shop, old.account, old.bus)
    assert old.address not in {m.address for m in node.runtime.site.meters}
    assert {m["id"] for m in read_documents(node.runtime.site)["meters"]} >= {NEW_METER}
    seq = node.store.chain.seq
    assert node.desk.handle(payload).outcome == "repeated"
    assert node.store.chain.seq == seq
    node.cycles(4)
    new_legs = [t for t in node.transfers() if t.refs.get("meter") == NEW_METER]
    assert new_legs and min(int(t.refs["reg_from"]) for t in new_legs) == 12_340
    energy = {m: (first, last, billed) for m, first, last, billed in per_meter_energy(
        node.transfers())}  # fmt: skip
    first, last, billed = energy[old.address]
    assert last == final and billed == last - first
    first, last, billed = energy[NEW_METER]
    assert first == 12_340 and billed == last - first
    _sound(node)
    node.close()
    again = Node.boot(site_toml, node.clock.true_now())
    try:
        again.cycles(2)
        assert again.runtime.meters[NEW_METER].billing is not None
        _sound(again)
    finally:
        again.close()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"final_wh": -1}, ("final_wh",)),
        ({"old": "999999999999"}, ("not on this concentrator",)),
        ({"meter": {"id": NEW_METER, "bus": "rs485-7"}}, ("not valid",)),
        ({"meter": {"id": NEW_METER, "account": "A0002"}}, ("keeps the shop and account",)),
        ({"meter": {"id": "202611000002"}}, ("not valid", "two meters documents")),
    ],
)
def test_a_swap_that_cannot_be_done_is_refused_and_changes_nothing(
    node: Node, change: dict[str, Any], words: tuple[str, ...]
) -> None:
    old = node.runtime.site.meters_of("A0001")[0].address
    billing = node.runtime.meters[old].billing
    assert billing is not None
    before = node.snapshot()
    refused(
        node.send(CommandKind.METER_SWAP, {**_swap_args(node, old, billing.reg_wh), **change}),
        *words,
    )
    assert node.snapshot() == before


def test_a_final_register_below_the_last_billed_one_is_refused(node: Node) -> None:
    old = node.runtime.site.meters_of("A0001")[0].address
    billing = node.runtime.meters[old].billing
    assert billing is not None and billing.reg_wh > 0
    before = node.snapshot()
    reason = refused(
        node.send(CommandKind.METER_SWAP, _swap_args(node, old, billing.reg_wh - 10)),
        "below its last billed register",
    )
    assert str(billing.reg_wh) in reason
    assert node.snapshot() == before
    node.clock.advance(dt.timedelta(minutes=1))


def test_a_relay_outcome_arriving_after_its_meter_was_swapped_out_is_still_logged(
    node: Node,
) -> None:
    """Relay orders are sent after a cycle commits and their outcomes are stored with the next
    cycle; a swap in between removes the meter from the site, and the outcome must still be
    logged against the old meter, its shop and its account (a KeyError stopped the runtime)."""
    old = node.runtime.site.meters_of("A0001")[0]
    until = (node.clock.true_now() + dt.timedelta(minutes=1)).isoformat()
    args = {"account": "A0001", "refund": "R-0", "grace_wh": 0, "grace_until": until}
    applied(node.send(CommandKind.REFUND, args))  # prepaid held: nothing left to pay with
    node.cycles(1)
    assert [o.order.meter.address for o in node.runtime.outcomes] == [old.address]
    applied(node.send(CommandKind.RECHARGE, {"account": "A0001", "fen": 5_000, "payment": "P-1"}))
    billing = node.runtime.meters[old.address].billing
    assert billing is not None
    applied(node.send(CommandKind.METER_SWAP, _swap_args(node, old.address, billing.reg_wh)))
    node.cycles(1)
    events = [stored.event for stored in node.store.events(meter=old.address)]
    relay = [e for e in events if e.kind.startswith("relay_")]
    assert [(e.kind, e.shop, e.account) for e in relay] == [("relay_confirmed", old.shop, "A0001")]
    _sound(node)
