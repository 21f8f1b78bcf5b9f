"""An in-process MQTT 3.1.1 broker (amqtt) for machines without Mosquitto.

It runs amqtt's asyncio broker on its own event loop in a daemon thread, plain TCP on a free
127.0.0.1 port, anonymous clients allowed, no `$SYS` topics. It has the same `host`, `port`,
`url`, `stop()`, `restart()` as `MosquittoBroker` but no TLS, no ACLs and no shared
subscriptions worth relying on, so tests of access control need the real Mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from types import TracebackType
from typing import Any, Self

from cloud.services.errors import ServiceNotFound, ServiceStartFailed
from cloud.services.net import LOOPBACK, free_port

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class EmbeddedBroker:
    """amqtt on a background event loop; a context manager like `MosquittoBroker`."""

    def __init__(self, port: int | None = None, *, start_timeout: float = START_TIMEOUT_S) -> None:
        self._port = port
        self.start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self.startup_seconds: float | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker has no port until it is started")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    def start(self) -> Self:
        if self.running:
            return self
        try:
            from amqtt.broker import Broker as AmqttBroker
        except ImportError as exc:
            raise ServiceNotFound(
                "neither mosquitto nor amqtt is installed: apt-get install mosquitto, or "
                "pip install amqtt==0.12.1"
            ) from exc
        if self._port is None:
            self._port = free_port()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self._port}"}},
            # Given explicitly, this replaces amqtt's defaults (packet logging, $SYS every 20 s).
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        began = time.monotonic()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"amqtt-{self._port}", daemon=True
        )
        thread.start()

        async def create_and_start() -> Any:
            broker = AmqttBroker(config, loop=asyncio.get_running_loop())
            await broker.start()
            return broker

        future = asyncio.run_coroutine_threadsafe(create_and_start(), loop)
        try:
            self._broker = future.result(timeout=self.start_timeout)
        except Exception as exc:
            _stop_loop(loop, thread)
            raise ServiceStartFailed(
                f"the embedded amqtt broker did not start on {self.host}:{self._port}: {exc!r}"
            ) from exc
        self._loop, self._thread = loop, thread
        self.startup_seconds = time.monotonic() - began
        log.info(
            "embedded amqtt broker started on %s (%.0f ms)", self.url, self.startup_seconds * 1000
        )
        return self

    def stop(self) -> None:
        broker, self._broker = self._broker, None
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if broker is None or loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(STOP_TIMEOUT_S)
        finally:
            _stop_loop(loop, thread)
        log.info("embedded amqtt broker on %s stopped", self.url)

    def restart(self) -> None:
        """Stop and start a fresh broker on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(STOP_TIMEOUT_S)
    if not thread.is_alive():
        loop.close()
