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

With `[notices]` configured, a thread plans and sends notices to merchants
(`cloud.notices.service.NoticeLoop`), stopped before the workers. Another raises and clears
the silent concentrators' alarms every minute (`cloud.operations.silence`), with the `now`
given here.

The embedded broker is Mosquitto with TLS and ACLs (`cloud.services.broker`): a CA made once in
`pki/` of the data directory, a broker certificate for `[broker] names` and the cloud's client
certificate (CN `cloud`) issued from it at every start; devices connect on `listen`:`port` with
certificates from the same CA (`voltbook-cloud device-cert`), the ingest workers on the
broker's loopback cloud listener, and with `plain_port` the demo's concentrators on a plain
loopback listener. Without Mosquitto only that plain listener can be had (amqtt, loopback).

With `[api] workers = N` (N > 1) the API is served by N processes on one listening socket: this
one, and N - 1 started here (spawned, so they share no state) that run the API alone — no
migration, broker or ingest worker, which stay in this process only. They see the ingest's
broker connection for `/health` through a flag this process keeps current, and are stopped
first (SIGTERM: uvicorn finishes the requests under way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import multiprocessing
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from types import FrameType, TracebackType
from typing import Any, Self

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from uvicorn.config import SSL_PROTOCOL_VERSION, create_ssl_context

from cloud import heap, keys, logs
from cloud.app import create_app, utc_now
from cloud.config import BROKER_NAMES, CloudConfig
from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.errors import CloudError
from cloud.ingest.claims import Enrolment
from cloud.ingest.routing import Partition, Route, SharedGroup
from cloud.ingest.worker import IngestWorker
from cloud.metrics.endpoint import MetricsEndpoint
from cloud.notices.service import NoticeLoop, NoticeService, channels_of
from cloud.operations import silence
from cloud.payments.daily import RefundRounds
from cloud.payments.providers import Providers
from cloud.payments.sweeper import SWEEP_EVERY_S, Sweeper
from cloud.people import oplog_heads
from cloud.services import ca_rotation
from cloud.services.broker import CLOUD_ACL, Broker, MosquittoBroker, start_broker
from cloud.services.errors import ServiceNotFound
from cloud.services.net import LOOPBACK
from cloud.services.pki import (
    TlsFiles,
    issue_client_cert,
    issue_server_cert,
    load_or_create_ca,
)
from cloud.web.wechat_login import WechatOAuth, oauth_of
from ledger import key_files
from ledger.chain import NodeKey

log = logging.getLogger(__name__)

INGEST_GROUP = "ingest"
# A start that takes longer is a hung process, not a slow one: spawning an API process imports
# the whole app (seconds on an idle 2-core server, over 15 s on a loaded one).
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
CONNECT_WAIT_S = 5.0
PROCESS_LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
BROKER_STATE_EVERY_S = 0.5  # how often the API processes' view of the broker is refreshed


class StartFailed(CloudError):
    """A part of the cloud did not start; the parts already started have been stopped."""


@dataclass
class RunningCloud:
    """A started cloud. `url` is the API's base URL; `stop()` is idempotent."""

    config: CloudConfig
    engine: Engine
    key: NodeKey
    url: str
    broker_host: str  # where concentrators connect: the devices listener (TLS when embedded)
    broker_port: int
    broker: Broker | None = None
    plain_port: int | None = None  # the embedded broker's plain loopback listener (the demo's)
    workers: list[IngestWorker] = field(default_factory=list)
    api_processes: list[BaseProcess] = field(default_factory=list)  # `[api] workers` - 1
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


def listen(host: str, port: int) -> socket.socket:
    """The API's listening socket (`port` 0: any free port), for uvicorn's `sockets=`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        plain = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise OSError(exc.errno, f"the API cannot listen on {host}:{port}: {exc.strerror}") from exc
    # Marked TCP explicitly: asyncio sets TCP_NODELAY only on connections whose socket says
    # `proto == IPPROTO_TCP`, and `create_server` leaves it 0. Without it uvicorn's separate
    # writes of a response's head and body meet Nagle's algorithm and the client's delayed ACK:
    # every answer on a kept-alive connection waited 40 ms.
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=plain.detach())


def serve_in_thread(
    config: CloudConfig, *, now: Callable[[], dt.datetime] = utc_now
) -> RunningCloud:
    """Start every part of the cloud `config` describes, the API on a background thread.
    Use the result as a context manager, or call `.stop()`."""
    if config.api.workers > 1 and now is not utc_now:
        raise StartFailed("API processes keep the system clock: `now` needs [api] workers = 1")
    tls_options = api_tls_options(config)  # a key that cannot be opened: before anything starts
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
        key = keys.load_or_create(config.cloud_key)  # one that cannot be opened: nothing runs
        log.info("cloud key %s (%s)", key.key_id, config.cloud_key)
        try:
            broker, ingest = _start_broker(config, stack)
        except key_files.KeyFileError as exc:
            raise StartFailed(f"the broker's CA key: {exc}") from exc
        workers = _start_workers(
            config,
            stack,
            engine=engine,
            key=key,
            link=ingest,
            now=now,
            shared=broker is None or isinstance(broker, MosquittoBroker),
        )

        _start_anchor(config, stack, engine=engine, key=key, now=now, workers=workers)
        _start_silence(config, stack, engine=engine, now=now)
        providers = _start_payments(config, stack, engine=engine, key=key, now=now)
        _start_notices(config, stack, engine=engine, now=now)

        def broker_connected() -> bool:
            return all(w.connected for w in workers)

        enrolment = enrolment_of(config, broker)
        app = create_app(engine, key, now, broker_connected=broker_connected,
                         approve_above_fen=config.approve_above_fen,
                         trusted_proxies=config.api.trusted_proxies,
                         oplog_heads=config.oplog_heads, providers=providers,
                         wechat_oauth=wechat_oauth(config), enrolment=enrolment,
                         update_bundles=config.update_bundles,
                         tls_proxy=config.api.tls_proxy,
                         retired_keys=keys.retired_keys(config.cloud_key),
                         metrics=metrics_of(config),
                         silent_after=config.silent_after)  # fmt: skip
        url, server, thread, listener = _start_api(config, stack, app, tls_options)
        processes = _start_api_processes(config, stack, listener, broker_connected, enrolment)
        log.info("%d long-lived objects set aside from the collector", heap.settle())
        stack.callback(heap.thaw)
        return RunningCloud(
            config=config,
            engine=engine,
            key=key,
            url=url,
            broker_host=config.broker.host if broker is None else broker.host,
            broker_port=(config.broker.port or 0) if broker is None else broker.port,
            broker=broker,
            plain_port=None if broker is None else broker.plain_port,
            workers=workers,
            api_processes=processes,
            _server=server,
            _thread=thread,
            _stack=stack.pop_all(),
        )
    raise AssertionError("not reached")  # the with block returns or raises


def enrolment_of(config: CloudConfig, broker: Broker | None) -> Enrolment:
    """What `POST /provision` hands a claimed box: the embedded broker's CA (None for an
    external broker, or the plain demo broker, which has no TLS listener) and the devices
    listener as boxes reach it: `[provision]` if set, else the first of `[broker] names` beyond
    localhost, else the listener's own address and port."""
    settings = config.broker
    ca = ca_rotation.issuing_ca(config.pki_dir)  # the new CA during a rotation
    tls = isinstance(broker, MosquittoBroker) and ca.cert.is_file() and ca.key.is_file()
    if broker is None:
        host, port = settings.host, settings.port or 0
    else:
        host, port = broker.host, broker.port
        named = [name for name in settings.names if name not in BROKER_NAMES]
        if named:  # else the listener's address (loopback when it listens on all)
            host = named[0]
    return Enrolment(
        ca=ca if tls else None,
        trust=ca_rotation.trust_bundle(config.pki_dir) if tls else None,
        broker_host=config.provision.broker_host or host,
        broker_port=config.provision.broker_port or port,
    )


