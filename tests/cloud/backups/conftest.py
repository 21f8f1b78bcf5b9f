"""Books worth backing up: the API's site (`tests/cloud/api/conftest.py`: two concentrators, a
month's opening uploaded through the real ingest) with desk recharges credited by the contract
edge, a correction, the operator log's rows and its heads signed into the heads file — and a
`voltbook-cloud` configuration pointing at them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cloud.cli import main
from cloud.db.engine import session_factory
from cloud.db.models import Recharge
from cloud.people import oplog_heads
from cloud.reports import books
from ledger.chain import NodeKey
from tests.cloud.api.conftest import NODE, Site, client, site, tokens
from tests.cloud.api.contract_edge import ContractEdge

__all__ = ["client", "site", "tokens"]


@dataclass(frozen=True)
class Cloud:
    """A cloud's files: its configuration, key, heads file and the backup key outside the
    repository."""

    config: Path
    data: Path
    key_file: Path
    heads: Path
    repository: Path


def write_config(directory: Path, engine: Engine, cloud_key: NodeKey, extra: str = "") -> Cloud:
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "cloud-key.pem").write_bytes(cloud_key.private_pem())
    secrets = directory / "secrets"
    secrets.mkdir(exist_ok=True)
    key_file = secrets / "backup.key"
    url = engine.url.render_as_string(hide_password=False)
    config = data / "cloud.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[backup]\nkey_file = "{key_file}"\n{extra}', "utf-8"
    )
    return Cloud(config, data, key_file, data / "oplog-heads.jsonl", data / "backups")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def pay(client: TestClient, edge: ContractEdge, payments: Sequence[tuple[str, int]]) -> None:
    """Desk recharges through the API, credited by the concentrator (posted)."""
    for payment, fen in payments:
        body = {"account": "A0001", "fen": fen, "method": "cash", "payment": payment}
        answer = client.post("/recharges", json=body)
        assert answer.status_code == 201, answer.text
    edge.sync(NODE)


def sign_head(engine: Engine, cloud_key: NodeKey, heads: Path, now: dt.datetime) -> None:
    with session_factory(engine)() as session:
        head = oplog_heads.current(session, cloud_key, now)
    oplog_heads.HeadsFile(heads).append(head)


def posted_payments(engine: Engine) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(Recharge.payment).where(Recharge.status == "posted")))


def recharges(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Recharge)) or 0


def sound(engine: Engine) -> list[str]:
    with session_factory(engine)() as session:
        return books.verify(session)


@pytest.fixture
def edge(site: Site) -> ContractEdge:
    return ContractEdge(site)


@dataclass(frozen=True)
class World:
    client: TestClient
    edge: ContractEdge
    engine: Engine
    cloud_key: NodeKey
    cloud: Cloud

    @property
    def config(self) -> tuple[str, str]:
        return ("--config", str(self.cloud.config))


@pytest.fixture
def world(
    client: TestClient,
    edge: ContractEdge,
    engine: Engine,
    cloud_key: NodeKey,
    tmp_path: Path,
) -> World:
    """The site's books, the API on them, and a configuration with a fresh backup key."""
    cloud = write_config(tmp_path, engine, cloud_key)
    from cloud.backups.keys import write_key_file

    write_key_file(cloud.key_file)
    return World(client, edge, engine, cloud_key, cloud)
