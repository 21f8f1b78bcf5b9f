"""Uplink batches built from the store's outbox: pure over the store (it only reads).

    outbox (ids 101 … 180, in commit order)           Batch(first=101, upto=180)
      entry seq 41 … 52   ──► ledger part: from 41, prev = hash of 40, canonical bodies,
                              one checkpoint signature over the head of 52 (node key)
      reading (a cycle)   ──► readings: every cycle's rows, columnar (`ledger.wire`)
      event / alarm       ──► events, as stored ({"id", "t", "c", "k", …})
      command_result      ──► results ({"command_id", "status", "seqs", "outcomes"})
      checkpoint          ──► nothing: the batch signs its own last entry
    + during a catch-up: the newest alarms not yet sent, from beyond `upto`, ahead of order

`first`/`upto` are the contiguous outbox ids the batch covers; an acknowledgement up to `upto`
lets the edge prune exactly those. A batch stays under a compressed byte budget and an item
count (one oversized item still goes alone: the outbox must always make progress) and never
ends inside a linked chain of transfers, so the cloud can apply what it receives.

The outbox hands typed items (`edge.store.outbox`) that go into the batch as they are: an
entry's body is the canonical transfer exactly as the ledger table holds it (the store checked
it against its stored hash), a reading item's rows are `ledger.readings.ReadingRow`s.
Ed25519 signatures are deterministic, so a resent batch of the same items is byte for byte the
batch sent before (where the budget cuts depends on the ratio learned from the last batch).

Each batch is encoded and compressed once: the number of items is chosen before encoding, from
the items' raw sizes and the ratio of compressed to raw bytes the last full batch had; only a
batch that overshoots the budget (or the 1 MiB the cloud inflates) is cut and compressed again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.store import (
    CorruptStore,
    EntryItem,
    EventItem,
    OutboxItem,
    OutboxKind,
    ReadingsItem,
    ResultItem,
    Store,
)
from ledger.chain import NodeKey, sign_checkpoint
from ledger.wire import (
    MAX_BATCH_BYTES,
    MAX_ROTATIONS,
    Batch,
    LedgerPart,
    batch_text,
    compress_batch,
)

_SHRINK = 0.9  # aim this far under the budget (compression is not linear)
_RAW_PER_BYTE = 128  # stored payload bytes per compressed byte, at most (entries: ~60)
_RAW_GUESS = 40  # … and a first guess (entries compress ~60×, readings ~24×), then learned
_PAGES = (32, 64, 128, 256)  # outbox items fetched at a time: small first, then more
_TRIES = 8  # encodes per batch at most (a second only when the first overshot the budget)


@dataclass(frozen=True, slots=True)
class UplinkLimits:
    max_bytes: int = 32 * 1024  # compressed payload budget
    max_items: int = 2000  # outbox items per batch
    priority_alarms: int = 16  # newest alarms carried ahead of order during a catch-up


@dataclass(frozen=True, slots=True)
class BuiltBatch:
    """A batch ready to publish and what it holds (for the session and the log)."""

    batch: Batch
    payload: bytes
    inflated: int  # the payload's bytes before compression (the cloud inflates at most 1 MiB)
    items: int  # outbox items covered (first … upto)
    entries: int
    readings: int
    last_seq: int | None  # the last ledger entry it carries
    ahead: tuple[int, ...]  # outbox ids of alarms carried ahead of order
    more: bool  # the outbox holds more after `upto`: a backlog is being caught up

    @property
    def first(self) -> int:
        return self.batch.first

    @property
    def upto(self) -> int:
        return self.batch.upto

    def fits(self, budget: int) -> bool:
        return len(self.payload) <= budget and self.inflated <= MAX_BATCH_BYTES

    def describe(self) -> str:
        ahead = f", {len(self.ahead)} alarms ahead" if self.ahead else ""
        return (
            f"batch {self.first}..{self.upto} ({self.entries} entries, {self.readings} readings"
            f"{ahead}, {len(self.payload) / 1024:.1f} KB)"
        )


def result_fields(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored command result in the wire's form (`command_id`, not the store's `command`)."""
    fields = dict(stored)
    return {"command_id": fields.pop("command"), **fields}


