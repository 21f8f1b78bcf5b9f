"""A local hot-standby topology for tests and trials: one etcd, two Patroni nodes, each with its
PostgreSQL, on free 127.0.0.1 ports in a work directory (README "Operations → Hot standby").

    with StandbyCluster(tmp_path) as cluster:
        engine = make_engine(cluster.url)   # libpq multi-host, target_session_attrs=read-write
        node = cluster.primary()
        cluster.kill(node)                  # SIGKILL Patroni and its PostgreSQL: a dead machine
        cluster.wait_for_primary(other_than=node)
        cluster.start_node(node)            # the machine is back: it rejoins as the standby

Each node's Patroni configuration is the shipped `deploy/patroni/voltbook.yml` (so the settings
that matter, `synchronous_mode` and `synchronous_mode_strict` among them, are the ones tested)
with only the per-machine parts replaced: the node's name and addresses, its data directory,
trust authentication on loopback, and the three timings in `LOCAL_TIMINGS`, shortened so a
failover takes seconds rather than half a minute.

Debian packages: `patroni` and `etcd-server` (the Makefile installs them when run as root).
PostgreSQL refuses to run as root, so when we are root etcd and both Patroni run as the
`postgres` system user (`cloud.services.runas`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from cloud.services import runas
from cloud.services.errors import ServiceNotFound, ServiceStartFailed
from cloud.services.local import LocalServer
from cloud.services.net import LOOPBACK, free_port, log_tail, wait_for_port
from cloud.services.postgres import DATABASE, SUPERUSER, PostgresBinaries, find_postgres

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "patroni" / "voltbook.yml"
# ttl ≥ loop_wait + 2 × retry_timeout, as Patroni wants; a dead primary is replaced within
# about ttl + loop_wait seconds.
LOCAL_TIMINGS = {"ttl": 8, "loop_wait": 1, "retry_timeout": 3}
# Durability against a machine's power loss is not what a loopback test is about (processes
# are killed, the page cache survives), and fsync makes every commit slower on a shared disk.
LOCAL_PARAMETERS = {"fsync": "off", "unix_socket_directories": "", "max_connections": 60}
NODE_NAMES = ("db1", "db2")
START_TIMEOUT_S = 90.0
PASSWORD = "voltbook-local"  # loopback only, trust authentication: never checked
NOT_FOUND_HINT = (
    "the hot-standby topology needs Debian's patroni and etcd-server (apt-get install patroni "
    "etcd-server) and PostgreSQL's server binaries"
)


@dataclass
class StandbyNode:
    """One database machine of the topology: its Patroni (REST API) and its PostgreSQL."""

    name: str
    pg_port: int
    api_port: int
    home: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_path(self) -> Path:
        return self.home / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.home / "patroni.log"

    @property
    def dsn(self) -> str:
        """libpq connection string of this node's `voltbook` database (whatever its role)."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.pg_port}/{DATABASE}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def role(self) -> str | None:
        """`primary`, `replica`, … as this node's Patroni reports it; None if it does not answer."""
        found = self.rest("patroni")
        return None if found is None else str(found.get("role"))

    def rest(self, path: str) -> dict[str, Any] | None:
        """GET `path` of this node's Patroni REST API (any status), None when nobody answers."""
        url = f"http://{LOOPBACK}:{self.api_port}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:  # 503 from /primary on a replica, …: still JSON
            body = exc.read()
        except (OSError, ValueError):
            return None
        try:
            found = json.loads(body)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None


