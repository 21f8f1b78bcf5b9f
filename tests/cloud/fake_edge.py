"""A concentrator's side of the uplink, reduced to what the cloud's tests need: a real signed
chain (`ledger.chain`) and real wire batches (`ledger.wire.encode_batch`), with outbox ids."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import entry_ids
from ledger.accounts import Pocket, System, Unit, pocket_id, system_id
from ledger.chain import Chain, Entry, NodeKey, sign_checkpoint
from ledger.encoding import encode_transfer
from ledger.ids import derive_id
from ledger.key_rotation import KeyRotation
from ledger.readings import ReadingRow
from ledger.transfers import Code, TimeSource, Transfer
from ledger.wire import Batch, LedgerPart, Status, encode_batch

T0 = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ms(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def consume(node: str, n: int, account: str = "A0001", fen: int = 7) -> Transfer:
    return Transfer(
        id=derive_id("test-consume", node, n),
        debit=pocket_id(account, Pocket.PREPAID),
        credit=system_id(System.ENERGY_SALES),
        amount=fen,
        unit=Unit.FEN,
        code=Code.CONSUME,
        time=(T0 + dt.timedelta(minutes=n)).isoformat(),
        time_source=TimeSource.NTP,
        refs={"meter": "000000000001", "n": n},
    )


def subsidy(node: str, account: str, period: str, wh: int = 50_000) -> Transfer:
    return Transfer(
        id=derive_id("test-subsidy", node, account, period),
        debit=system_id(System.SUBSIDY_ISSUED),
        credit=pocket_id(account, Pocket.SUBSIDY),
        amount=wh,
        unit=Unit.WH,
        code=Code.SUBSIDY_ISSUE,
        time=T0.isoformat(),
        time_source=TimeSource.NTP,
        refs={"period": period},
    )


def edge_recharge(account: str, fen: int, payment: str, method: str = "cash") -> Transfer:
    """What the edge books for a recharge command (`edge.runtime.cycle.Runtime.recharge`)."""
    return Transfer(
        id=entry_ids.recharge(payment),
        debit=system_id(System.CASH_IN_TRANSIT),
        credit=pocket_id(account, Pocket.PREPAID),
        amount=fen,
        unit=Unit.FEN,
        code=Code.RECHARGE,
        time=T0.isoformat(),
        time_source=TimeSource.NTP,
        refs={"payment": payment, "method": method},
    )


def reading(meter: str, when: dt.datetime, energy: int, relay: int | None = 1) -> ReadingRow:
    return ReadingRow(
        meter, ms(when), energy, "1,2,3,4", 229.5, 1.25, 286.9, 0.98, relay, None, None
    )


@dataclass
class FakeEdge:
    node: str
    key: NodeKey = field(default_factory=NodeKey.generate)
    entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.chain = Chain(self.node)

    def book(self, *transfers: Transfer) -> list[Entry]:
        new = [self.chain.append(t) for t in transfers]
        self.entries.extend(new)
        return new

    def book_consumption(self, count: int, account: str = "A0001") -> list[Entry]:
        start = len(self.entries)
        return self.book(*(consume(self.node, start + k, account) for k in range(count)))

    def batch(
        self,
        first: int,
        upto: int,
        entries: Sequence[Entry] = (),
        *,
        readings: Sequence[ReadingRow] = (),
        events: Sequence[Mapping[str, Any]] = (),
        results: Sequence[Mapping[str, Any]] = (),
        key: NodeKey | None = None,
        bodies: Sequence[bytes] | None = None,
        node: str | None = None,
        rotations: Sequence[KeyRotation] = (),
    ) -> Batch:
        part = None
        if entries:
            signer = key or self.key
            last = entries[-1]
            checkpoint = sign_checkpoint(signer, self.node, last.seq, last.hash)
            part = LedgerPart(
                from_seq=entries[0].seq,
                prev=entries[0].prev_hash,
                bodies=tuple(bodies or (encode_transfer(e.transfer) for e in entries)),
                key_id=signer.key_id,
                signature=checkpoint.signature,
                rotations=tuple(rotations),
            )
        return Batch(
            node=node or self.node,
            first=first,
            upto=upto,
            ledger=part,
            readings=tuple(readings),
            events=tuple(events),
            results=tuple(results),
        )

    def payload(self, *args: Any, **kwargs: Any) -> bytes:
        return encode_batch(self.batch(*args, **kwargs))

    def status(
        self,
        online: bool = True,
        *,
        accounts: Mapping[str, Any] | None = None,
        commands: int = 0,
        key: NodeKey | None = None,
    ) -> bytes:
        """The node's status as it publishes it: signed with its key (or `key`)."""
        extra = {} if accounts is None else {"accounts": dict(accounts)}
        status = Status(self.node, online, self.chain.seq, 0, commands, extra)
        return status.signed(key or self.key)