def _start_anchor(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    *,
    engine: Engine,
    key: NodeKey,
    now: Callable[[], dt.datetime],
    workers: list[IngestWorker],
) -> oplog_heads.Anchor:
    """Sign the operator log's head now, every `[oplog] sign_every` seconds and at stop, into
    the heads file and the ingest's acks (`cloud.people.oplog_heads`)."""
    anchor = oplog_heads.Anchor(
        session_factory(engine), key, oplog_heads.HeadsFile(config.oplog_heads), now
    )
    anchor.sign()
    for worker in workers:
        worker.ingest.oplog_head = anchor.latest
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(config.oplog_sign_every):
            try:
                anchor.sign()
            except (SQLAlchemyError, OSError):  # the next round tries again
                log.exception("the operator log's head could not be signed")

    thread = threading.Thread(target=run, name="voltbook-oplog-anchor", daemon=True)
    thread.start()

    def finish() -> None:
        stop.set()
        thread.join(STOP_TIMEOUT_S)
        with contextlib.suppress(SQLAlchemyError, OSError):
            anchor.sign()

    stack.callback(finish)
    log.info("operator log heads signed into %s every %d s", config.oplog_heads,
             config.oplog_sign_every)  # fmt: skip
    return anchor


def _every(
    stack: contextlib.ExitStack, name: str, seconds: float, work: Callable[[], None]
) -> None:
    """Run `work` every `seconds` on a thread of its own until the stack unwinds; a round the
    database failed is logged and the next one tries again."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(seconds):
            try:
                work()
            except SQLAlchemyError:
                log.exception("the %s round failed", name)

    thread = threading.Thread(target=run, name=f"voltbook-{name}", daemon=True)
    thread.start()

    def finish() -> None:
        stop.set()
        thread.join(STOP_TIMEOUT_S)

    stack.callback(finish)


def _start_silence(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    *,
    engine: Engine,
    now: Callable[[], dt.datetime],
) -> None:
    """Raise and clear the silent concentrators' alarms every `silence.SWEEP_EVERY_S`
    (`cloud.operations.silence`)."""
    sessions = session_factory(engine)

    def sweep() -> None:
        with sessions.begin() as session:
            swept = silence.sweep(session, now(), config.silent_after)
        if swept.raised or swept.cleared:
            log.info("silent concentrators: %d alarms raised, %d cleared", swept.raised,
                     swept.cleared)  # fmt: skip

    _every(stack, "silence-sweeper", silence.SWEEP_EVERY_S, sweep)


def metrics_of(config: CloudConfig) -> MetricsEndpoint | None:
    """`GET /metrics` as `[metrics]` configures it (None: not served)."""
    if config.metrics is None:
        return None
    try:
        token = config.metrics.token()
    except OSError as exc:
        raise StartFailed(f"the [metrics] token file cannot be read: {exc}") from exc
    return MetricsEndpoint(token=token, restore_drill=config.restore_drill)


def wechat_oauth(config: CloudConfig) -> WechatOAuth | None:
    """The phone page's WeChat login, on the Official Account of `[notices.wechat_oa]` (none
    without one: merchants log in with a password)."""
    oa = config.notices.wechat_oa if config.notices is not None else None
    return None if oa is None else oauth_of(oa.api_base, oa.appid, oa.secret())


def _start_payments(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    *,
    engine: Engine,
    key: NodeKey,
    now: Callable[[], dt.datetime],
) -> Providers | None:
    """The payment providers `[payments]` configures, and the sweeper that settles what no
    notification did, every `SWEEP_EVERY_S` (`cloud.payments.sweeper`), with the refunds'
    check and the daily reconciliation (`cloud.payments.daily`). None: no payments."""
    if config.payments is None:
        return None
    try:
        providers = Providers.load(config.payments, now)
    except (OSError, ValueError) as exc:
        raise StartFailed(f"the [payments] keys cannot be used: {exc}") from exc
    stack.callback(providers.close)
    sweeper = Sweeper(session_factory(engine), providers, key, now)
    rounds = RefundRounds(session_factory(engine), providers, now)  # refunds, daily bills

    def sweep() -> None:  # one order's trouble is caught inside; what escapes is the database
        sweeper.sweep()
        rounds.round()

    _every(stack, "payment-sweeper", SWEEP_EVERY_S, sweep)
    log.info("online payments: %s", ", ".join(
        name for name in ("wechat", "alipay") if getattr(providers, name) is not None))  # fmt: skip
    return providers


def _start_notices(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    *,
    engine: Engine,
    now: Callable[[], dt.datetime],
) -> NoticeLoop | None:
    """Plan and send notices to merchants every `[notices] every` seconds (`cloud.notices`);
    nothing without a `[notices]` table."""
    settings = config.notices
    if settings is None:
        return None
    channels = channels_of(settings)
    service = NoticeService(session_factory(engine), settings, channels, now,
                            readers=session_factory(engine, read_only=True))  # fmt: skip
    loop = NoticeLoop(service, settings.every).start()
    stack.callback(channels.close)
    stack.callback(loop.stop)
    log.info("notices every %.0f s: WeChat OA %s, SMS %s", settings.every,
             settings.wechat_oa.api_base if settings.wechat_oa else "off",
             (settings.sms.url or settings.sms.file) if settings.sms else "off")  # fmt: skip
    return loop


@dataclass(frozen=True, slots=True)
class IngestLink:
    """Where and how the ingest workers connect to the broker."""

    host: str
    port: int
    tls: TlsFiles | None


def _start_broker(
    config: CloudConfig, stack: contextlib.ExitStack
) -> tuple[Broker | None, IngestLink]:
    settings = config.broker
    if not settings.embedded:
        tls = settings.tls
        files = None if tls is None else TlsFiles(ca=tls.ca, cert=tls.cert, key=tls.key)
        port = settings.port or 0
        log.info("broker %s:%d (external, tls=%s)", settings.host, port, files is not None)
        return None, IngestLink(settings.host, port, files)
    config.broker_dir.mkdir(parents=True, exist_ok=True)
    ca = load_or_create_ca(config.pki_dir)
    tls_dir = config.broker_dir / "tls"
    server = issue_server_cert(
        ca, tls_dir, "broker", dns_names=settings.dns_names, ip_addresses=settings.ip_addresses
    )
    cloud_tls = issue_client_cert(ca, tls_dir, keys.CLOUD_NODE)
    # Client certificates of either CA during a rotation (`cloud.services.ca_rotation`).
    trust = dataclasses.replace(server, ca=ca_rotation.trust_bundle(config.pki_dir))
    try:
        broker = start_broker(
            config.broker_dir,
            port=settings.port,
            tls=trust,
            acl_users=CLOUD_ACL,
            listen=settings.listen,
            plain_port=settings.plain_port,
        )
    except ServiceNotFound as exc:
        raise StartFailed(
            f"{exc}; or set [broker] plain_port for a plain loopback-only demo broker"
        ) from exc
    stack.callback(broker.stop)
    log.info("broker %s:%d (embedded, %s)", broker.host, broker.port, type(broker).__name__)
    if not isinstance(broker, MosquittoBroker):
        log.warning(
            "the in-process fallback broker serves plain MQTT on 127.0.0.1 only, with no TLS, "
            "ACLs or shared subscriptions: the demo's concentrators only "
            "(install mosquitto for real ones: apt-get install mosquitto)"
        )
        return broker, IngestLink(broker.host, broker.port, None)
    log.info(
        "devices connect with TLS certificates from CA %s; the cloud on 127.0.0.1:%d; "
        "plain demo listener: %s", ca.cert, broker.cloud_port, broker.plain_port or "none",
    )  # fmt: skip
    return broker, IngestLink(LOOPBACK, broker.cloud_port, cloud_tls)


def worker_routes(config: CloudConfig) -> list[Route]:
    """The route of each of this server's ingest workers (`[ingest]`)."""
    routing, workers = config.ingest_routing, config.ingest_workers
    if routing.broker:
        return [SharedGroup(INGEST_GROUP)] * workers
    count = routing.partitions or workers
    return [Partition(routing.partition + n, count) for n in range(workers)]


