"""Straight-line decoders for the body layouts a node keeps writing (`ledger.encoding_v2`).

A body's layout is everything that fixes where its values lie: whether a pending id follows the
head, the accounts' width, the time's length and, in the refs, the count, each key's bytes, each
value's tag and a text's length. A node writes few layouts (a consumption leg differs from the
last in its values, seldom in their widths), so a layout met again gets a decoder of its own,
generated as Python source: one `struct` unpack of the whole body, one comparison of its layout
bytes with the layout learnt, the head's and each integer's range checks (a leading zero byte
or a value beyond 2^53 − 1 falls outside an integer's range), a look-up of accounts the general
decoder accepted before, and the transfer built. That costs about a third of the general
decoder (`bench/decode_bench.py --entries-only`), whose per-ref loop runs some twenty bytecodes
a ref.

A layout decoder only ever accepts: for a body it is not sure of (another layout of the same
length, a value out of range, accounts not seen, text that is not UTF-8) it answers `None` or
raises, and the caller asks the general decoder, which accepts the same bodies and says what is
wrong with the others. It is built only from a body the general decoder accepted, so its source
holds nothing but integers, `struct` codes and ref keys that matched `[a-z][a-z0-9_]{0,31}`.
Layouts are kept per process, at most `_CACHE` of each kind (then forgotten all at once).

    unpack  head '>BQQBBBBQ'; pending id 'QQ' when the kind is post or void; the accounts as
            one 'ns'; the time's length 'B' per byte, the time 'ns'; the refs' count and each
            key 'B' per byte; per value its tag 'B' and: an integer of n bytes as 'B' 'H' 'I'
            for n = 1, 2, 4, as 'ns' for n = 5 … 7, for n = 3 with its tag as one 'I' (the
            tag subtracted); a text's length 'B' per byte and the text 'ns'.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ledger.units import MAX_AMOUNT

BodyDecoder = Callable[[bytes], Any]
_TEXT, _NEGATIVE = 0x10, 8
_NATIVE = {1: "B", 2: "H", 4: "I"}
_CACHE = 1024
_PENDING_AT = 29  # where the accounts begin when no pending id follows the head


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The (already checked) varint at `pos` and the position after it."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _refs_layout(data: bytes, pos: int) -> bytes:
    """The layout bytes of the accepted refs from `pos` on: the refs without their values."""
    end = pos + 1 if data[pos] < 0x80 else _varint(data, pos)[1]
    pieces = [data[pos:end]]
    pos = end
    while pos < len(data):
        k = data[pos]
        at = pos + 1 if k < 0x80 else pos + 1 + k - 0x80  # the value's tag
        tag = data[at]
        if tag != _TEXT:
            length, end = tag & 7, at + 1
        elif data[at + 1] < 0x80:
            length, end = data[at + 1], at + 2
        else:
            length, end = _varint(data, at + 1)
        pieces.append(data[pos:end])
        pos = end + length
    return b"".join(pieces)


def _layout(data: bytes, at: tuple[int, int, int]) -> bytes:
    """What fixes where the values of `data` (an accepted body whose accounts, time and refs
    begin `at`) lie: where its accounts begin and their width, the time's length, the refs'
    layout."""
    accounts_at, time_at, refs_at = at
    start = time_at + 1 if data[time_at] < 0x80 else _varint(data, time_at)[1]  # the time's
    head = bytes((accounts_at, time_at - accounts_at)) + data[time_at:start]
    return head + _refs_layout(data, refs_at)


class _Source:
    """The unpack format and the statements of one layout's decoder, as they are generated."""

    def __init__(self) -> None:
        self.fmt, self.targets = [">"], list[str]()
        self.steps, self.checks, self.compared = list[str](), list[str](), list[str]()
        self.layout: list[int] = []

    def fixed(self, raw: bytes) -> None:
        """Layout bytes: each its own field, compared with the layout learnt."""
        for byte in raw:
            self.field("B", f"s{len(self.layout)}")
            self.compared.append(f"s{len(self.layout)}")
            self.layout.append(byte)

    def field(self, code: str, name: str) -> None:
        self.fmt.append(code)
        self.targets.append(name)

    def refs(self, layout: bytes, keys: list[str]) -> str:
        """Unpack and check the refs of `layout`; the dict display of their values."""
        pos = _varint(layout, 0)[1]
        self.fixed(layout[:pos])
        items = []
        for n, key in enumerate(keys):
            k = layout[pos]
            at = pos + 1 if k < 0x80 else pos + 1 + k - 0x80  # the value's tag
            tag, value = layout[at], f"v{n}"
            if tag == _TEXT:
                length, end = _varint(layout, at + 1)
                self.fixed(layout[pos:end])
                self.field(f"{length}s", value)
                items.append(f"{key!r}: {value}.decode()")
                pos = end
                continue
            width, sign = tag & 7, "-" if tag > _NEGATIVE else ""
            if width == 3:  # no 3-byte code: the tag and the value as one 'I'
                self.fixed(layout[pos:at])
                self.field("I", value)
                self.steps.append(f"{value} -= {tag << 24}")
            else:
                self.fixed(layout[pos : at + 1])
                if width in _NATIVE:
                    self.field(_NATIVE[width], value)
                elif width:
                    self.field(f"{width}s", value)
                    self.steps.append(f"{value} = _from_bytes({value}, 'big')")
            if width:
                least, most = 1 << 8 * width - 8, min(MAX_AMOUNT, (1 << 8 * width) - 1)
                self.checks.append(f"{least} <= {value} <= {most}")
            items.append(f"{key!r}: {sign}{value}" if width else f"{key!r}: 0")
            pos = at + 1
        return "{" + ", ".join(items) + "}"