def _closes_chain(item: OutboxItem) -> bool:
    return isinstance(item, EntryItem) and not item.linked


def _chain_cut(parts: Sequence[OutboxItem], count: int) -> int:
    """`count` items, or fewer so that the prefix does not end inside a linked chain of
    transfers (or more, to the chain's end, when the prefix holds nothing but that chain)."""
    last = next((k for k in range(count - 1, -1, -1) if isinstance(parts[k], EntryItem)), None)
    if last is None or _closes_chain(parts[last]):
        return count
    for k in range(last - 1, -1, -1):
        if _closes_chain(parts[k]):
            return k + 1
    for k in range(count, len(parts)):
        if _closes_chain(parts[k]):
            return k + 1
    return count  # the chain runs on beyond what was fetched: nothing better to do


class BatchBuilder:
    """Builds the next batch after an outbox id for one node, within `limits`.

    A build fetches more items than the batch takes (the budget is found by encoding); the
    rest is kept for the next build when it continues right after this batch, so that a
    catch-up reads each item once, not once per batch it might have joined. Outbox items
    never change once written and only a prefix is ever pruned, so the kept items stay valid
    as long as the first of them is still in the outbox."""

    def __init__(self, store: Store, key: NodeKey, limits: UplinkLimits = UplinkLimits()) -> None:
        self.store = store
        self.key = key
        self.limits = limits
        self._kept_after = -1  # the outbox id `_kept` continues after
        self._kept: list[OutboxItem] = []  # items fetched beyond the last batch built
        # Compressed bytes per raw item byte of the last batch the budget cut: how many items
        # the next one takes (a fresh builder starts from a guess).
        self.ratio = 1 / _RAW_GUESS
        self.encodes = 0  # batches encoded and compressed (logs, benchmarks)

    def build(self, after_id: int, *, sent_ahead: Collection[int] = ()) -> BuiltBatch | None:
        """The batch of the items after `after_id`, or None when nothing is left to send.

        `sent_ahead` are alarm ids already carried ahead of order (not carried again)."""
        parts, more = self._fetch(after_id)
        if not parts:
            return None
        self._check_contiguous(parts)
        # As many items as the last batch's ratio of compressed to raw bytes says will fill
        # the budget: one encode and one compression, usually.
        target = self.limits.max_bytes * _SHRINK / self.ratio
        raw, guess = 0, len(parts)
        for k, part in enumerate(parts):
            raw += part.size
            if raw > target:
                guess = max(1, k)
                break
        built = self._fit(parts, guess, more, sent_ahead)
        self._kept_after, self._kept = built.upto, parts[built.items :]
        return built

    def _fetch(self, after_id: int) -> tuple[list[OutboxItem], bool]:
        """The items after `after_id`, page by page, until the item limit or until their
        payloads are surely more than a batch can hold; and whether more are waiting."""
        limit = self.limits.max_items
        cap = self.limits.max_bytes * _RAW_PER_BYTE
        parts = self._kept_items(after_id)
        raw = sum(part.size for part in parts)
        pages = 0
        while len(parts) <= limit and raw <= cap:
            wanted = min(_PAGES[min(pages, len(_PAGES) - 1)], limit + 1 - len(parts))
            pages += 1
            page = self.store.outbox(parts[-1].id if parts else after_id, wanted)
            parts += page
            raw += sum(item.size for item in page)
            if len(page) < wanted:
                return parts[:limit], len(parts) > limit
        return parts[:limit], True

    def _kept_items(self, after_id: int) -> list[OutboxItem]:
        """The items kept from the last build, if they are the ones after `after_id`
        (the next batch in order) and none of them has been pruned since."""
        kept, self._kept = self._kept, []
        if after_id != self._kept_after or not kept:
            return []
        first = self.store.outbox(after_id, 1)
        return kept if first and first[0].id == kept[0].id else []

    def _ahead(self, after_id: int, sent_ahead: Collection[int]) -> list[OutboxItem]:
        """The newest alarms beyond `after_id` not yet carried ahead."""
        wanted = self.limits.priority_alarms
        if not wanted:
            return []
        newest = self.store.outbox_newest(OutboxKind.ALARM, after_id, wanted + len(sent_ahead))
        fresh = [item for item in newest if item.id not in sent_ahead][:wanted]
        return fresh[::-1]

    def _check_contiguous(self, parts: Sequence[OutboxItem]) -> None:
        seq = None
        for entry in parts:
            if not isinstance(entry, EntryItem):
                continue
            if seq is not None and entry.seq != seq + 1:
                raise CorruptStore(
                    self.store.path, entry.seq, f"the outbox skips from entry {seq} to {entry.seq}"
                )
            seq = entry.seq

    def _fit(
        self, parts: Sequence[OutboxItem], count: int, more: bool, sent_ahead: Collection[int]
    ) -> BuiltBatch:
        """The prefix of about `count` items, encoded and compressed once; again, shorter,
        only if that overshot the budget (the raw-to-compressed ratio learned from the last
        batch makes that rare). Alarms beyond the prefix ride ahead of order, whether they
        were fetched and cut off by the budget or not fetched at all."""
        budget = self.limits.max_bytes
        count = _chain_cut(parts, max(1, min(count, len(parts))))
        for _ in range(_TRIES):
            behind = more or count < len(parts)
            ahead = self._ahead(parts[count - 1].id, sent_ahead) if behind else []
            built = self._encode(parts[:count], ahead, behind)
            if count < len(parts):  # cut by the budget: a ratio to fill the next one with
                self.ratio = len(built.payload) / max(1, sum(p.size for p in parts[:count]))
            if built.fits(budget) or count == 1:
                return built
            smaller = min(count - 1, int(count * budget * _SHRINK / len(built.payload)))
            cut = _chain_cut(parts, max(1, smaller))
            if cut >= count:  # a linked chain longer than the budget: it goes alone
                return built
            count = cut
        return built

    def _encode(
        self, parts: Sequence[OutboxItem], ahead: Sequence[OutboxItem], more: bool
    ) -> BuiltBatch:
        entries = [p for p in parts if isinstance(p, EntryItem)]
        ledger = None
        last_seq = None
        if entries:
            first, last = entries[0], entries[-1]
            checkpoint = sign_checkpoint(self.key, self.store.node, last.seq, last.hash)
            ledger = LedgerPart(
                from_seq=first.seq,
                prev=first.prev_hash,
                bodies=tuple(e.body for e in entries),
                key_id=checkpoint.key_id,
                signature=checkpoint.signature,
                rotations=tuple(self.store.key_rotations(first.seq - 1)[-MAX_ROTATIONS:]),
            )
            last_seq = last.seq
        rows = tuple(row for p in parts if isinstance(p, ReadingsItem) for row in p.rows)
        batch = Batch(
            node=self.store.node,
            first=parts[0].id,
            upto=parts[-1].id,
            ledger=ledger,
            readings=rows,
            events=tuple(p.fields for p in (*parts, *ahead) if isinstance(p, EventItem)),
            results=tuple(result_fields(p.fields) for p in parts if isinstance(p, ResultItem)),
        )
        text = batch_text(batch)
        self.encodes += 1
        return BuiltBatch(
            batch=batch,
            payload=compress_batch(text),
            inflated=len(text),
            items=len(parts),
            entries=len(entries),
            readings=len(rows),
            last_seq=last_seq,
            ahead=tuple(p.id for p in ahead),
            more=more,
        )