class StandbyCluster(LocalServer):
    """etcd and two Patroni nodes in `workdir`; `.url` follows the primary."""

    def __init__(
        self,
        workdir: Path,
        *,
        template: Path = TEMPLATE,
        binaries: PostgresBinaries | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self.workdir = workdir
        self.template = template
        self._binaries = binaries
        self.start_timeout = start_timeout
        self._account: runas.ServiceAccount | None = None
        self._rundir: Path | None = None
        self._rundir_is_temp = False
        self._etcd: subprocess.Popen[bytes] | None = None
        self._etcd_port = 0
        self.nodes: list[StandbyNode] = []

    # -- addresses ------------------------------------------------------------------------------
    @property
    def hosts(self) -> str:
        return ",".join(f"{LOOPBACK}:{node.pg_port}" for node in self.nodes)

    @property
    def dsn(self) -> str:
        """libpq multi-host connection string: every new connection goes to the primary."""
        return f"postgresql://{SUPERUSER}@{self.hosts}/{DATABASE}?target_session_attrs=read-write"

    @property
    def url(self) -> str:
        """The same, as the cloud's `[database] url` takes it (`cloud.database_url`)."""
        return self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    # -- life -----------------------------------------------------------------------------------
    def start(self) -> Self:
        """etcd, then both nodes; returns once there is a primary with a synchronous standby
        and the `voltbook` database exists."""
        if self.nodes:
            return self
        patroni, etcd = shutil.which("patroni"), shutil.which("etcd")
        binaries = self._binaries or find_postgres()
        if patroni is None or etcd is None or binaries is None:
            raise ServiceNotFound(NOT_FOUND_HINT)
        self._binaries = binaries
        self._account = runas.service_account((SUPERUSER,))
        self._rundir, self._rundir_is_temp = runas.runtime_dir(
            self.workdir, self._account, "voltbook-standby-"
        )
        template = yaml.safe_load(self.template.read_text())
        self._start_etcd(etcd)
        for name in NODE_NAMES:
            home = self._dir() / name
            home.mkdir(exist_ok=True)
            runas.give_to(self._account, home)
            node = StandbyNode(name, free_port(), free_port(), home)
            self._write_config(node, template)
            self.nodes.append(node)
        for node in self.nodes:
            self.start_node(node)
        self.wait_until_synchronous(self.start_timeout)
        self._create_database()
        return self

    def stop(self) -> None:
        """Kill both nodes, then stop etcd: the topology is thrown away with its directory, and
        a clean stop of a primary in strict synchronous mode takes seconds for nothing."""
        for node in self.nodes:
            self.kill(node)
        if self._etcd is not None:
            _end(self._etcd)
            self._etcd = None
        self.nodes = []

    def start_node(self, node: StandbyNode) -> None:
        """Start (or restart) `node`'s Patroni; it starts, clones or rewinds its PostgreSQL."""
        if node.running:
            return
        log_file = node.log_path.open("ab")
        try:
            node.process = subprocess.Popen(
                [shutil.which("patroni") or "patroni", str(node.config_path)],
                cwd=node.home,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **runas.popen_kwargs(self._account),
            )
        finally:
            log_file.close()

    def stop_node(self, node: StandbyNode) -> None:
        """A clean stop: Patroni stops PostgreSQL (fast mode) and gives up its leader key."""
        if node.process is not None:
            _end(node.process)
            node.process = None
        self._kill_postmaster(node)  # in case Patroni died before it could stop it

    def kill(self, node: StandbyNode) -> None:
        """The machine dies: SIGKILL to Patroni, the postmaster and every backend, at once."""
        victims = self._postgres_pids(node)
        if node.process is not None:
            victims.append(node.process.pid)
        for pid in victims:
            _signal(pid, signal.SIGKILL)
        if node.process is not None:
            node.process.wait()
            node.process = None

    # -- state ----------------------------------------------------------------------------------
    def primary(self) -> StandbyNode | None:
        """The node whose Patroni says it is the primary and whose server accepts writes."""
        for node in self.nodes:
            if node.running and node.role() in ("primary", "master"):
                return node
        return None

    def synchronous_standby(self) -> StandbyNode | None:
        """The node Patroni lists as synchronous standby (`/sync` in etcd), if it streams."""
        for node in self.nodes:
            if node.running and _is_sync(node):
                return node
        return None

    def wait_for_primary(self, timeout: float, *, other_than: StandbyNode | None = None) -> None:
        self._wait(lambda: (p := self.primary()) is not None and p is not other_than,
                   timeout, "a primary")  # fmt: skip

    def wait_until_synchronous(self, timeout: float) -> None:
        """Until there is a primary and a streaming synchronous standby."""
        self._wait(lambda: self.primary() is not None and self.synchronous_standby() is not None,
                   timeout, "a primary with a synchronous standby")  # fmt: skip

    # -- internals ------------------------------------------------------------------------------
    def _start_etcd(self, etcd: str) -> None:
        home = self._dir() / "etcd"
        home.mkdir(exist_ok=True)
        runas.give_to(self._account, home)
        client, peer = free_port(), free_port()
        self._etcd_port = client
        command = [
            etcd, "--name", "etcd1", "--data-dir", str(home / "data"),
            "--listen-client-urls", f"http://{LOOPBACK}:{client}",
            "--advertise-client-urls", f"http://{LOOPBACK}:{client}",
            "--listen-peer-urls", f"http://{LOOPBACK}:{peer}",
            "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer}",
            "--initial-cluster", f"etcd1=http://{LOOPBACK}:{peer}",
            "--initial-cluster-state", "new", "--log-outputs", "stderr",
        ]  # fmt: skip
        log_path = home / "etcd.log"
        with log_path.open("ab") as log_file:
            self._etcd = subprocess.Popen(
                command, cwd=home, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, **runas.popen_kwargs(self._account),
            )  # fmt: skip
        etcd_process = self._etcd
        if not wait_for_port(LOOPBACK, client, timeout=20,
                             alive=lambda: etcd_process.poll() is None):  # fmt: skip
            raise ServiceStartFailed(f"etcd did not start on port {client}:\n{log_tail(log_path)}")

    def _write_config(self, node: StandbyNode, template: dict[str, Any]) -> None:
        """The shipped configuration with this machine's parts replaced (module docstring)."""
        assert self._binaries is not None
        config = json.loads(json.dumps(template))  # a deep copy
        config["name"] = node.name
        address = f"{LOOPBACK}:{node.api_port}"
        config["restapi"] = {"listen": address, "connect_address": address}
        config["etcd3"] = {"hosts": [f"{LOOPBACK}:{self._etcd_port}"]}
        config["bootstrap"]["dcs"].update(LOCAL_TIMINGS)
        config["bootstrap"]["initdb"].append("no-sync")  # as fsync=off below
        config["bootstrap"]["pg_hba"] = [
            f"host replication all {LOOPBACK}/32 trust",
            f"host all all {LOOPBACK}/32 trust",
        ]
        postgresql = config["postgresql"]
        postgresql["basebackup"] = [*postgresql.get("basebackup", []), "no-sync"]
        pg_address = f"{LOOPBACK}:{node.pg_port}"
        postgresql.update(
            listen=pg_address,
            connect_address=pg_address,
            data_dir=str(node.data_dir),
            bin_dir=str(self._binaries.initdb.parent),
            pgpass=str(node.home / "pgpass"),
            parameters={**postgresql.get("parameters", {}), **LOCAL_PARAMETERS},
        )
        for role in postgresql["authentication"].values():
            role["password"] = PASSWORD
        node.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        runas.give_to(self._account, node.config_path)

    def _create_database(self) -> None:
        primary = self.primary()
        assert primary is not None
        assert self._binaries is not None
        command = [str(self._binaries.createdb), "-h", LOOPBACK, "-p", str(primary.pg_port),
                   "-U", SUPERUSER, DATABASE]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise ServiceStartFailed(f"createdb {DATABASE} failed: {result.stderr.strip()}")

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.name}:\n{log_tail(n.log_path)}" for n in self.nodes)
                raise ServiceStartFailed(f"no {what} within {timeout:.0f} s\n{tails}")
            time.sleep(0.1)

    def _postgres_pids(self, node: StandbyNode) -> list[int]:
        """The postmaster of `node` (from postmaster.pid) and its children."""
        try:
            postmaster = int((node.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = [pid for pid in _all_pids() if _parent(pid) == postmaster]
        return [postmaster, *children]

    def _kill_postmaster(self, node: StandbyNode) -> None:
        for pid in self._postgres_pids(node):
            _signal(pid, signal.SIGKILL)


def _is_sync(node: StandbyNode) -> bool:
    """Whether `node` is the synchronous standby according to its primary's Patroni."""
    cluster = node.rest("cluster")
    if cluster is None:
        return False
    for member in cluster.get("members", []):
        if member.get("name") == node.name:
            return bool(member.get("role") == "sync_standby" and member.get("state") in
                        ("streaming", "running"))  # fmt: skip
    return False


def _end(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it is gone already
        os.kill(pid, number)


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid …; comm may hold spaces and parentheses: split after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def run_until_signal(workdir: Path, out: Callable[[str], None]) -> None:
    """`voltbook-cloud standby local`: start the topology in `workdir`, say how to reach it,
    and keep it up until SIGINT or SIGTERM."""
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set())
                for number in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
    try:
        with StandbyCluster(workdir) as cluster:
            out(f"hot standby up in {cluster._dir()}:")
            for node in cluster.nodes:
                out(f"  {node.name}: PostgreSQL {LOOPBACK}:{node.pg_port}, "
                    f"Patroni http://{LOOPBACK}:{node.api_port}/ ({node.role()})")  # fmt: skip
            out(f'cloud.toml:\n  [database]\n  url = "{cluster.dsn}"')
            out("Ctrl-C stops it (and throws it away)")
            stop.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