def _start_workers(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    *,
    engine: Engine,
    key: NodeKey,
    link: IngestLink,
    now: Callable[[], dt.datetime],
    shared: bool,
) -> list[IngestWorker]:
    """`shared`: the broker has MQTT shared subscriptions (mosquitto, EMQX; not amqtt)."""
    if config.ingest_routing.broker and not shared:
        raise StartFailed('[ingest] routing = "broker" needs a broker with shared subscriptions; '
                          "the in-process fallback broker has none")  # fmt: skip
    run = uuid.uuid4().hex[:8]  # client ids must differ between servers on one broker
    workers = []
    for number, route in enumerate(worker_routes(config), 1):
        worker = IngestWorker(
            link.host,
            link.port,
            engine=engine,
            key=key,
            client_id=f"voltbook-cloud-ingest-{run}-{number}",
            tls=link.tls,
            route=route,
            now=now,
        )
        worker.start()
        stack.callback(worker.stop)
        workers.append(worker)
    deadline = time.monotonic() + CONNECT_WAIT_S
    if all(w.wait_connected(max(0.0, deadline - time.monotonic())) for w in workers):
        log.info("%d ingest worker(s) connected: %s", len(workers),
                 ", ".join(str(w.route) for w in workers))  # fmt: skip
    else:  # paho keeps trying: an external broker may come up later
        log.warning(
            "ingest not connected to %s:%d yet; retrying in the background", link.host, link.port
        )
    return workers


