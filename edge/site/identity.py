"""A concentrator's identity on disk: what `voltbook-edge provision` writes next to site.toml.

    DIR/site.toml      [site] node = the node id the cloud gave; [cloud] host, port, TLS files,
                       cloud_public_key (the rest of site.toml is kept as it was)
    DIR/node.key       the node's Ed25519 key (PEM, 0600) that signs its checkpoints
                       (or wherever [site] node_key already points)
    DIR/node.pub       its public key (PEM, 0644), beside it: what the commands that only
                       verify read (`edge.site.node_pub`)
    DIR/cloud.pub      the cloud's Ed25519 public key (PEM)
    DIR/tls/ca.crt     the CA the broker's certificate chains to
    DIR/tls/NODE.crt   the box's client certificate (CN = node id)
    DIR/tls/NODE.key   its TLS key (PEM, 0600), made on the box

Keys are written 0600 from the moment they exist, and `install` moves files into place only
when everything is written (a staging directory inside DIR, so each move is a rename on one
file system); site.toml is replaced whole, atomically. An existing identity (a node key, a
`[cloud]` section or TLS files) is never overwritten unless asked (`force`).

site.toml is edited as text, line by line: its comments and layout stay, `node` is set inside
`[site]`, and a `[cloud]` section is replaced (its tuning keys, such as `batch_bytes`, kept) or
appended; the result is parsed again before it is written.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.site.errors import SiteConfigError
from edge.site.node_pub import public_path

SITE_FILE = "site.toml"
NODE_KEY = "node.key"
CLOUD_KEY = "cloud.pub"
TLS_DIR = "tls"
CA_FILE = "ca.crt"
# The [cloud] keys provision writes; any other key of an existing [cloud] is kept.
WRITTEN = ("host", "port", "ca", "cert", "key", "cloud_public_key")
HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


@dataclass(frozen=True, slots=True)
class Identity:
    """What the cloud gave for this box, and the keys the box made (PEM)."""

    node: str
    certificate: str
    ca: str
    broker_host: str
    broker_port: int
    cloud_public_key_pem: bytes
    node_key_pem: bytes
    node_public_key_pem: bytes
    tls_key_pem: bytes


class IdentityExists(SiteConfigError):
    """The directory already holds an identity; `force` replaces it."""


def _read_site(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SiteConfigError(path, f"cannot be read as TOML ({exc}): fix it first") from None


def node_key_path(directory: Path) -> Path:
    """Where the node key goes: `[site] node_key` of an existing site.toml, else node.key."""
    data = _read_site(directory / SITE_FILE) or {}
    site = data.get("site")
    name = site.get("node_key") if isinstance(site, dict) else None
    return directory / (name if isinstance(name, str) and name.strip() else NODE_KEY)


def store_dir(directory: Path) -> Path | None:
    """The store's directory (`[site] data_dir`) when it holds anything: a ledger kept under
    the node id the box had, which the runtime refuses under another."""
    data = _read_site(directory / SITE_FILE) or {}
    site = data.get("site")
    name = site.get("data_dir") if isinstance(site, dict) else None
    store = directory / (name if isinstance(name, str) and name.strip() else "data")
    return store if store.is_dir() and any(store.iterdir()) else None


def existing(directory: Path) -> list[str]:
    """What of an identity is already in `directory` (empty: none)."""
    found = []
    data = _read_site(directory / SITE_FILE)
    if data is not None and "cloud" in data:
        found.append(f"a [cloud] section in {directory / SITE_FILE}")
    key = node_key_path(directory)
    if key.exists():
        found.append(f"the node key {key}")
    tls = directory / TLS_DIR
    if tls.is_dir() and any(tls.iterdir()):
        found.append(f"TLS files in {tls}")
    store = store_dir(directory)
    if store is not None:
        found.append(f"a store in {store}")
    return found


def check_free(directory: Path, *, force: bool) -> None:
    """`IdentityExists` naming what is there, unless `force`."""
    found = existing(directory)
    if found and not force:
        raise IdentityExists(
            directory,
            "this concentrator already has an identity ("
            + "; ".join(found)
            + "). It was provisioned before: keep it, or run provision again with --force to "
            "replace it (the cloud then knows this box as a new node)",
        )


def install(directory: Path, identity: Identity, data_dir: Path | None = None) -> Path:
    """Write every file of `identity` into `directory` and point site.toml at them (a new
    site.toml names `data_dir` as the store's folder when given); the site.toml path. Files are
    staged first, then renamed into place."""
    site_path = directory / SITE_FILE
    new_site = site_text(_current(site_path), identity, data_dir)
    key_path = node_key_path(directory)
    tls = directory / TLS_DIR
    placed = {
        key_path: identity.node_key_pem,
        public_path(key_path): identity.node_public_key_pem,
        tls / f"{identity.node}.key": identity.tls_key_pem,
        tls / f"{identity.node}.crt": identity.certificate.encode("ascii"),
        tls / CA_FILE: identity.ca.encode("ascii"),
        directory / CLOUD_KEY: identity.cloud_public_key_pem,
        site_path: new_site.encode("utf-8"),
    }
    secret = {key_path, tls / f"{identity.node}.key"}
    tls.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    with _staging(directory) as stage:
        staged = {}
        for number, (target, data) in enumerate(placed.items()):
            staged[target] = stage / f"{number}-{target.name}"
            _write(staged[target], data, 0o600 if target in secret else 0o644)
        for target, source in staged.items():
            os.replace(source, target)
    return site_path


@contextmanager
def _staging(directory: Path) -> Iterator[Path]:
    stage = Path(tempfile.mkdtemp(prefix=".provision-", dir=directory))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode: a key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _current(path: Path) -> str | None:
    if not path.exists():
        return None
    _read_site(path)  # refuse a broken one before anything is written
    return path.read_text(encoding="utf-8")


def cloud_section(identity: Identity, kept: Sequence[str] = ()) -> list[str]:
    return [
        "[cloud]                         # written by voltbook-edge provision\n",
        f"host = {_quote(identity.broker_host)}\n",
        f"port = {identity.broker_port}\n",
        f'ca = "{TLS_DIR}/{CA_FILE}"\n',
        f'cert = "{TLS_DIR}/{identity.node}.crt"\n',
        f'key = "{TLS_DIR}/{identity.node}.key"\n',
        f'cloud_public_key = "{CLOUD_KEY}"\n',
        *kept,
    ]


def site_text(current: str | None, identity: Identity, data_dir: Path | None = None) -> str:
    """site.toml with the node id and the [cloud] section of `identity` (a starter file when
    there is none, its store in `data_dir` if given: its buses come with commissioning)."""
    if current is None:
        lines = [
            "# Written by voltbook-edge provision. Add the buses ([[buses]], see README.md) —\n",
            "# commissioning does — before `voltbook-edge run --config site.toml`.\n",
            "[site]\n",
            f"node = {_quote(identity.node)}\n",
            *([] if data_dir is None else [f"data_dir = {_quote(str(data_dir))}\n"]),
            "\n",
            *cloud_section(identity),
        ]
    else:
        lines = current.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines, kept = _without_cloud(lines)
        lines = _with_node(lines, identity.node)
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["\n", *cloud_section(identity, kept)]
    text = "".join(lines)
    parsed = tomllib.loads(text)  # our own edit must read back as meant
    if parsed["site"]["node"] != identity.node or parsed["cloud"]["host"] != identity.broker_host:
        raise AssertionError("site.toml did not read back as written")
    return text


def _sections(lines: list[str]) -> list[tuple[int, str]]:
    """(line number, table name) of every table header."""
    found = []
    for number, line in enumerate(lines):
        match = HEADER.match(line)
        if match is not None:
            found.append((number, match[1].strip()))
    return found


def _span(lines: list[str], name: str) -> tuple[int, int] | None:
    headers = _sections(lines)
    for index, (start, table) in enumerate(headers):
        if table == name:
            end = headers[index + 1][0] if index + 1 < len(headers) else len(lines)
            return start, end
    return None


def _without_cloud(lines: list[str]) -> tuple[list[str], list[str]]:
    """The lines without the [cloud] table, and its keys provision does not write."""
    span = _span(lines, "cloud")
    if span is None:
        return lines, []
    start, end = span
    kept = []
    for line in lines[start + 1 : end]:
        match = KEY_LINE.match(line)
        if match is not None and match[1] not in WRITTEN:
            kept.append(line)
    return lines[:start] + lines[end:], kept


def _with_node(lines: list[str], node: str) -> list[str]:
    span = _span(lines, "site")
    if span is None:
        return ["[site]\n", f"node = {_quote(node)}\n", "\n", *lines]
    start, end = span
    for number in range(start + 1, end):
        match = KEY_LINE.match(lines[number])
        if match is not None and match[1] == "node":
            return [*lines[:number], f"node = {_quote(node)}\n", *lines[number + 1 :]]
    return [*lines[: start + 1], f"node = {_quote(node)}\n", *lines[start + 1 :]]


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
