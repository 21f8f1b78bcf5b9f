"""Hostile payloads on `vb/{node}/cmd` and `vb/{node}/ack` over a real Mosquitto: each one is
logged, recorded (a `command_rejected` alarm, a refused inbox row or a `sync_ack_rejected`
alarm), PUBACKed and dropped; the valid command published right after it applies, and the
service keeps ticking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cloud.services.broker import MosquittoBroker
from edge.store import Category
from edge.sync.client import Delivery
from edge.sync.commands import REJECTED
from edge.sync.service import SyncService
from ledger.accounts import Pocket, pocket_id
from ledger.signed import COMMAND_TAG, CommandKind, sign
from ledger.untrusted import MAX_MESSAGE_BYTES
from ledger.wire import topic
from tests.edge.sync.conftest import CLOUD_KEY, Edge, pump
from tests.edge.sync.peer import CloudPeer

UNSIGNED: dict[str, bytes] = {
    "deep brackets": b"[" * 100_000,
    "deep objects": b'{"a":' * 50_000,
    "5000-digit id": b'{"id": ' + b"7" * 5000 + b', "sig": "00"}',
    "NaN": b'{"id": "' + b"ab" * 16 + b'", "seq": NaN}',
    "float overflow": b'{"seq": 1e999}',
    "lone surrogate": b'{"id": "\\ud800", "key_id": "\\udc00"}',
    "encoded surrogate": b'{"id": "\xed\xa0\x80"}',
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "huge": b'{"id": "' + b"a" * MAX_MESSAGE_BYTES + b'"}',
    "a list": b"[1, 2, 3]",
    "a string": b'"recharge"',
    "repeated key": b'{"id": 1, "id": 2}',
}


def _signed(fields: dict[str, Any]) -> bytes:
    return sign(COMMAND_TAG, fields, CLOUD_KEY)


def _wrong_types(peer: CloudPeer) -> list[bytes]:
    """Commands signed by the cloud's key with a wrong type at one field each."""
    recharge = peer.command(
        CommandKind.RECHARGE, {"account": "A0001", "fen": 1, "payment": "P-x"}
    ).fields()
    payloads = []
    for name in ("id", "seq", "target", "kind", "args", "issued", "expires"):
        for value in (None, True, 2**70, -1, 1.5, [], {}, "", "x" * 10_000, [[[]]]):
            payloads.append(_signed({**recharge, name: value}))
    bad_args: list[tuple[CommandKind, dict[str, Any]]] = [
        (CommandKind.RECHARGE, {"account": ["A0001"], "fen": "100", "payment": 5}),
        (CommandKind.RECHARGE, {"account": "A0001", "fen": 1.5, "payment": "P-f"}),
        (CommandKind.RECHARGE, {"account": "A0001", "fen": 2**62, "payment": "P-b"}),
        (CommandKind.RELAY, {"meters": {"a": 1}, "action": ["trip"]}),
        (CommandKind.RELAY, {"meters": [None], "action": "trip"}),
        (CommandKind.CONFIG, {"version": "2", "documents": []}),
        (CommandKind.CONFIG, {"version": 2, "documents": {"meters": "x"}}),
        (CommandKind.CONFIG, {"version": 2, "documents": {"meters": [{"id": 5}]}}),
        (CommandKind.CONFIG, {"version": 2, "documents": {"meters": [{"id": [1], "bus": {}}]}}),
        (CommandKind.CONFIG, {"version": 2, "documents": {"tariffs": [{"periods": 7}]}}),
        (CommandKind.CORRECTION, {"account": {}, "fen": None, "correction": [], "reason": 3}),
        (CommandKind.REFUND, {"account": "A0001", "refund": 1, "grace_wh": "9"}),
        (CommandKind.SETTLE, {"pending": 7, "action": None, "reference": {}}),
        (CommandKind.METER_SWAP, {"swap": "S1", "old": 1, "meter": [], "final_wh": "0"}),
        (CommandKind.MOVE_OUT, {"account": None, "move": [], "to_node": 3}),
        (CommandKind.MOVE_IN, {"account": "A0001", "move": "M1", "fen": "5", "from_node": 1}),
    ]
    for kind, args in bad_args:
        payloads.append(peer.command(kind, args).sign(CLOUD_KEY))
    return payloads