def api_tls_options(config: CloudConfig) -> dict[str, Any]:
    """uvicorn's TLS settings for `[api] tls_cert`/`tls_key` (none without them), checked
    here: a key that cannot be opened stops the start with the reason, before any port is
    bound — and never leaves OpenSSL asking for a passphrase on the terminal."""
    tls = config.api.tls
    if tls is None:
        return {}
    try:
        secret = key_files.passphrase()
        encrypted = key_files.is_encrypted(tls.key.read_bytes())
    except (key_files.KeyFileError, OSError) as exc:
        raise StartFailed(f"the API's TLS key {tls.key} cannot be used: {exc}") from exc
    if encrypted and secret is None:
        raise StartFailed(f"the API's TLS key {tls.key} is encrypted and no key passphrase is "
                          f"configured: set {key_files.WHERE}")  # fmt: skip
    if not encrypted:
        log.warning("the API's TLS key %s is stored unencrypted: configure a key passphrase "
                    "and run `%s`", tls.key, keys.ENCRYPT_HINT)  # fmt: skip
    try:
        password = None if secret is None or not encrypted else secret.decode("utf-8")
    except UnicodeDecodeError:
        raise StartFailed(
            "the key passphrase must be UTF-8 text to open the API's TLS key"
        ) from None
    options: dict[str, Any] = {
        "ssl_certfile": str(tls.cert),
        "ssl_keyfile": str(tls.key),
        "ssl_keyfile_password": password,
    }
    try:
        create_ssl_context(
            tls.cert, tls.key, password, SSL_PROTOCOL_VERSION, ssl.CERT_NONE, None, None
        )
    except (ssl.SSLError, OSError) as exc:
        problem = "the key passphrase is wrong" if encrypted else exc
        raise StartFailed(
            f"the API's TLS certificate {tls.cert} and key {tls.key} cannot be used: {problem}"
        ) from exc
    return options