def _source(data: bytes, at: tuple[int, int, int], keys: list[str]) -> tuple[str, bytes, str]:
    """The unpack format, the layout bytes it compares and the decoder's source for the layout
    of `data`, a body the general decoder accepted; `at`: where its accounts, time and refs
    begin."""
    accounts_at, time_at, refs_at = at
    src = _Source()
    src.fmt.append("BQQBBBBQ")
    src.targets += ("f", "hi", "lo", "code", "kind", "source", "linked", "amount")
    two_phase = accounts_at > _PENDING_AT
    if two_phase:
        src.fmt.append("QQ")
        src.targets += ("phi", "plo")
    src.field(f"{time_at - accounts_at}s", "accounts")
    length, start = _varint(data, time_at)
    src.fixed(data[time_at:start])
    src.field(f"{length}s", "time")
    refs = src.refs(_refs_layout(data, refs_at), keys)
    fields = ", ".join(src.compared)
    kind = "kind < 2" if two_phase else "kind > 1"  # post and void, and only they, are 2 and 3
    pending = "phi << 64 | plo" if two_phase else "None"
    lines = [
        "def decode(data):",
        f"    {', '.join(src.targets)}, = _unpack(data)",
        f"    if ({fields},) != _LAYOUT or f != 2 or linked > 1 or {kind}:",
        "        return None",
        *(f"    {step}" for step in src.steps),
        f"    if not (0 < amount <= {MAX_AMOUNT}{''.join(' and ' + c for c in src.checks)}):",
        "        return None",
        "    accounts = _accounts(accounts)",
        f"    ident, pending = hi << 64 | lo, {pending}",
        "    if accounts is None or not ident or pending == 0:",
        "        return None",
        "    t = _new(_Decoded)",
        "    t.id = ident",
        "    t.debit, t.credit, t.unit = accounts",
        "    t.amount = amount",
        "    t.code = _CODES[code]",
        "    t.time = time.decode()",
        "    t.time_source = _TIME_SOURCES[source]",
        "    t.kind = _KINDS[kind]",
        "    t.pending_id = pending",
        "    t.linked = linked == 1",
        f"    t.refs = {refs}",
        "    t.__class__ = _Transfer",
        "    return t",
    ]
    return "".join(src.fmt), bytes(src.layout), "\n".join(lines)


class Layouts:
    """The layouts learnt from accepted bodies and their decoders. `env` names what the
    generated decoders use: `_accounts` (accepted account bytes → debit, credit, unit or
    None), `_new`, `_Decoded`, `_Transfer`, `_CODES`, `_TIME_SOURCES`, `_KINDS`."""

    def __init__(self, env: dict[str, Any]) -> None:
        self._env = {**env, "_from_bytes": int.from_bytes}
        self._by_length: dict[int, BodyDecoder] = {}  # the caller's cheap guess
        self._compiled: dict[bytes, BodyDecoder] = {}
        self._missed: set[int] = set()  # lengths the general decoder had before
        self._seen: set[bytes] = set()  # layouts noted once
        # The decoder of the layout last learnt for bodies of a length, if any (a bound
        # method: no Python call on the decoder's path).
        self.decoder: Callable[[int], BodyDecoder | None] = self._by_length.get

    def learn(self, data: bytes, at: tuple[int, int, int], keys: list[str]) -> None:
        """Note that the general decoder accepted `data` (its accounts, time and refs begin
        `at`; its ref keys are `keys`). The first body of a length only notes the length (a
        one-off costs no more); a later one notes its layout, and a layout noted before gets
        its decoder (built once: ~100 µs), guessed from then on for bodies of its length."""
        if len(data) not in self._missed:  # a length met for the first time: maybe once
            if len(self._missed) >= _CACHE:
                self._missed.clear()
            self._missed.add(len(data))
            return
        layout = _layout(data, at)
        decoder = self._compiled.get(layout)
        if decoder is None:
            if layout not in self._seen:
                if len(self._seen) >= _CACHE:
                    self._seen.clear()
                self._seen.add(layout)
                return
            if len(self._compiled) >= _CACHE:
                self._compiled.clear()
            fmt, compared, source = _source(data, at, keys)
            namespace = {**self._env, "_unpack": struct.Struct(fmt).unpack_from,
                         "_LAYOUT": tuple(compared)}  # fmt: skip
            exec(compile(source, f"<body layout {layout.hex()}>", "exec"), namespace)
            decoder = self._compiled[layout] = namespace["decode"]
        if len(self._by_length) >= _CACHE:
            self._by_length.clear()
        self._by_length[len(data)] = decoder

    def forget(self) -> None:
        """Drop every layout learnt (the next bodies go to the general decoder)."""
        self._by_length.clear()
        self._compiled.clear()
        self._missed.clear()
        self._seen.clear()
