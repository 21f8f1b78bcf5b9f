"""Running a server as an unprivileged system user when we are root.

PostgreSQL refuses to run as root, and Mosquitto 2.0 started as root drops to the `mosquitto`
(or `nobody`) user right after reading its configuration, so its certificates, ACL file and log
must be readable by that user. Containers and CI machines often run tests as root, so:

- `service_account(("postgres",))` names the user to run as (None when we are not root);
- `runtime_dir(workdir, account)` gives a directory that user owns and can reach: `workdir`
  itself when every parent is traversable by it, else a fresh directory under the system temp
  dir (pytest's `tmp_path` lives under a 0700 root-owned directory);
- `popen_kwargs(account)` are the `subprocess` arguments that switch user in the child.
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.services.errors import ServiceStartFailed


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The system user a server process runs as."""

    name: str
    uid: int
    gid: int

    @property
    def groups(self) -> frozenset[int]:
        return frozenset(os.getgrouplist(self.name, self.gid))


def service_account(candidates: Sequence[str]) -> ServiceAccount | None:
    """The first existing user among `candidates` when running as root, else None."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServiceAccount(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)
    raise ServiceStartFailed(
        f"running as root and none of the users {', '.join(candidates)} exists to run the "
        f"server as; create one (e.g. `useradd --system {candidates[0]}`) or run as non-root"
    )


def runtime_dir(workdir: Path, account: ServiceAccount | None, prefix: str) -> tuple[Path, bool]:
    """A directory for the server's files, and whether it is a temporary one to delete later."""
    workdir.mkdir(parents=True, exist_ok=True)
    if account is None:
        return workdir, False
    os.chown(workdir, account.uid, account.gid)
    if all(_traversable(parent, account) for parent in workdir.resolve().parents):
        return workdir, False
    private = Path(tempfile.mkdtemp(prefix=prefix))
    os.chown(private, account.uid, account.gid)
    return private, True


def give_to(account: ServiceAccount | None, *paths: Path) -> None:
    """Hand files the server must read or write over to its user."""
    if account is None:
        return
    for path in paths:
        os.chown(path, account.uid, account.gid)


def popen_kwargs(account: ServiceAccount | None) -> dict[str, Any]:
    """`subprocess.Popen`/`run` arguments that run the child as `account`."""
    if account is None:
        return {}
    entry = pwd.getpwuid(account.uid)
    env = {
        **os.environ,
        "HOME": entry.pw_dir,
        "USER": account.name,
        "LOGNAME": account.name,
    }
    return {"user": account.uid, "group": account.gid, "extra_groups": [], "env": env}


def _traversable(path: Path, account: ServiceAccount) -> bool:
    info = path.stat()
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in account.groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)
