"""Signed cloud commands over a real Mosquitto: applied exactly once, PUBACKed only after the
commit, refused or rejected with a record when they cannot be applied, and felt by the runtime
(balances, relays, clock) at its next cycle.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Callable

import pytest

from cloud.services.broker import MosquittoBroker
from edge.drivers.reading import RelayState
from edge.rules.decisions import RelayCause
from edge.runtime.reconfigure import read_documents
from edge.store import Category, CommandStatus, DiskFull
from edge.sync.client import Delivery
from edge.sync.commands import REJECTED
from edge.sync.service import SyncService
from ledger.accounts import Pocket, pocket_id
from ledger.chain import NodeKey
from ledger.signed import CommandKind
from ledger.transfers import Code, TimeSource
from tests.e2e.mqtt_proxy import MqttChaosProxy
from tests.edge.sync.conftest import CLOUD_KEY, Edge, pump, wait
from tests.edge.sync.peer import CloudPeer


def _prepaid(edge: Edge, owner: str) -> int:
    return edge.store.book.balance(pocket_id(owner, Pocket.PREPAID)).posted


def _connected(sync: SyncService, peer: CloudPeer) -> None:
    assert pump(sync, lambda: any(s.online for s in peer.statuses))


def _spy_acks(sync: SyncService, seen: Callable[[Delivery], object]) -> list[object]:
    """Record, at the moment of every command's PUBACK, what `seen` says (is it stored?)."""
    calls: list[object] = []
    real = sync.link.ack

    def ack(delivery: Delivery) -> None:
        if delivery.leaf == "cmd":
            calls.append(seen(delivery))
        real(delivery)

    sync.link.ack = ack  # type: ignore[method-assign]
    return calls


def _rejections(edge: Edge) -> list[dict[str, object]]:
    return [
        dict(e.event.detail)
        for e in edge.store.events(category=Category.ALARM)
        if e.event.kind == REJECTED
    ]


