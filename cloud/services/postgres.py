"""A throwaway PostgreSQL server for tests and the demo: its own cluster in a work directory,
on a free 127.0.0.1 port, trust authentication, gone when the directory is.

    with ThrowawayPostgres(tmp_path) as pg:
        engine = create_engine(pg.url)    # postgresql+psycopg://postgres@127.0.0.1:PORT/voltbook

Startup is `initdb --no-sync` plus `pg_ctl start -w` with `fsync=off`: durability is pointless
for a cluster that lives for one test session, and it is what makes startup take about a
second rather than several. Only TCP on 127.0.0.1 is served (`unix_socket_directories` is
empty): Unix socket paths are limited to about 100 bytes and pytest's directories can be longer.
`socket=True` adds a socket in a short private directory (`socket_dir`) for clients that only
speak Unix sockets (pgBackRest), and `settings` are further `-c name=value` server settings
(archiving, a restored cluster's recovery).

PostgreSQL refuses to run as root; when we are root the server runs as the `postgres` system
user (see `cloud.services.runas`). `restart()` keeps the port, so tests can take the database
away in the middle of an ingest and bring it back at the same URL.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cloud.services import runas
from cloud.services.errors import ServiceNotFound, ServiceStartFailed
from cloud.services.local import LocalServer
from cloud.services.net import LOOPBACK, free_port, log_tail

log = logging.getLogger(__name__)

DATABASE = "voltbook"
SUPERUSER = "postgres"
START_TIMEOUT_S = 30
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
NOT_FOUND_HINT = (
    "PostgreSQL's initdb/pg_ctl were not found on PATH or in /usr/lib/postgresql/*/bin: "
    "install postgresql or set VOLTBOOK_DATABASE_URL to an existing server "
    "(Debian/Ubuntu: apt-get install postgresql)"
)


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """The server programs of one PostgreSQL installation."""

    initdb: Path
    pg_ctl: Path
    createdb: Path


def find_postgres() -> PostgresBinaries | None:
    """initdb, pg_ctl and createdb from PATH, else from the newest /usr/lib/postgresql/N/bin.

    All three come from one directory (the one initdb really lives in), so a Debian
    `pg_wrapper` on PATH never pairs a client of one version with a server of another.
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    versioned = sorted(Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")), key=_version_key, reverse=True)
    candidates += versioned
    for bindir in candidates:
        binaries = PostgresBinaries(bindir / "initdb", bindir / "pg_ctl", bindir / "createdb")
        if all(
            os.access(path, os.X_OK)
            for path in (binaries.initdb, binaries.pg_ctl, binaries.createdb)
        ):
            return binaries
    return None


class ThrowawayPostgres(LocalServer):
    """One PostgreSQL cluster in `workdir/data`, created on first start, with database
    `voltbook`; `.url` is a SQLAlchemy URL for psycopg 3."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        binaries: PostgresBinaries | None = None,
        start_timeout: int = START_TIMEOUT_S,
        settings: Mapping[str, str] | None = None,
        socket: bool = False,
    ) -> None:
        self.workdir = workdir
        self.settings = dict(settings or {})
        self.socket_dir: Path | None = None
        self._socket = socket
        self._port = port
        self._binaries = binaries
        self.start_timeout = start_timeout
        self._account: runas.ServiceAccount | None = None
        self._rundir: Path | None = None
        self._rundir_is_temp = False
        self._running = False
        self.init_seconds: float | None = None
        self.startup_seconds: float | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has no port until it is started")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL (`postgresql+psycopg://…`) of the `voltbook` database."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """libpq connection string of the `voltbook` database, for psycopg.connect()."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{DATABASE}"

    @property
    def data_dir(self) -> Path:
        return self._dir() / "data"

    @property
    def log_path(self) -> Path:
        return self._dir() / "postgres.log"

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> Self:
        """Create the cluster if needed, start the server, create `voltbook` if needed."""
        if self._running:
            return self
        binaries = self._binaries or find_postgres()
        if binaries is None:
            raise ServiceNotFound(NOT_FOUND_HINT)
        self._binaries = binaries
        if self._rundir is None:
            self._account = runas.service_account((SUPERUSER,))
            self._rundir, self._rundir_is_temp = runas.runtime_dir(
                self.workdir, self._account, "voltbook-pg-"
            )
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            began = time.monotonic()
            self._run_as_server(
                "initdb",
                [str(binaries.initdb), "-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8",
                 "--locale=C", "-D", str(self.data_dir)],
            )  # fmt: skip
            self.init_seconds = time.monotonic() - began
        if self._port is None:
            self._port = free_port()
        began = time.monotonic()
        if self._socket and self.socket_dir is None:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="vbpg-"))
            runas.give_to(self._account, self.socket_dir)
        sockets = f"'{self.socket_dir}'" if self.socket_dir is not None else "''"
        options = (
            f"-p {self._port} -c listen_addresses={LOOPBACK} -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        ) + "".join(f" -c {name}={shlex.quote(value)}" for name, value in self.settings.items())
        self._run_as_server(
            "pg_ctl start",
            [str(binaries.pg_ctl), "start", "-w", "-t", str(self.start_timeout),
             "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options],
        )  # fmt: skip
        self._running = True
        self.startup_seconds = time.monotonic() - began
        if fresh:
            self._create_database(binaries)
        log.info(
            "postgres started on %s:%d (initdb %s, start %.0f ms)",
            self.host,
            self._port,
            f"{self.init_seconds * 1000:.0f} ms" if fresh and self.init_seconds else "reused",
            self.startup_seconds * 1000,
        )
        return self

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: roll back open transactions and disconnect every client."""
        if not self._running or self._binaries is None:
            return
        self._running = False
        try:
            self._run_as_server(
                "pg_ctl stop",
                [str(self._binaries.pg_ctl), "stop", "-w", "-m", "fast", "-D", str(self.data_dir)],
            )
        except ServiceStartFailed as exc:
            # The server died on its own (killed, crashed): stopping has nothing left to do,
            # and raising here would hide whatever the caller's `with` block is unwinding from.
            log.warning("postgres on port %d was not running at stop: %s", self.port, exc)
            return
        log.info("postgres on %s:%d stopped", self.host, self.port)

    def close(self) -> None:
        super().close()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def _create_database(self, binaries: PostgresBinaries) -> None:
        # A client over TCP with trust auth: runs fine as root, needs no socket directory.
        command = [str(binaries.createdb), "-h", self.host, "-p", str(self.port),
                   "-U", SUPERUSER, DATABASE]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceStartFailed(
                f"createdb {DATABASE} failed on port {self.port}: {result.stderr.strip()}\n"
                f"{log_tail(self.log_path)}"
            )

    def _run_as_server(self, what: str, command: list[str]) -> None:
        try:
            result = subprocess.run(
                command,
                cwd=self._dir(),  # the server user may not be able to read the caller's cwd
                capture_output=True,
                text=True,
                check=False,
                **runas.popen_kwargs(self._account),
            )
        except OSError as exc:
            raise ServiceNotFound(
                f"{what}: cannot run {command[0]} ({exc}); {NOT_FOUND_HINT}"
            ) from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise ServiceStartFailed(
                f"{what} failed (exit {result.returncode}): {output}\n"
                f"server log ({self.log_path}) ends:\n{log_tail(self.log_path)}"
            )


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))
