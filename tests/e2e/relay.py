"""A TCP relay on 127.0.0.1 for the end-to-end tests: every accepted connection gets its own
upstream connection and one pump thread per direction. Subclasses decide what to admit
(`admit`) and what to do with the bytes (`relay`); `cut()` drops every current connection as a
network failure would."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Literal, Self

Direction = Literal["to_broker", "to_client"]
Pair = tuple[socket.socket, socket.socket]


class TcpRelay:
    name = "relay"

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.connections = 0  # connections relayed
        self._lock = threading.Lock()
        self._pairs: list[Pair] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._accepting = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-{self.port}", daemon=True
        )
        self._accepting.start()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    # -- what subclasses change -------------------------------------------------------------
    def admit(self) -> bool:
        """Whether to relay a new connection (False: hang up on it)."""
        return True

    def connected(self) -> None:
        """A connection is now relayed (both sides open)."""

    def relay(self, source: socket.socket, target: socket.socket, direction: Direction) -> None:
        """Move bytes from `source` to `target` until `source` closes; raw by default."""
        while data := source.recv(65536):
            target.sendall(data)

    # -- the mechanics ----------------------------------------------------------------------
    def cut(self) -> None:
        """Close every current connection, both sides, as a network drop would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            close_sockets(pair)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self.cut()
        for thread in [self._accepting, *self._threads]:
            thread.join(timeout=2)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.admit():
                close_sockets((client,))
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                close_sockets((client,))  # the client sees the refusal the target would give
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.connections += 1
                self._threads = [thread for thread in self._threads if thread.is_alive()]
            self.connected()
            for source, target, direction in (
                (client, upstream, "to_broker"),
                (upstream, client, "to_client"),
            ):
                thread = threading.Thread(
                    target=self._pump,
                    args=(source, target, direction, pair),
                    name=f"{self.name}-{self.port}-{direction}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _pump(
        self, source: socket.socket, target: socket.socket, direction: Direction, pair: Pair
    ) -> None:
        try:
            self.relay(source, target, direction)
        except (OSError, ValueError):
            pass  # a cut, a peer closing, or garbage: the connection ends either way
        finally:
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)
            close_sockets(pair)


def close_sockets(sockets: tuple[socket.socket, ...]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