def _start_api(
    config: CloudConfig, stack: contextlib.ExitStack, app: FastAPI, tls_options: dict[str, Any]
) -> tuple[str, uvicorn.Server, threading.Thread, socket.socket]:
    listener = listen(config.api.host, config.api.port)
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
            proxy_headers=False,  # `[api] trusted_proxies` decide (`cloud.api.guards`)
            **tls_options,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="voltbook-api", daemon=True
    )
    thread.start()
    stack.callback(_stop_server, server, thread)
    _wait_started(server, thread)
    log.info("API %s (OpenAPI at %s/docs)", url, url)
    return url, server, thread, listener


def _start_api_processes(
    config: CloudConfig,
    stack: contextlib.ExitStack,
    listener: socket.socket,
    broker_connected: Callable[[], bool],
    enrolment: Enrolment,
) -> list[BaseProcess]:
    """`[api] workers` - 1 more processes serving the API on `listener`, started and ready."""
    extra = config.api.workers - 1
    if extra < 1:
        return []
    context = multiprocessing.get_context("spawn")
    broker_up = context.Event()
    _mirror_broker_state(stack, broker_connected, broker_up)
    level = logging.getLogger().getEffectiveLevel()
    log_format = "json" if logs.logs_json() else "text"  # the processes log as this one does
    processes: list[BaseProcess] = []
    ready = []
    for number in range(2, extra + 2):
        started = context.Event()
        process = context.Process(
            target=_api_process,
            args=(config, listener, broker_up, started, level, enrolment, log_format),
            name=f"voltbook-api-{number}",
            daemon=True,
        )
        process.start()
        stack.callback(_stop_process, process)
        processes.append(process)
        ready.append(started)
    deadline = time.monotonic() + START_TIMEOUT_S
    for waiting, started in zip(processes, ready, strict=True):
        while not started.wait(0.05):
            if not waiting.is_alive():
                raise StartFailed(f"API process {waiting.name} stopped while starting")
            if time.monotonic() > deadline:
                raise StartFailed(f"API process {waiting.name} did not start in time")
    log.info("API served by %d processes (pids %s and this one)", config.api.workers,
             ", ".join(str(p.pid) for p in processes))  # fmt: skip
    return processes


