"""An in-process MQTT 3.1.1 broker (amqtt) for machines without Mosquitto: a loopback-only
demo broker.

It runs amqtt's asyncio broker on its own event loop in a daemon thread, plain TCP on a free
127.0.0.1 port, anonymous clients allowed, no `$SYS` topics. It has the same `host`, `port`,
`url`, `stop()`, `restart()` as `MosquittoBroker` but no TLS, no ACLs, no client ids bound to
certificates and no shared subscriptions worth relying on: any local process may connect as
any node. So it only ever listens on 127.0.0.1, the cloud starts it only as the demo's plain
listener (`cloud.services.broker.start_broker`), and tests of access control need the real
Mosquitto. Its one listener is also its `cloud_port` and `plain_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
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
RECANCEL_AFTER_S = 0.2


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
    def cloud_port(self) -> int:
        return self.port

    @property
    def plain_port(self) -> int | None:
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
        thread = threading.Thread(target=loop.run_forever, name=f"amqtt-{self._port}", daemon=True)
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
            asyncio.run_coroutine_threadsafe(_shutdown(broker), loop).result(STOP_TIMEOUT_S)
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


async def _shutdown(broker: Any) -> None:
    """`broker.shutdown()`, re-cancelling session tasks that swallowed their cancellation.

    With amqtt 0.12.1 on Python 3.11, shutting down while a client is connected can hang: the
    session's reader task is cancelled inside `asyncio.wait_for`, the cancellation is lost, and
    shutdown waits for that reader forever. Cancelling such a task again ends it.
    """
    shutdown = asyncio.ensure_future(broker.shutdown())
    this = asyncio.current_task()
    while True:
        done, _ = await asyncio.wait({shutdown}, timeout=RECANCEL_AFTER_S)
        if done:
            shutdown.result()
            return
        for task in asyncio.all_tasks():
            if task not in (shutdown, this) and task.cancelling():
                task.cancel()


async def _cancel_leftover_tasks() -> None:
    """Cancel what amqtt left running (per-session waiters), so no coroutine is destroyed
    pending when the loop closes; re-cancel, for the same reason as in `_shutdown`."""
    this = asyncio.current_task()
    deadline = time.monotonic() + STOP_TIMEOUT_S / 2
    while time.monotonic() < deadline:
        leftover = [task for task in asyncio.all_tasks() if task is not this]
        if not leftover:
            return
        for task in leftover:
            task.cancel()
        await asyncio.wait(leftover, timeout=RECANCEL_AFTER_S)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    cleanup = asyncio.run_coroutine_threadsafe(_cancel_leftover_tasks(), loop)
    with contextlib.suppress(Exception):  # best effort: the loop is stopped either way
        cleanup.result(STOP_TIMEOUT_S)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(STOP_TIMEOUT_S)
    if not thread.is_alive():
        loop.close()