def test_a_recharge_delivered_three_times_is_applied_once_and_acked_after_its_commit(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    before = _prepaid(edge, "A0001")
    command = peer.command(
        CommandKind.RECHARGE,
        {"account": "A0001", "fen": 5000, "payment": "P-0001", "method": "wechat"},
        seq=1,
    )
    stored_at_ack = _spy_acks(sync, lambda d: edge.store.command_result(command.id) is not None)
    payload = command.sign(CLOUD_KEY)
    for _ in range(3):
        peer.send(payload)
    assert pump(sync, lambda: len(stored_at_ack) == 3)
    assert stored_at_ack == [True, True, True]  # every PUBACK came after the commit
    assert _prepaid(edge, "A0001") == before + 5000
    booked = [
        e.transfer for e in edge.store.entries() if e.transfer.refs.get("payment") == "P-0001"
    ]
    assert len(booked) == 1
    assert booked[0].code is Code.RECHARGE and booked[0].refs["method"] == "wechat"
    assert booked[0].credit == pocket_id("A0001", Pocket.PREPAID)
    # The result goes up; the next status reports the command seq applied.
    assert pump(sync, lambda: command.id in peer.copy.results)
    assert peer.copy.results[command.id]["status"] == "applied"
    assert peer.copy.seq == edge.store.chain.seq
    assert sync.status().commands == 1


def test_a_changed_inventory_goes_up_again_signed_at_once(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    """Issue 13: the inventory went up once, at connect, so the cloud's view of shops and meters
    stayed stale after a configuration or a swap until a restart. The peer takes a status only
    if the node's key signed it."""
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    documents = copy.deepcopy(read_documents(edge.runtime.site))
    shop = documents["shops"][0]
    owner = next(m["account"] for m in documents["meters"] if m["shop"] == shop["id"])
    assert peer.statuses[-1].extra["accounts"][owner]["floor"] == shop["floor"] != "9F"
    shop["floor"] = "9F"
    command = peer.command(CommandKind.CONFIG, {"version": 1, "documents": documents}, seq=1)
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: peer.statuses[-1].extra["accounts"][owner]["floor"] == "9F")
    assert peer.statuses[-1].online and peer.statuses[-1].commands == 1
    seen = len(peer.statuses)
    for _ in range(10):
        sync.tick()
        time.sleep(0.02)
    assert len(peer.statuses) == seen  # nothing changed since: nothing sent again


def test_a_late_redelivery_after_expiry_is_a_repeat_not_a_rejection(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    command = peer.command(
        CommandKind.RECHARGE,
        {"account": "A0006", "fen": 400, "payment": "P-late"},
        issued=edge.clock.true_now(),
        expires_in=dt.timedelta(hours=1),
    )
    payload = command.sign(CLOUD_KEY)
    peer.send(payload)
    assert pump(sync, lambda: edge.store.command_result(command.id) is not None)
    edge.cycles(8)  # two hours: the command has expired by the edge's clock
    acks = _spy_acks(sync, lambda d: True)
    peer.send(payload)
    assert pump(sync, lambda: len(acks) == 1)
    assert _rejections(edge) == []
    booked = [e for e in edge.store.entries() if e.transfer.refs.get("payment") == "P-late"]
    assert len(booked) == 1


def test_a_command_whose_transaction_fails_is_not_acked_and_applies_on_the_retry(
    edge: Edge,
    broker: MosquittoBroker,
    peer: CloudPeer,
    make_sync: Callable[..., SyncService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    real = edge.runtime.recharge_transfer
    failures = [DiskFull(edge.store.path)]

    def full_once(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edge.runtime, "recharge_transfer", full_once)
    acks = _spy_acks(sync, lambda d: edge.store.command_result(command.id))
    command = peer.command(
        CommandKind.RECHARGE, {"account": "A0002", "fen": 1200, "payment": "P-disk"}, seq=1
    )
    before = _prepaid(edge, "A0002")
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: len(acks) == 1)
    assert not failures  # the first attempt did fail (and was not acknowledged)
    result = acks[0]
    assert result is not None and result.status is CommandStatus.APPLIED  # type: ignore[attr-defined]
    assert _prepaid(edge, "A0002") == before + 1200


def test_a_delivery_from_a_dropped_connection_is_applied_but_its_puback_not_reused(
    edge: Edge,
    broker: MosquittoBroker,
    peer: CloudPeer,
    make_sync: Callable[..., SyncService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    edge.cycles(1)
    with MqttChaosProxy(broker.host, broker.port) as proxy:
        sync = make_sync(proxy.host, proxy.port)
        _connected(sync, peer)
        sent: list[int] = []  # PUBACKs paho is asked to send, observed on paho itself
        client = sync.link._client
        real_puback = client.ack
        monkeypatch.setattr(
            client, "ack", lambda mid, qos: sent.append(mid) or real_puback(mid, qos)
        )
        # Per command delivery: its connection, and whether acking it made paho send a PUBACK.
        acked: list[tuple[int, bool]] = []
        real_ack = sync.link.ack

        def ack(delivery: Delivery) -> None:
            before = len(sent)
            real_ack(delivery)
            if delivery.leaf == "cmd":
                acked.append((delivery.generation, len(sent) > before))

        monkeypatch.setattr(sync.link, "ack", ack)
        command = peer.command(
            CommandKind.RECHARGE, {"account": "A0003", "fen": 700, "payment": "P-cut"}, seq=1
        )
        payload = command.sign(CLOUD_KEY)
        before = _prepaid(edge, "A0003")
        peer.send(payload)
        time.sleep(0.5)  # in paho's queue, not yet handled by the runtime thread ...
        proxy.cut()  # ... when the connection drops
        assert wait(lambda: not sync.link.connected, 1.0)  # paho saw it (reconnects after 1 s)
        assert pump(sync, lambda: sync.link.connected and len(acked) == 1)
        # Applied and durable, but its packet id belonged to the dead connection: no PUBACK.
        assert edge.store.command_result(command.id) is not None
        assert acked == [(1, False)]
        peer.send(payload)  # the cloud resends (as after our status): answered from the inbox
        assert pump(sync, lambda: len(acked) == 2)
        assert acked[1] == (2, True)
    assert _prepaid(edge, "A0003") == before + 700
    booked = [e for e in edge.store.entries() if e.transfer.refs.get("payment") == "P-cut"]
    assert len(booked) == 1


@pytest.mark.parametrize(
    "case", ["expired", "wrong_target", "bad_signature", "unknown_key", "malformed"]
)
def test_commands_that_do_not_verify_are_rejected_recorded_and_acked_never_applied(
    edge: Edge,
    broker: MosquittoBroker,
    peer: CloudPeer,
    make_sync: Callable[..., SyncService],
    case: str,
) -> None:
    """`case` is also the reason `ledger.signed.open_command` gives."""
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    args = {"account": "A0001", "fen": 999, "payment": f"P-{case}"}
    command = peer.command(CommandKind.RECHARGE, args, seq=5)
    payload = command.sign(CLOUD_KEY)
    if case == "expired":
        command = peer.command(
            CommandKind.RECHARGE,
            args,
            seq=5,
            issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=800),
            expires_in=dt.timedelta(hours=1),
        )
        payload = command.sign(CLOUD_KEY)
    elif case == "wrong_target":
        command = peer.command(CommandKind.RECHARGE, args, seq=5, target="edge-0002")
        payload = command.sign(CLOUD_KEY)
    elif case == "bad_signature":
        payload = payload.replace(b'"fen":999', b'"fen":99900')
    elif case == "unknown_key":
        payload = command.sign(NodeKey.generate())
    elif case == "malformed":
        payload = b"not json at all"
    acks = _spy_acks(sync, lambda d: True)
    before = _prepaid(edge, "A0001")
    peer.send(payload)
    assert pump(sync, lambda: len(acks) == 1)  # PUBACKed: the broker must not resend forever
    rejected = _rejections(edge)
    assert [r["reason"] for r in rejected] == [case]
    assert rejected[0]["command_id"] == (None if case == "malformed" else command.id)
    assert _prepaid(edge, "A0001") == before
    assert edge.store.command_result(command.id) is None  # not in the inbox either
    assert sync.status().commands == 0


def test_a_recharge_for_an_account_elsewhere_is_refused_once_with_its_reason(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(1)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    command = peer.command(
        CommandKind.RECHARGE, {"account": "B9999", "fen": 100, "payment": "P-x"}, seq=2
    )
    head = edge.store.chain.seq
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: command.id in peer.copy.results)
    result = edge.store.command_result(command.id)
    assert result is not None and result.status is CommandStatus.REFUSED
    assert "not on this concentrator" in result.reason
    assert peer.copy.results[command.id]["status"] == "refused"
    assert "B9999" in str(peer.copy.results[command.id]["reason"])
    assert edge.store.chain.seq == head  # nothing booked
    assert sync.status().commands == 2  # processed: the cloud need not resend it


def test_an_operator_trip_holds_until_an_operator_close(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(2)
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    meter = edge.runtime.site.meters[0].address
    trip = peer.command(CommandKind.RELAY, {"meters": [meter], "action": "trip"}, seq=1)
    peer.send(trip.sign(CLOUD_KEY))
    assert pump(sync, lambda: edge.store.command_result(trip.id) is not None)
    assert RelayCause.OPERATOR in edge.runtime.meters[meter].relay.held
    # Sent at once, confirmed by read-back; the meter reads open from the next cycle on, and
    # stays open however long (protection's auto-reclose is 5 minutes in the demo rules).
    assert edge.runtime.outcomes and edge.runtime.outcomes[-1].confirmed
    edge.cycles(6)
    latest = edge.store.latest_reading(meter)
    assert latest is not None and latest.reading.relay is RelayState.OPEN
    assert RelayCause.OPERATOR in edge.runtime.meters[meter].relay.held
    events = [e.event for e in edge.store.events(meter=meter) if e.event.kind == "operator_relay"]
    assert events and events[0].detail["action"] == "trip"

    close = peer.command(CommandKind.RELAY, {"meters": [meter], "action": "close"}, seq=2)
    peer.send(close.sign(CLOUD_KEY))
    assert pump(sync, lambda: edge.store.command_result(close.id) is not None)
    assert RelayCause.OPERATOR not in edge.runtime.meters[meter].relay.held
    edge.cycles(1)
    latest = edge.store.latest_reading(meter)
    assert latest is not None and latest.reading.relay is RelayState.CLOSED
    assert sync.status().commands == 2


def test_a_relay_command_for_a_meter_elsewhere_is_refused(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    command = peer.command(CommandKind.RELAY, {"meters": ["999999999999"], "action": "trip"})
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: edge.store.command_result(command.id) is not None)
    result = edge.store.command_result(command.id)
    assert result is not None and result.status is CommandStatus.REFUSED


def test_the_cloud_time_overrides_an_implausible_system_clock(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    edge.cycles(2)
    edge.clock.jump(dt.timedelta(days=-400))  # a dead RTC battery: the system clock is 2025
    held = edge.runtime.run_cycle()
    assert not held.plausible
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    true_now = edge.clock.true_now()
    command = peer.command(
        CommandKind.TIME, {}, seq=3, issued=true_now, expires_in=dt.timedelta(minutes=10)
    )
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: edge.store.command_result(command.id) is not None)
    assert edge.runtime.guard.trusting_cloud
    edge.clock.advance(dt.timedelta(minutes=15))
    report = edge.runtime.run_cycle()
    assert report.plausible and report.clock_reason == "time from the cloud"
    assert abs(report.now - edge.clock.true_now()) < dt.timedelta(seconds=1)
    stamped = [
        e.transfer for e in edge.store.entries() if e.transfer.time_source is TimeSource.CLOUD
    ]
    assert stamped  # the cycle's transfers say where their time came from


def test_a_recharge_closes_an_arrears_trip_at_the_next_cycle(
    edge: Edge, broker: MosquittoBroker, peer: CloudPeer, make_sync: Callable[..., SyncService]
) -> None:
    tripped = None
    for _ in range(300):  # A0004 starts with 3 yuan: it runs dry within two simulated days
        edge.cycles(1)
        tripped = next(
            (a for a, m in edge.runtime.meters.items() if RelayCause.ARREARS in m.relay.held),
            None,
        )
        if tripped is not None:
            break
    assert tripped is not None
    owner = edge.runtime.site.meter(tripped).account
    sync = make_sync(broker.host, broker.port)
    _connected(sync, peer)
    command = peer.command(
        CommandKind.RECHARGE, {"account": owner, "fen": 50_000, "payment": "P-topup"}, seq=1
    )
    peer.send(command.sign(CLOUD_KEY))
    assert pump(sync, lambda: edge.store.command_result(command.id) is not None)
    report = edge.runtime.run_cycle()  # the existing rule: back in credit → close
    closes = [o for o in report.orders if o.meter.address == tripped]
    assert closes and closes[0].command.value == "close" and closes[0].cause is RelayCause.ARREARS
    assert not edge.runtime.meters[tripped].relay.held