def _mirror_broker_state(
    stack: contextlib.ExitStack, broker_connected: Callable[[], bool], broker_up: ProcessEvent
) -> None:
    """Keep `broker_up` set while every ingest worker is connected (for the processes' /health)."""
    stop = threading.Event()

    def mirror() -> None:
        while True:
            if broker_connected():
                broker_up.set()
            else:
                broker_up.clear()
            if stop.wait(BROKER_STATE_EVERY_S):
                return

    thread = threading.Thread(target=mirror, name="voltbook-broker-state", daemon=True)
    thread.start()
    stack.callback(thread.join, STOP_TIMEOUT_S)
    stack.callback(stop.set)


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that sets `started` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, started: ProcessEvent) -> None:
        super().__init__(config)
        self.announce = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.announce.set()


def _api_process(  # noqa: PLR0917 (multiprocessing passes arguments by position)
    config: CloudConfig,
    listener: socket.socket,
    broker_up: ProcessEvent,
    started: ProcessEvent,
    level: int,
    enrolment: Enrolment,
    log_format: str = "text",
) -> None:
    """The body of an API process: the API alone, on the socket the first process listens on.
    uvicorn stops it on SIGTERM (or SIGINT), finishing the requests under way."""
    logs.configure(level, log_format, PROCESS_LOG_FORMAT)
    engine = make_engine(config.database_url)
    try:
        app = create_app(engine, keys.load(config.cloud_key), broker_connected=broker_up.is_set,
                         approve_above_fen=config.approve_above_fen,
                         trusted_proxies=config.api.trusted_proxies,
                         oplog_heads=config.oplog_heads,
                         providers=None if config.payments is None
                         else Providers.load(config.payments, utc_now),
                         wechat_oauth=wechat_oauth(config), enrolment=enrolment,
                         update_bundles=config.update_bundles,
                         tls_proxy=config.api.tls_proxy,
                         retired_keys=keys.retired_keys(config.cloud_key),
                         metrics=metrics_of(config),
                         silent_after=config.silent_after)  # fmt: skip
        server = _AnnouncingServer(
            uvicorn.Config(
                app,
                log_config=None,
                lifespan="off",
                timeout_graceful_shutdown=5,
                proxy_headers=False,
                **api_tls_options(config),
            ),
            started,
        )
        heap.settle()
        server.run(sockets=[listener])
    finally:
        engine.dispose()


def _stop_process(process: BaseProcess) -> None:
    process.terminate()
    process.join(STOP_TIMEOUT_S)
    if process.is_alive():
        log.warning("API process %s did not stop within %.0f s", process.name, STOP_TIMEOUT_S)
        process.kill()
        process.join(STOP_TIMEOUT_S)


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
