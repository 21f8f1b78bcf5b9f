"""An MQTT broker for the cloud, the demo and the tests: a real Mosquitto process on free local
ports, or an in-process amqtt broker (plain, loopback, demo only) when Mosquitto is missing.

`MosquittoBroker` writes its own `mosquitto.conf`, so the access rules the concentrators meet
in production are the ones the tests run against. With `tls` it has two or three listeners
(`per_listener_settings true`, each with its own authentication and ACL settings):

    devices  `port` on `listen`     TLS: cafile/certfile/keyfile, require_certificate,
                                      use_identity_as_username (username = certificate CN),
                                      use_username_as_clientid (client id = username),
                                      allow_anonymous false, acl_file
    cloud    `cloud_port` on         the same TLS and ACL, without use_username_as_clientid:
             127.0.0.1 only           the cloud's ingest workers are several clients with one
                                      certificate (`cloud`), so they need client ids of their own
    plain    `plain_port` on         optional, for the demo: plain MQTT, anonymous, no ACL
             127.0.0.1 only

    acl_file: device users (CN = node id), by pattern:
                  write vb/%u/up, vb/%u/status; read vb/%u/cmd, vb/%u/ack
              `cloud`: readwrite vb/# (and so `$share/ingest/vb/+/up`)

The client id is bound to the certificate on the devices listener: whatever id a device sends,
Mosquitto replaces it with the certificate's CN, so a device holding its own certificate that
connects with another node's client id is given its own id and cannot take the other's
session over (with a client id of its own choosing it would disconnect the victim, whose last
will then tells the cloud it went offline). Mosquitto's dynamic-security plugin can bind client
ids too, but only for username/password logins: its check is not called when the username
comes from the certificate, so `use_username_as_clientid` is the setting that does it here.
Without `tls` there is one plain listener on 127.0.0.1, anonymous, no ACL (tests, the proxy).

ACLs and shared subscriptions in Mosquitto 2.0: a SUBSCRIBE to `$share/<group>/<filter>` is
let through by the `$share` special case, and the acl_file is applied to each message the
subscriber would receive (a READ check on the real topic, e.g. `vb/edge-0001/up`). So the
cloud's `readwrite vb/#` is what lets it receive through the shared subscription, and a
device's subscription outside its own `vb/<cn>/…` is accepted but never delivers anything.
An unauthorised PUBLISH is acknowledged and silently dropped (MQTT 3.1.1 has no way to say no).

`restart()` keeps the ports, so tests can pull the broker out from under a syncing client and
watch it reconnect to the same address. Readiness is a TCP connect to each port, which with TLS
leaves one harmless "unexpected eof" handshake line per TLS listener at the top of the log.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from cloud.services import runas
from cloud.services.errors import ServiceNotFound, ServiceStartFailed
from cloud.services.local import LocalServer
from cloud.services.net import LOOPBACK, free_port, log_tail, wait_for_port
from cloud.services.pki import TlsFiles

log = logging.getLogger(__name__)

SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

# What every device (username = its certificate CN = node id) may do, by substitution.
DEVICE_ACL_PATTERNS: tuple[str, ...] = (
    "pattern write vb/%u/up",
    "pattern write vb/%u/status",
    "pattern read vb/%u/cmd",
    "pattern read vb/%u/ack",
)
# Extra rules per named user: the cloud reads every device's uplink and writes every downlink.
CLOUD_ACL: Mapping[str, tuple[str, ...]] = {"cloud": ("readwrite vb/#",)}


class Broker(Protocol):
    """What the cloud and the tests need from a running broker, whichever kind it is."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def cloud_port(self) -> int: ...
    @property
    def plain_port(self) -> int | None: ...
    @property
    def url(self) -> str: ...
    def stop(self) -> None: ...
    def restart(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def find_mosquitto() -> Path | None:
    """The mosquitto executable on PATH or in the sbin directories (not always on PATH)."""
    found = shutil.which("mosquitto")
    if found is None:
        extra = os.pathsep.join(SEARCH_DIRS)
        found = shutil.which("mosquitto", path=extra)
    return Path(found) if found else None


class MosquittoBroker(LocalServer):
    """A Mosquitto process with the listeners described above.

    `port`, `cloud_port`: None picks a free one; `plain_port`: None means no plain listener, 0
    a free port. `listen` is the devices listener's address (`0.0.0.0` for every interface);
    the cloud and plain listeners are on 127.0.0.1 only. `acl_users` maps a username to its
    extra topic rules (`"readwrite vb/#"`); giving it (even empty) turns ACLs on with the
    device patterns. ACLs need `tls`, because only the client certificate tells the broker
    who a client is.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        tls: TlsFiles | None = None,
        acl_users: Mapping[str, Sequence[str]] | None = None,
        *,
        listen: str = LOOPBACK,
        cloud_port: int | None = None,
        plain_port: int | None = None,
        executable: Path | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        if acl_users is not None and tls is None:
            raise ValueError("ACLs need TLS: the username comes from the client certificate")
        if tls is None and (cloud_port is not None or plain_port is not None):
            raise ValueError("without TLS the broker has one plain listener, on `port`")
        self.workdir = workdir
        self.listen = listen
        self._port = port
        self._cloud_port = cloud_port
        self._plain_port = plain_port
        self.tls = tls
        self.acl_users = acl_users
        self.executable = executable
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._rundir: Path | None = None
        self._rundir_is_temp = False
        self._account: runas.ServiceAccount | None = None
        self.startup_seconds: float | None = None

    @property
    def host(self) -> str:
        """Where to reach the devices listener from this machine."""
        return LOOPBACK if self.listen in ("0.0.0.0", "::", "") else self.listen

    @property
    def port(self) -> int:
        """The devices listener (TLS, client id bound to the certificate), or the only one."""
        if self._port is None:
            raise RuntimeError("the broker has no port until it is started")
        return self._port

    @property
    def cloud_port(self) -> int:
        """The cloud's TLS listener on 127.0.0.1 (the same port as `port` without TLS)."""
        if self.tls is None:
            return self.port
        if self._cloud_port is None:
            raise RuntimeError("the broker has no cloud port until it is started")
        return self._cloud_port

    @property
    def plain_port(self) -> int | None:
        """The plain demo listener on 127.0.0.1, if there is one (and once started)."""
        return self._plain_port or None

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._dir() / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Write the configuration, start mosquitto and wait until it accepts connections."""
        if self.running:
            return self
        executable = self.executable or find_mosquitto()
        if executable is None:
            raise ServiceNotFound(
                "mosquitto is not installed: install it (apt-get install mosquitto) or use "
                "EmbeddedBroker / start_broker(), which falls back to an in-process broker"
            )
        if self._rundir is None:
            self._account = runas.service_account(("mosquitto", "nobody"))
            self._rundir, self._rundir_is_temp = runas.runtime_dir(
                self.workdir, self._account, "voltbook-mosquitto-"
            )
        if self._port is None:
            self._port = free_port()
        if self.tls is not None and self._cloud_port is None:
            self._cloud_port = free_port()
        if self._plain_port == 0:
            self._plain_port = free_port()
        config = self._write_config()
        began = time.monotonic()
        self._stderr = (self._dir() / "mosquitto.stderr").open("ab")
        self._process = subprocess.Popen(
            [str(executable), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
        )
        process = self._process
        deadline = time.monotonic() + self.start_timeout
        if not all(
            wait_for_port(
                host,
                port,
                timeout=max(0.0, deadline - time.monotonic()),
                alive=lambda: process.poll() is None,
            )
            for host, port in self._addresses()
        ):
            self._terminate()
            raise ServiceStartFailed(
                f"mosquitto did not accept connections on {self._addresses()} within "
                f"{self.start_timeout:.0f} s (config {config}); its output and log end:\n"
                f"{log_tail(self._dir() / 'mosquitto.stderr')}\n{log_tail(self.log_path)}"
            )
        self.startup_seconds = time.monotonic() - began
        log.info(
            "mosquitto started on %s (pid %d, %.0f ms, tls=%s, acl=%s)",
            self.url,
            process.pid,
            self.startup_seconds * 1000,
            self.tls is not None,
            self.acl_users is not None,
        )
        return self

    def stop(self) -> None:
        """Terminate the broker; connected clients see the connection drop."""
        if self._process is not None:
            self._terminate()
            log.info("mosquitto on %s stopped", self.url)

    def _write_config(self) -> Path:
        rundir = self._dir()
        lines = [
            "# Written by cloud.services.broker; rewritten at every start.",
            "persistence false",
            f"log_dest file {rundir / 'mosquitto.log'}",
            *(f"log_type {kind}" for kind in ("error", "warning", "notice", "information")),
            "log_type subscribe",
            "log_type unsubscribe",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # Small ledger messages: do not let Nagle hold them back.
            "set_tcp_nodelay true",
        ]
        if self._account is not None:
            # Mosquitto drops to this user right after reading this file; everything below is
            # handed over to it.
            lines.append(f"user {self._account.name}")
        if self.tls is None:
            lines += ["per_listener_settings false", f"listener {self.port} {self.host}",
                      "allow_anonymous true"]  # fmt: skip
        else:
            lines += self._tls_listeners(self.tls)
        config = rundir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        log_file = rundir / "mosquitto.log"
        log_file.touch()
        runas.give_to(self._account, log_file)
        return config

    def _addresses(self) -> list[tuple[str, int]]:
        addresses = [(self.host, self.port)]
        if self.tls is not None:
            addresses.append((LOOPBACK, self.cloud_port))
        if self.plain_port is not None:
            addresses.append((LOOPBACK, self.plain_port))
        return addresses

    def _tls_listeners(self, tls: TlsFiles) -> list[str]:
        ca, cert, key = self._copy_tls(tls)
        secure = [
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
        ]
        if self.acl_users is not None:
            secure.append(f"acl_file {self._write_acl()}")
        lines = [
            "per_listener_settings true",
            "# Devices: the client id is replaced by the certificate's CN.",
            f"listener {self.port} {self.listen}",
            *secure,
            "use_username_as_clientid true",
            "# The cloud's workers (one certificate, several client ids): loopback only.",
            f"listener {self.cloud_port} {LOOPBACK}",
            *secure,
        ]
        if self.plain_port is not None:
            lines += [
                "# The demo's concentrators: plain MQTT, loopback only.",
                f"listener {self.plain_port} {LOOPBACK}",
                "allow_anonymous true",
            ]
        return lines

    def _write_acl(self) -> Path:
        assert self.acl_users is not None
        lines = [
            "# Devices: the username is the certificate CN, i.e. the node id.",
            *DEVICE_ACL_PATTERNS,
        ]
        for user, rules in self.acl_users.items():
            lines += ["", f"user {user}", *(f"topic {rule}" for rule in rules)]
        path = self._dir() / "acl"
        path.write_text("\n".join(lines) + "\n")
        runas.give_to(self._account, path)
        return path

    def _copy_tls(self, tls: TlsFiles) -> tuple[Path, Path, Path]:
        """Copies the broker can read after dropping root (and that survive the caller's dir)."""
        tls_dir = self._dir() / "tls"
        tls_dir.mkdir(exist_ok=True)
        copies = (tls_dir / "ca.crt", tls_dir / "server.crt", tls_dir / "server.key")
        for source, target in zip((tls.ca, tls.cert, tls.key), copies, strict=True):
            shutil.copyfile(source, target)
        copies[2].chmod(0o600)
        runas.give_to(self._account, tls_dir, *copies)
        return copies

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def start_broker(workdir: Path, **kwargs: Any) -> Broker:
    """A started broker: Mosquitto when installed, else the in-process amqtt broker.

    `kwargs` go to `MosquittoBroker` (port, tls, acl_users, listen, cloud_port, plain_port).
    Without Mosquitto only a plain loopback broker can be had: the embedded broker takes
    `plain_port` (or `port` when there is no `tls`) and is refused rather than silently run
    without TLS, ACLs and client ids bound to certificates when a TLS broker was asked for
    without a plain listener.
    """
    if find_mosquitto() is not None:
        return MosquittoBroker(workdir, **kwargs).start()
    from cloud.services.embedded_broker import EmbeddedBroker

    if kwargs.get("tls") is None and kwargs.get("acl_users") is None:
        port = kwargs.get("port")
    elif kwargs.get("plain_port") is not None:
        port = kwargs["plain_port"] or None
        log.warning(
            "mosquitto not found: no TLS listener, only plain MQTT on %s (the demo's): "
            "install mosquitto (apt-get install mosquitto) for concentrators on other hosts",
            LOOPBACK,
        )
    else:
        raise ServiceNotFound(
            "TLS, ACLs and client ids bound to certificates need mosquitto, which is not "
            "installed: apt-get install mosquitto"
        )
    log.info("mosquitto not found; falling back to the in-process amqtt broker")
    return EmbeddedBroker(port=port).start()
