"""Straight-line decoders for the ref layouts a node keeps writing (`ledger.encoding_v2`).

A ref section's layout is everything but its values: the count, each key's bytes, each value's
tag and a text's length. The edge writes few layouts (a consumption leg's six refs differ from
entry to entry in their values, seldom in their widths), so a layout met again gets a decoder
of its own: one `struct` unpack of the whole section, one comparison of the layout's bytes with
the layout the general decoder accepted, one range check per integer (a leading zero byte or a
value beyond 2^53 − 1 falls outside it) and a dict display. That is a third of the cost of the
general decoder's per-ref loop, the part of a decode that grows with the refs.

A layout decoder is only ever built from a section the general decoder accepted, and answers
`None` (the caller falls back to the general decoder, which says what is wrong) for any section
whose layout bytes differ or whose integer is out of range, so both accept exactly the same
bytes; a text that is not UTF-8 raises `UnicodeDecodeError`, as in the general decoder.

    section  count (varint), then per ref: key (1 byte, or 0x80 + n and n bytes), value tag,
             for a text its length (varint); the values in between are what varies.
    unpack   layout bytes: 'B' each; integer of n bytes: 'B' 'H' 'I' for n = 1, 2, 4, the tag
             byte and the value as one 'I' for n = 3 (the tag subtracted), 'ns' for n = 5 … 7;
             text: 'ns'.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ledger.units import MAX_AMOUNT

RefsDecoder = Callable[[bytes, int], "dict[str, str | int] | None"]
_TEXT, _NEGATIVE = 0x10, 8
_NATIVE = {1: "B", 2: "H", 4: "I"}
# Learnt layouts by the section's length (the caller's cheap guess) and by the layout itself.
_by_length: dict[int, RefsDecoder] = {}
_compiled: dict[bytes, RefsDecoder] = {}
_seen: set[bytes] = set()  # compiled on its second sighting: ~100 µs each
_CACHE = 1024


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The (already checked) varint at `pos` and the position after it."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _layout(section: bytes) -> bytes:
    """The layout bytes of an accepted ref section: the section without its values."""
    pos = _varint(section, 0)[1]
    pieces = [section[:pos]]
    while pos < len(section):
        k = section[pos]
        at = pos + 1 if k < 0x80 else pos + 1 + k - 0x80  # the value's tag
        if section[at] == _TEXT:
            length, end = _varint(section, at + 1)
        else:
            length, end = section[at] & 7, at + 1
        pieces.append(section[pos:end])
        pos = end + length
    return b"".join(pieces)


def _source(layout: bytes, keys: list[str]) -> tuple[str, tuple[int, ...], str]:
    """The unpack format, the layout bytes it compares and the decoder's source for a layout
    whose keys are `keys`."""
    compared: list[int] = []
    fmt, targets, steps, checks, items = [">"], [], [], [], []

    def fixed(start: int, end: int) -> None:  # layout bytes, each its own field
        for byte in layout[start:end]:
            fmt.append("B")
            targets.append(f"s{len(compared)}")
            compared.append(byte)

    def field(code: str, value: str) -> None:
        fmt.append(code)
        targets.append(value)

    pos = _varint(layout, 0)[1]
    fixed(0, pos)
    for n, key in enumerate(keys):
        k = layout[pos]
        at = pos + 1 if k < 0x80 else pos + 1 + k - 0x80  # the value's tag
        tag, value = layout[at], f"v{n}"
        if tag == _TEXT:
            length, end = _varint(layout, at + 1)
            fixed(pos, end)
            field(f"{length}s", value)
            items.append(f"{key!r}: {value}.decode()")
            pos = end
            continue
        width, sign = tag & 7, "-" if tag > _NEGATIVE else ""
        if width == 3:  # no 3-byte code: the tag and the value as one 'I'
            fixed(pos, at)
            field("I", value)
            steps.append(f"{value} -= {tag << 24}")
        else:
            fixed(pos, at + 1)
            if width in _NATIVE:
                field(_NATIVE[width], value)
            elif width:
                field(f"{width}s", value)
                steps.append(f"{value} = _from_bytes({value}, 'big')")
        if width:
            least, most = 1 << 8 * width - 8, min(MAX_AMOUNT, (1 << 8 * width) - 1)
            checks.append(f"{least} <= {value} <= {most}")
        items.append(f"{key!r}: {sign}{value}" if width else f"{key!r}: 0")
        pos = at + 1
    layout_fields = [t for t in targets if t.startswith("s")]
    lines = [
        "def decode(data, pos):",
        f"    {', '.join(targets)}, = _unpack(data, pos)",
        f"    if ({', '.join(layout_fields)},) != _LAYOUT:",
        "        return None",
        *(f"    {step}" for step in steps),
        *([f"    if not ({' and '.join(checks)}):", "        return None"] if checks else []),
        f"    return {{{', '.join(items)}}}",
    ]
    return "".join(fmt), tuple(compared), "\n".join(lines)


def _compile(layout: bytes, keys: list[str]) -> RefsDecoder:
    fmt, compared, source = _source(layout, keys)
    namespace: dict[str, Any] = {"_unpack": struct.Struct(fmt).unpack_from, "_LAYOUT": compared}
    namespace["_from_bytes"] = int.from_bytes
    exec(compile(source, f"<ref layout {layout.hex()}>", "exec"), namespace)
    decoder: RefsDecoder = namespace["decode"]
    return decoder


def learn(section: bytes, keys: list[str]) -> None:
    """Note that the general decoder accepted `section` with `keys`; on the second sighting
    of its layout, build that layout's decoder and guess it for sections of its length."""
    layout = _layout(section)
    decoder = _compiled.get(layout)
    if decoder is None:
        if layout not in _seen:
            if len(_seen) >= _CACHE:
                _seen.clear()
            _seen.add(layout)
            return
        if len(_compiled) >= _CACHE:
            _compiled.clear()
        decoder = _compiled[layout] = _compile(layout, keys)
    if len(_by_length) >= _CACHE:
        _by_length.clear()
    _by_length[len(section)] = decoder


def forget() -> None:
    """Drop every learnt layout (the next sections go through the general decoder)."""
    _by_length.clear()
    _compiled.clear()
    _seen.clear()


# The decoder of the layout last learnt for ref sections of a length, if any (a bound method:
# no Python call on the decoder's path).
layout_decoder: Callable[[int], RefsDecoder | None] = _by_length.get
