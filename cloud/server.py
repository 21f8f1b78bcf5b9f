"""The whole cloud in one process: database, broker, ingest workers and the HTTP API.

    config = load_config(None, data_dir)                  # all defaults, or a file
    config = dataclasses.replace(config, api=ApiSettings("127.0.0.1", 0))   # any free port
    with serve_in_thread(config) as cloud:                # the demo, the e2e tests
        httpx.get(cloud.url + "/health")                  # cloud.broker_host/broker_port too

`serve_in_thread` brings the parts up in order — migrate the database, load (or create) the cloud
key, start the embedded broker if configured, start the ingest workers, then the API on its
own thread — and `RunningCloud.stop()` takes them down in reverse: the API first, so no new
command is issued while the workers stop, then the workers, the broker, the engine. A part that
fails to start stops the ones already started. `serve_until_signal` is `voltbook-cloud serve`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from cloud import keys
from cloud.app import create_app, utc_now
from cloud.config import CloudConfig
from cloud.db.engine import make_engine, upgrade
from cloud.errors import CloudError
from cloud.services.broker import Broker, MosquittoBroker, start_broker
from cloud.services.pki import TlsFiles
from cloud.worker import IngestWorker
from ledger.chain import NodeKey

log = logging.getLogger(__name__)

INGEST_GROUP = "ingest"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
CONNECT_WAIT_S = 5.0


class StartFailed(CloudError):
    """A part of the cloud did not start; the parts already started have been stopped."""


@dataclass
class RunningCloud:
    """A started cloud. `url` is the API's base URL; `stop()` is idempotent."""

    config: CloudConfig
    engine: Engine
    key: NodeKey
    url: str
    broker_host: str
    broker_port: int
    broker: Broker | None = None
    workers: list[IngestWorker] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise OSError(exc.errno, f"the API cannot listen on {host}:{port}: {exc.strerror}") from exc


def serve_in_thread(
    config: CloudConfig, *, now: Callable[[], dt.datetime] = utc_now
) -> RunningCloud:
    """Start every part of the cloud `config` describes, the API on a background thread.
    Use the result as a context manager, or call `.stop()`."""
    with contextlib.ExitStack() as stack:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(config.database_url)
        stack.callback(engine.dispose)
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            raise StartFailed(
                f"the database {config.database_shown} cannot be used: "
                f"{getattr(exc, 'orig', None) or exc}"
            ) from exc
        log.info("database %s (migrated to the latest revision)", config.database_shown)
        key = keys.load_or_create(config.cloud_key)
        log.info("cloud key %s (%s)", key.key_id, config.cloud_key)
        broker, host, port = _start_broker(config, stack)
        workers = _start_workers(
            config,
            stack,
            engine=engine,
            key=key,
            host=host,
            port=port,
            now=now,
            shared=broker is None or isinstance(broker, MosquittoBroker),
        )

        def broker_connected() -> bool:
            return all(w.connected for w in workers)

        app = create_app(engine, key, now, broker_connected=broker_connected)
        url, server, thread = _start_api(config, stack, app)
        return RunningCloud(
            config=config,
            engine=engine,
            key=key,
            url=url,
            broker_host=host,
            broker_port=port,
            broker=broker,
            workers=workers,
            _server=server,
            _thread=thread,
            _stack=stack.pop_all(),
        )
    raise AssertionError("not reached")  # the with block returns or raises


def _start_broker(
    config: CloudConfig, stack: contextlib.ExitStack
) -> tuple[Broker | None, str, int]:
    if not config.broker.embedded:
        host, port = config.broker.host, config.broker.port or 0
        log.info("broker %s:%d (external, tls=%s)", host, port, config.broker.tls is not None)
        return None, host, port
    config.broker_dir.mkdir(parents=True, exist_ok=True)
    broker = start_broker(config.broker_dir, port=config.broker.port)
    stack.callback(broker.stop)
    log.info("broker %s:%d (embedded, %s)", broker.host, broker.port, type(broker).__name__)
    if not isinstance(broker, MosquittoBroker):
        log.warning(
            "the in-process fallback broker has no MQTT shared subscriptions: one ingest worker "
            "(install mosquitto for several: apt-get install mosquitto)"
        )
    return broker, broker.host, broker.port


def _start_workers(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    *,
    engine: Engine,
    key: NodeKey,
    host: str,
    port: int,
    now: Callable[[], dt.datetime],
    shared: bool,
) -> list[IngestWorker]:
    """`shared`: the broker has MQTT shared subscriptions (mosquitto, EMQX; not amqtt)."""
    tls = config.broker.tls
    files = None if tls is None else TlsFiles(ca=tls.ca, cert=tls.cert, key=tls.key)
    run = uuid.uuid4().hex[:8]  # client ids must differ between servers on one broker
    workers = []
    for number in range(1, (config.ingest_workers if shared else 1) + 1):
        worker = IngestWorker(
            host,
            port,
            engine=engine,
            key=key,
            client_id=f"voltbook-cloud-ingest-{run}-{number}",
            tls=files,
            group=INGEST_GROUP if shared else None,
            now=now,
        )
        worker.start()
        stack.callback(worker.stop)
        workers.append(worker)
    deadline = time.monotonic() + CONNECT_WAIT_S
    if all(w.wait_connected(max(0.0, deadline - time.monotonic())) for w in workers):
        log.info("%d ingest worker(s) connected, group %r", len(workers), INGEST_GROUP)
    else:  # paho keeps trying: an external broker may come up later
        log.warning("ingest not connected to %s:%d yet; retrying in the background", host, port)
    return workers


def _start_api(
    config: CloudConfig, stack: contextlib.ExitStack, app: FastAPI
) -> tuple[str, uvicorn.Server, threading.Thread]:
    listener = _listen(config.api.host, config.api.port)
    stack.callback(listener.close)
    port = listener.getsockname()[1]
    url = dataclasses.replace(config.api, port=port).url
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.api.host,
            port=port,
            log_config=None,  # ours (`voltbook-cloud` sets it up), not uvicorn's
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="voltbook-api", daemon=True
    )
    thread.start()
    stack.callback(_stop_server, server, thread)
    _wait_started(server, thread)
    log.info("API %s (OpenAPI at %s/docs)", url, url)
    return url, server, thread


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise StartFailed("the API server stopped while starting (see the log above)")
        if time.monotonic() > deadline:
            raise StartFailed(f"the API server did not start within {START_TIMEOUT_S:.0f} s")
        thread.join(0.02)


def _stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(STOP_TIMEOUT_S)
    if thread.is_alive():
        log.warning("the API server did not stop within %.0f s", STOP_TIMEOUT_S)
    else:
        log.info("API stopped")


def serve_until_signal(config: CloudConfig) -> None:
    """Run the cloud until SIGINT or SIGTERM, then stop every part cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with serve_in_thread(config):
            while not stop.wait(1.0):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