def _prepaid(edge: Edge, owner: str) -> int:
    return edge.store.book.balance(pocket_id(owner, Pocket.PREPAID)).posted


def _count_pubacks(sync: SyncService, leaf: str) -> list[Delivery]:
    acked: list[Delivery] = []
    real = sync.link.ack

    def ack(delivery: Delivery) -> None:
        if delivery.leaf == leaf:
            acked.append(delivery)
        real(delivery)

    sync.link.ack = ack  # type: ignore[method-assign]
    return acked


def _started(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> SyncService:
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    assert pump(sync, lambda: any(s.online for s in peer.statuses))
    return sync


def _valid_recharge_applies(edge: Edge, sync: SyncService, peer: CloudPeer, fen: int) -> None:
    before = _prepaid(edge, "A0002")
    command = peer.command(
        CommandKind.RECHARGE, {"account": "A0002", "fen": fen, "payment": f"P-after-{fen}"}
    )
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: _prepaid(edge, "A0002") == before + fen)
    assert sync.link.connected


def test_hostile_commands_are_rejected_acked_and_the_next_command_applies(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    sync = _started(edge, broker, peer, make_sync)
    acked = _count_pubacks(sync, "cmd")
    for payload in UNSIGNED.values():
        peer.send(payload)
    _valid_recharge_applies(edge, sync, peer, 700)
    assert len(acked) == len(UNSIGNED) + 1
    rejected = [
        e.event.detail
        for e in edge.store.events(category=Category.ALARM)
        if e.event.kind == REJECTED
    ]
    assert len(rejected) == len(UNSIGNED)
    assert {r["reason"] for r in rejected} == {"malformed"}
    assert all(len(str(r["message"])) <= 200 for r in rejected)
    assert sync.status().commands == 1  # the valid command, and nothing else, applied


def test_signed_commands_with_wrong_types_are_refused_and_the_next_command_applies(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    sync = _started(edge, broker, peer, make_sync)
    acked = _count_pubacks(sync, "cmd")
    payloads = _wrong_types(peer)
    for payload in payloads:
        peer.send(payload)
    _valid_recharge_applies(edge, sync, peer, 900)
    assert len(acked) == len(payloads) + 1
    unreadable = [
        e.event.detail
        for e in edge.store.events(category=Category.ALARM)
        if e.event.kind == REJECTED and e.event.detail.get("reason") == "unreadable"
    ]
    assert unreadable == []  # every check caught its field: no handler choked


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_hostile_acks_raise_an_alarm_are_acked_and_commands_still_apply(
    edge: Edge,
    broker: MosquittoBroker,
    peer: CloudPeer,
    make_sync: Callable[..., SyncService],
    signed: bool,
) -> None:
    sync = _started(edge, broker, peer, make_sync)
    acked = _count_pubacks(sync, "ack")
    if signed:
        payloads = [
            sign(b"voltbook/sync/ack/v1\x00", fields, CLOUD_KEY)
            for fields in (
                {"node": edge.store.node, "seq": 2**63, "head": "00" * 32, "upto": 1},
                {"node": [], "seq": [], "head": 5, "upto": None, "status": {}, "now": 1},
                {"node": edge.store.node, "seq": 0, "head": "zz", "upto": 0, "status": "ok"},
            )
        ]
    else:
        payloads = list(UNSIGNED.values())
    published = acked_before = len(acked)
    for payload in payloads:
        peer.client.publish(topic(edge.store.node, "ack"), payload, qos=1).wait_for_publish(5)
        published += 1
    _valid_recharge_applies(edge, sync, peer, 300)
    assert pump(sync, lambda: len(acked) >= published - acked_before)
    kinds = {e.event.kind for e in edge.store.events(category=Category.ALARM)}
    assert "sync_ack_rejected" in kinds
