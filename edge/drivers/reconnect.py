"""A serial bus that survives its port: missing at boot, unplugged, busy, failing with I/O errors.

A concentrator has several RS-485 ports (USB adapters); one of them failing must stop that bus
only. `ReconnectingBus` wraps a `SerialBus` and keeps one of two states:

    state │ run(conversation)                 │ reconnect_if_due()
    ──────┼───────────────────────────────────┼─────────────────────────────────────────
    UP    │ the port's worker drives it; a    │ nothing
          │ PortError closes the port → DOWN  │
    DOWN  │ raises `BusDown` at once, no I/O  │ before `retry_at`: nothing; after it, one
          │                                   │ attempt to open the port: → UP, or DOWN with
          │                                   │ the next delay (1 s doubling to 5 min)

Reopening is only ever tried in `reconnect_if_due()` (the runtime calls it once per cycle,
before reading), so a dead port costs a cycle one `open()` at most and nothing ever sleeps:
the delays are compared against an injected monotonic clock (the runtime's), not waited out.
Meter faults (timeouts, bad checksums, refusals) are the meters' business and leave the bus up.
`health()` tells the runtime the state, so it can raise the bus's alarm and clear it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from edge.drivers.base import Conversation, SerialSettings
from edge.drivers.bus import SerialBus
from edge.drivers.errors import PortError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_S: Final = 1.0
MAX_RETRY_S: Final = 300.0


class BusDown(PortError):
    """The bus's port is down; nothing was sent. The message says why and when it retries."""


@dataclass(frozen=True, slots=True)
class BusHealth:
    """Where a bus stands: up, or down since `since` (monotonic) for `reason`."""

    up: bool
    reason: str = ""
    since: float | None = None
    failed_opens: int = 0  # attempts to reopen that failed since it went down
    retry_at: float | None = None


UP: Final = BusHealth(up=True)


class ReconnectingBus:
    """A `SerialBus` on `port` that is reopened with backoff when the port fails.

    `open_port` makes the underlying bus (tests and the simulator may pass their own);
    `monotonic` is the clock the backoff is measured on. Never raises at construction: a port
    missing at boot is a bus that starts DOWN.
    """

    def __init__(
        self,
        port: str,
        settings: SerialSettings | None = None,
        *,
        monotonic: Callable[[], float],
        open_port: Callable[[str, SerialSettings], SerialBus] = SerialBus,
        first_retry: float = FIRST_RETRY_S,
        max_retry: float = MAX_RETRY_S,
    ) -> None:
        self.port = port
        self.settings = settings or SerialSettings()
        self._monotonic = monotonic
        self._open_port = open_port
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._lock = threading.Lock()  # state changes: the poll thread vs relay sends
        self._bus: SerialBus | None = None
        self._health = UP
        self._closed = False
        self._open(first=True)

    def __repr__(self) -> str:
        state = "up" if self._health.up else f"down: {self._health.reason}"
        return f"ReconnectingBus({self.port!r}, {state})"

    def health(self) -> BusHealth:
        return self._health

    # --- the state table -------------------------------------------------------------------

    def reconnect_if_due(self) -> BusHealth:
        """Try to reopen a DOWN port whose retry time has come; returns the health after."""
        with self._lock:
            due = self._health.retry_at
            if not self._closed and due is not None and self._monotonic() >= due:
                self._open(first=False)  # only a DOWN bus has a retry time
            return self._health

    def _open(self, *, first: bool) -> None:
        try:
            self._bus = self._open_port(self.port, self.settings)
        except PortError as exc:
            self._went_down(_port_reason(exc), reopening=not first)
            return
        if not self._health.up:
            log.warning("bus %s: port reopened after %s", self.port, self._health.reason)
        self._health = UP

    def _went_down(self, reason: str, *, reopening: bool) -> None:
        now = self._monotonic()
        before = self._health
        failed = before.failed_opens + 1 if reopening and not before.up else 0
        delay = min(self._max_retry, self._first_retry * 2**failed)
        since = now if before.up or before.since is None else before.since
        self._health = BusHealth(False, reason, since, failed, now + delay)
        log.error("bus %s down: %s (next attempt in %.0f s)", self.port, reason, delay)

    def _port_failed(self, bus: SerialBus, exc: PortError) -> None:
        with self._lock:
            if self._bus is not bus:
                return  # another thread already took it down
            self._bus = None
            self._went_down(_port_reason(exc), reopening=False)
        try:
            bus.close()
        except (PortError, OSError) as close_exc:  # the port is gone: closing may fail too
            log.debug("bus %s: closing the failed port: %s", self.port, close_exc)

    # --- the Bus protocol ------------------------------------------------------------------

    def run(self, conversation: Conversation[T], *, address: str, retries: int | None = None) -> T:
        """Drive `conversation` on the port; `BusDown` at once (nothing sent) while it is down."""
        bus = self._bus
        if bus is None:
            conversation.close()
            health = self._health
            raise BusDown(f"bus {self.port} is down: {health.reason}", address=address)
        try:
            return bus.run(conversation, address=address, retries=retries)
        except BusDown:
            raise
        except PortError as exc:
            self._port_failed(bus, exc)
            raise BusDown(f"bus {self.port} went down: {exc}", address=address) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()


def _port_reason(exc: PortError) -> str:
    """What failed on the port, without the "meter …: " of the conversation it broke."""
    who = f"meter {exc.address}: " if exc.address else "bus: "
    return str(exc).removeprefix(who)


if TYPE_CHECKING:
    from edge.drivers.base import Bus

    def _satisfies_bus(bus: ReconnectingBus) -> Bus:
        return bus
