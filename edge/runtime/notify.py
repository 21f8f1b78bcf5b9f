"""systemd's notify protocol over `$NOTIFY_SOCKET`, with a plain socket (no new dependency).

With `Type=notify` systemd waits for `READY=1` before it considers the service started, and
with `WatchdogSec=` it restarts the service when `WATCHDOG=1` stops arriving (a hung bus, a
deadlock). The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named in
`$NOTIFY_SOCKET` (a leading `@` is Linux's abstract namespace); `$WATCHDOG_USEC` says how often
systemd wants to hear from us. Outside systemd there is no socket and every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.failures = 0
        self._pinged = time.monotonic()

    @classmethod
    def from_environment(cls) -> Notifier:
        address = os.environ.get("NOTIFY_SOCKET") or None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog = (
            int(usec) if usec and usec.isdigit() and pid in (None, str(os.getpid())) else None
        )
        return cls(address, watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of what systemd allows, so one late ping is no restart."""
        return None if not self.watchdog_usec else self.watchdog_usec / 2_000_000

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait for a receiver that is not reading: billing must not stall on it.
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            # Losing a notification must not stop billing; systemd will say what it missed.
            log.log(
                logging.DEBUG if self.failures else logging.WARNING,
                "cannot notify systemd at %s: %s",
                self.address,
                exc,
            )
            self.failures += 1
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        self._pinged = time.monotonic()
        return self.send("WATCHDOG=1")

    def keepalive(self) -> None:
        """Ping the watchdog if half its interval has passed since the last ping: called as a
        long poll round makes progress (from bus threads too: a late or doubled ping is
        harmless, a missing one is a restart)."""
        interval = self.watchdog_interval
        if interval is not None and time.monotonic() - self._pinged >= interval:
            self.watchdog()

    def stopping(self) -> bool:
        return self.send("STOPPING=1")
