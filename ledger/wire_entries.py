"""The ledger entries of an uplink batch as columns (batch format 2, `ledger.wire`). Pure.

A version-2 body (`ledger.encoding_v2`) is the one encoding of its transfer, so a batch carries
the transfers' fields column by column and the receiver encodes them again into exactly the
bytes the edge stored and hashed. It recomputes every hash from `prev` and checks the one
signature over the last, as for bodies sent as they are, so a field changed on the way cannot
hide. Columns compress several times better than the bodies: ids that the refs derive
(`ledger.entry_ids.derived_id`) are sent as a small index instead of 16 bytes of hash, and
registers as differences.

    {"accounts": ["A0001:prepaid", "sys:energy_sales", …],  # debit and credit, by index
     "times": ["2026-11-01T08:15:00+08:00", …],            # times, by index
     "texts": ["000000000001", …],                         # text ref values, by index
     "id": [0, 1, "<32 hex digits>", …],   # `derived_id(code, refs, index)`'s index, or the id
     "c": [code], "k": [kind], "s": [time source],   # indexes into `ledger.encoding_v2` tables
     "l": [0 | 1], "a": [amount], "d": [debit], "cr": [credit], "t": [time],
     "p": [null | "<32 hex digits>"],                # pending ids; left out when there are none
     "refs": {"reg_from": [4171050, null, …], …},    # integer refs; null: the entry has none
     "text_refs": {"meter": [0, 0, …], …}}           # text refs, by index into "texts"

An integer ref is the difference from the same ref of the previous entry of the same meter (its
text ref `meter`; entries without one are a group of their own), the first one absolute.

Decoding is total like the rest of the wire: any JSON value gives the bodies or `WireError`.
Each entry is built as a `Transfer`, which checks every value, then encoded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ledger.accounts import AccountId, unit_of
from ledger.encoding_v2 import (
    CODES,
    FORMAT_V2,
    KINDS,
    TIME_SOURCES,
    decode_transfer_v2,
    encode_transfer_v2,
)
from ledger.entry_ids import derivation_of, derived_id
from ledger.errors import DecodeError
from ledger.transfers import Code, RefValue, Transfer
from ledger.units import MAX_AMOUNT

_V2 = bytes((FORMAT_V2,))
_HEX_ID = re.compile("[0-9a-f]{32}")
_COLUMNS = ("id", "c", "k", "s", "l", "a", "d", "cr", "t")
_NUL = "\x00"
_GROUP = "meter"  # integer refs are differences within the entries of one meter


class _Index(dict[str, int]):
    """Values in order of first use, each given its index."""

    def of(self, value: str) -> int:
        return self.setdefault(value, len(self))


def encode_entries(bodies: Sequence[bytes]) -> dict[str, Any] | None:
    """The columns of `bodies`, or None when one is not a version-2 body or holds a NUL
    character (those go as they are, `ledger.wire`)."""
    if not bodies or any(b[:1] != _V2 for b in bodies):
        return None
    accounts, times, texts = _Index(), _Index(), _Index()
    cols: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    pending: list[str | None] = []
    numbers: dict[str, list[int | None]] = {}
    words: dict[str, list[int | None]] = {}
    last: dict[RefValue | None, dict[str, int]] = {}
    for n, body in enumerate(bodies):
        t = decode_transfer_v2(body)
        if _NUL in t.time or any(isinstance(v, str) and _NUL in v for v in t.refs.values()):
            return None  # the wire's JSON holds no NUL (PostgreSQL's text cannot): as they are
        derivation = derivation_of(t.code, t.refs, t.id, likely=t.debit.partition(":")[2])
        row = (
            f"{t.id:032x}" if derivation is None else derivation,
            CODES.index(t.code), KINDS.index(t.kind), TIME_SOURCES.index(t.time_source),
            int(t.linked), t.amount, accounts.of(t.debit), accounts.of(t.credit), times.of(t.time),
        )  # fmt: skip
        for name, value in zip(_COLUMNS, row, strict=True):
            cols[name].append(value)
        pending.append(None if t.pending_id is None else f"{t.pending_id:032x}")
        group = t.refs.get(_GROUP)
        previous = last.setdefault(group if isinstance(group, str) else None, {})
        for key, value in t.refs.items():
            if isinstance(value, str):
                words.setdefault(key, [None] * n).append(texts.of(value))
            else:
                numbers.setdefault(key, [None] * n).append(value - previous.get(key, 0))
                previous[key] = value
        for column in (*numbers.values(), *words.values()):
            if len(column) == n:
                column.append(None)
    doc: dict[str, Any] = {"accounts": list(accounts), "times": list(times), "texts": list(texts)}
    doc.update(cols, refs=numbers, text_refs=words)
    if any(p is not None for p in pending):
        doc["p"] = pending
    return doc


def decode_entries(doc: Any) -> tuple[bytes, ...]:
    """The version-2 bodies the columns in `doc` stand for; `DecodeError` for anything else
    (`ledger.wire` raises it as its `WireError`)."""
    try:
        return _decode(doc)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"ledger entries malformed: {exc!s:.200}") from exc


def _decode(doc: dict[str, Any]) -> tuple[bytes, ...]:
    accounts, times, texts = (_strings(doc[name]) for name in ("accounts", "times", "texts"))
    cols = [_list(doc[name]) for name in _COLUMNS]
    count = len(cols[0])
    pending = _list(doc.get("p", [None] * count))
    numbers = {_key(k): _list(col) for k, col in doc["refs"].items()}
    words = {_key(k): _list(col) for k, col in doc["text_refs"].items()}
    if not count or any(len(c) != count for c in (*cols, pending, *numbers.values(),
                                                  *words.values())):  # fmt: skip
        raise DecodeError("entry columns are empty or differ in length")
    last: dict[RefValue | None, dict[str, int]] = {}
    bodies = []
    for n, (ident, code, kind, source, linked, amount, debit, credit, time) in enumerate(
        zip(*cols, strict=True)
    ):
        refs: dict[str, RefValue] = {k: texts[_index(c[n])] for k, c in words.items()
                                     if c[n] is not None}  # fmt: skip
        previous = last.setdefault(refs.get(_GROUP), {})
        for key, column in numbers.items():
            if column[n] is None:
                continue
            if key in refs:
                raise DecodeError(f"ref {key} is both a text and an integer")
            refs[key] = previous[key] = previous.get(key, 0) + _integer(column[n])
        code_ = CODES[_index(code)]
        debit_ = AccountId(accounts[_index(debit)])
        transfer = Transfer(
            id=_ident(ident, code_, refs),
            debit=debit_,
            credit=AccountId(accounts[_index(credit)]),
            amount=amount,
            unit=unit_of(debit_),
            code=code_,
            time=times[_index(time)],
            time_source=TIME_SOURCES[_index(source)],
            kind=KINDS[_index(kind)],
            pending_id=None if pending[n] is None else _hex_id(pending[n]),
            linked=_flag(linked),
            refs=refs,
        )
        bodies.append(encode_transfer_v2(transfer))
    return tuple(bodies)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"an entry column is not a list but {type(value).__name__}")
    return value


def _strings(value: Any) -> list[str]:
    if not all(isinstance(v, str) for v in _list(value)):
        raise DecodeError("a dictionary of entry values holds a non-text")
    return value  # type: ignore[no-any-return]


def _key(value: Any) -> str:
    if not isinstance(value, str):
        raise DecodeError("a ref key is not a text")
    return value


def _index(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError(f"an index is not an integer ≥ 0: {value!r:.30}")
    return value


def _integer(value: Any) -> int:
    if type(value) is not int or abs(value) > MAX_AMOUNT * 2:
        raise DecodeError(f"an integer ref difference is out of range: {value!r:.30}")
    return value


def _flag(value: Any) -> bool:
    if value not in (0, 1) or type(value) is not int:
        raise DecodeError(f"linked is neither 0 nor 1: {value!r:.30}")
    return value == 1


def _hex_id(value: Any) -> int:
    if not isinstance(value, str) or not _HEX_ID.fullmatch(value):
        raise DecodeError(f"an id is not 32 hex digits: {value!r:.40}")
    return int(value, 16)


def _ident(value: Any, code: Code, refs: dict[str, RefValue]) -> int:
    """The id: given as 32 hex digits, or as the index of the id its refs derive."""
    if type(value) is not int:
        return _hex_id(value)
    derived = derived_id(code, refs, value)
    if derived is None:
        raise DecodeError(f"entry refs derive no id number {value}")
    return derived
