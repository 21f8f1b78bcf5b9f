"""edge-0001 of the API tests' market made takeable (`cloud.operations.takeovers`), by the real
domain code: its open refund voided on its chain (an open pending refuses a takeover) and a
configuration from the cloud applied (the accounts and meters it runs)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Engine

from cloud.chains import commands
from cloud.db.engine import session_factory
from cloud.db.models import CommandStatus
from ledger.accounts import Pocket, pocket_id
from ledger.chain import NodeKey
from ledger.ids import derive_id
from ledger.signed import CommandKind
from ledger.transfers import Code, Kind
from ledger.wire import AckStatus
from tests.cloud.api.conftest import M1, M2, NODE, REFUNDS, Site, transfer

DOCUMENTS = {
    "accounts": [{"id": "A0001"}, {"id": "A0002"}],
    "meters": [{"id": M1, "account": "A0001"}, {"id": M2, "account": "A0001"}],
}


def make_takeable(site: Site, engine: Engine, key: NodeKey, now: dt.datetime) -> None:
    pending = transfer(
        7, pocket_id("A0001", Pocket.PREPAID), REFUNDS, 1_000, Code.REFUND, kind=Kind.PENDING
    )  # the market's open refund (`opening_transfers`)
    void = dataclasses.replace(pending, id=derive_id("test", NODE, 8), kind=Kind.VOID,
                               pending_id=pending.id)  # fmt: skip
    ack = site.upload(NODE, [void])
    assert ack.status is AckStatus.OK, ack
    with session_factory(engine).begin() as session:
        args = {"version": 1, "documents": DOCUMENTS}
        config = commands.issue(session, NODE, CommandKind.CONFIG, args, key=key, now=now)
        assert commands.record_outcome(session, NODE, config.id, CommandStatus.APPLIED,
                                       result={}, now=now)  # fmt: skip
