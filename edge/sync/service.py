"""Sync as one job of the runtime's scheduler: drain the link, handle, send.

The runner calls `tick()` in its own thread, between poll cycles, every `tick_s` (real seconds,
whatever `--speed` says) and at once whenever the link brings something (`arrived`, set from
paho's thread): an acknowledgement frees room in the window, and the next batch goes as soon as
it is handled, so a backlog drains at the pace of the acks, not of the tick:

1. the link's events in order: `Connected` → the session sends again and the retained
   `Status` (head, acked, highest command seq, account inventory) goes out; `Disconnected` →
   the session stops sending; a delivery on `ack` → the session; on `cmd` → the command desk;
   each delivery is PUBACKed only after its transaction committed;
2. when the running site's inventory differs from the one last published (a `config` or a
   `meter_swap` applied, a tenant moved in or out), the status again, so the cloud's view
   follows within one sync rather than at the next reconnect;
3. the batches the session wants sent now.

Every status, the last will included, is signed with the node's key (`Status.signed`): the
cloud takes no status its registered key does not verify.

A delivery that cannot be used (not JSON, too big or deep, out-of-range numbers, lone
surrogates, a bad signature, arguments of the wrong type) is logged with its topic, recorded
(`command_rejected` / `sync_ack_rejected` alarms, which go up), PUBACKed and dropped: the
decoders (`ledger.untrusted`, `ledger.signed`, `ledger.wire.Ack`) are total, so message content
never makes a tick raise and the deliveries behind it are handled.

A full disk fails the event being handled, not the runtime: it stays first in line, nothing of
it was stored, it is not acknowledged, and the next tick tries it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge.runtime.cycle import Runtime
from edge.site.model import CloudSettings, Site
from edge.store import DiskFull
from edge.sync import update
from edge.sync.client import Connected, Delivery, Disconnected, LinkEvent, MqttLink
from edge.sync.commands import CommandDesk
from edge.sync.session import SessionConfig, UplinkSession
from edge.sync.uplink import BatchBuilder, UplinkLimits
from ledger.wire import KEY_ROTATIONS, MAX_ROTATIONS, Status

log = logging.getLogger("edge.sync")

FLUSH_NAP_S = 0.05


def inventory(site: Site) -> dict[str, Any]:
    """The accounts this concentrator holds, for the cloud's registry (in `Status.extra`)."""
    accounts: dict[str, Any] = {}
    for owner in sorted(site.accounts):
        shop = site.shop_of(owner)
        accounts[owner] = {
            "shop": None if shop is None else shop.id,
            "building": None if shop is None else shop.building,
            "floor": None if shop is None else shop.floor,
            "meters": [
                {"address": m.address, "protocol": m.protocol} for m in site.meters_of(owner)
            ],
        }
    return accounts


class SyncService:
    """The edge side of sync for one runtime. `start()`, `tick()` on a schedule, `stop()`."""

    def __init__(
        self,
        runtime: Runtime,
        settings: CloudSettings,
        *,
        link: MqttLink | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        store = runtime.store
        limits = UplinkLimits(settings.batch_bytes, settings.batch_items, settings.priority_alarms)
        self.desk = CommandDesk(runtime, settings.cloud_keys)
        self.session = UplinkSession(
            store,
            BatchBuilder(store, runtime.key, limits),
            self.desk.cloud_keys,  # acks are signed by the key commands are (a pushed one too)
            SessionConfig(settings.window, settings.ack_timeout_s, settings.rate_bytes_s),
        )
        will = Status(store.node, False).signed(runtime.key)
        self.link = link or MqttLink(settings, store.node, will)
        self.monotonic = monotonic
        self._pending: deque[LinkEvent] = deque()
        self._published: dict[str, Any] | None = None  # the inventory the cloud last got
        # Set (from paho's thread) when the link has events: `tick()` is wanted now.
        self.arrived = threading.Event()
        self.link.wake_on_events(self.arrived)

    def wake_on_events(self, waker: threading.Event) -> None:
        """Set `waker` too whenever the link has events (the runner naps on one event)."""
        self.link.wake_on_events(waker)

    def wait(self, timeout: float) -> bool:
        """Nap until the link has events or `timeout` seconds passed; whether it has."""
        return self.arrived.wait(timeout)

    def status(self, *, online: bool = True) -> Status:
        store = self.runtime.store
        acked = store.acknowledged()[0]
        extra: dict[str, Any] = {"accounts": inventory(self.runtime.site)} if online else {}
        # A node key rotated since the cloud's last ack: what makes this status's key the
        # node's, until a batch has carried it (`cloud.ingest.handler`, `ledger.key_rotation`).
        rotations = store.key_rotations(acked)[-MAX_ROTATIONS:]
        if rotations:
            extra[KEY_ROTATIONS] = [r.fields() for r in rotations]
        return Status(store.node, online, head=store.chain.seq, acked=acked,
                      commands=self.desk.highest_seq, extra=extra)  # fmt: skip

    def _publish_status(self) -> None:
        status = self.status()
        if self.link.publish("status", status.signed(self.runtime.key), retain=True):
            self._published = status.extra["accounts"]

    def start(self) -> None:
        self.link.start()

    def stop(self, *, flush_s: float = 0.0) -> None:
        """Give the last batches up to `flush_s` seconds to go up and be acknowledged, then
        publish the retained offline status and disconnect."""
        deadline = self.monotonic() + flush_s
        while self.link.connected and self.monotonic() < deadline:
            self.tick()
            if self.session.paused or not (self.session.in_flight or self.busy):
                break
            self.wait(FLUSH_NAP_S)
        self.link.stop(farewell=self.status(online=False).signed(self.runtime.key))

    @property
    def busy(self) -> bool:
        """Whether the outbox holds anything not yet sent."""
        return bool(self.runtime.store.outbox(self.session.cursor, 1))

    def tick(self) -> None:
        """Handle what the link brought, then send what the session wants sent."""
        mono = self.monotonic()
        self.arrived.clear()  # before draining: whatever arrives after sets it again
        self._pending.extend(self.link.events())
        while self._pending:
            try:
                self._handle(self._pending[0], mono)
            except DiskFull as exc:
                log.error("sync: not handled, nothing of it was stored (tried again): %s", exc)
                return
            self._pending.popleft()
        update.report(self.runtime)  # the updater's newest state, as an event, once
        if self.link.connected and inventory(self.runtime.site) != self._published:
            self._publish_status()
            log.info("sync: inventory changed; status sent again")
        for built in self.session.next_batches(mono):
            if not self.link.publish("up", built.payload):
                self.session.not_sent(built)
                break
            log.info("sync: sent %s", built.describe())

    def _handle(self, event: LinkEvent, mono: float) -> None:
        if isinstance(event, Connected):
            self.session.connected(mono)
            self._publish_status()
            log.info("sync: connected (connection %d)", event.generation)
        elif isinstance(event, Disconnected):
            self.session.disconnected()
            log.warning("sync: disconnected (%s); queueing in the outbox", event.reason)
        elif isinstance(event, Delivery):
            if event.leaf == "ack":
                wall = self.runtime.guard.judge()[0].now
                self.session.receive_ack(event.payload, mono, wall)
            elif event.leaf == "cmd":
                self.desk.handle(event.payload)
            self.link.ack(event)
