"""Format version 2 of a transfer body: compact binary, fixed field order, coded names.

Version 1 (`ledger.encoding`) is canonical JSON; version 2 carries the same transfer in about a
third of the bytes and decodes without parsing text. A body says its format in its first byte:
`0x02` here, `{` (0x7B) for version 1, so a chain may switch from one to the other at any entry,
and each body is hashed under its own domain tag (`ledger.encoding.entry_preimage`). Integers
are big-endian.

    offset size  field
    0      1     0x02, the format
    1      16    id, unsigned 128 bits (not 0)
    17     1     code: index into `CODES`
    18     1     kind: index into `KINDS`
    19     1     time_source: index into `TIME_SOURCES`
    20     1     linked: 0 or 1
    21     8     amount, unsigned, 1 … 2^53−1
    29     16    pending_id (not 0) — present exactly when the kind is post or void
    then         debit (account), credit (account), time (text), refs

    account  1 byte a < 0x80: the system account `SYSTEM_ACCOUNTS[a]` (`sys:<name>`);
             a ≥ 0x80: the merchant pocket `POCKETS[a − 0x80]` of the owner that follows:
             1 byte n (1 … 40), n ASCII bytes of [A-Za-z0-9_.-] (`<owner>:<pocket>`)
    text     length (varint), then that many bytes of UTF-8 (no surrogates)
    varint   unsigned LEB128, shortest form, at most 4 bytes
    refs     count (varint), then per ref, keys in strictly ascending order (as strings):
      key    1 byte k < 0x80: `REF_KEYS[k]`; k = 0x80 + n (n 1 … 32): the n ASCII bytes that
             follow, matching [a-z][a-z0-9_]{0,31} and not in `REF_KEYS`
      value  1 byte tag: 0x00 … 0x07: an integer ≥ 0 in `tag` bytes (0 is tag 0, no leading
             zero byte); 0x09 … 0x0F: a negative integer, its magnitude in `tag − 8` bytes (no
             leading zero byte); 0x10: text. |integer| ≤ 2^53−1.
    nothing follows the refs.

The unit is not stored: it is the accounts' (both must have the same, `ledger.accounts`).

"Dictionary-coded" means fixed tables, the same on every node and in every version: codes,
kinds, time sources, system accounts, pockets and the usual ref keys are one byte each; a
table only ever grows at its end (an old decoder refuses an index it does not know). Owners
stay in-line (typically 5 bytes): a per-node dictionary learnt from earlier entries would make
an entry's meaning depend on entries the edge prunes and a batch does not carry.

Every transfer has exactly one encoding and the decoder refuses every other byte string (a
longer integer or varint than needed, an in-line key that has a table index, keys out of
order, trailing bytes, …), so `encode(decode(b)) == b` for every `b` that decodes. The decoder
checks every invariant `Transfer` checks and builds the transfer without a second validation.
A body whose layout (where its values lie) was met before is decoded by that layout's own
straight-line decoder (`ledger.body_layouts`), which accepts exactly what the general decoder
here accepts and hands every other body to it.

Example (69 bytes; 254 in version 1; `tests/vectors/bodies-v2.hex` freezes more): a recharge of
500 fen from `sys:cash_in_transit` to `A0001:prepaid`, id 1, time source ntp, refs
{"payment": "P1"}:

    02  00000000000000000000000000000001  00 00 00 00  00000000000001f4     head
    01                                      debit: SYSTEM_ACCOUNTS[1], cash_in_transit
    81 05 "A0001"                           credit: POCKETS[1], prepaid, of owner A0001
    19 "2026-11-01T08:00:00+08:00"          time: 25 bytes
    01  07 10 02 "P1"                       one ref: REF_KEYS[7] payment, text of 2 bytes
"""

from __future__ import annotations

import re
import struct
from typing import Any

from ledger.accounts import POCKET_UNIT, SYSTEM_UNIT, AccountId, Pocket, System, Unit
from ledger.body_layouts import Layouts
from ledger.errors import DecodeError, InvalidValue
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer
from ledger.units import MAX_AMOUNT

FORMAT_V2 = 2
ID_END = 17  # the id is bytes 1 … 16: readers that need nothing else slice it in place
LINKED_AT = 20  # … and the linked flag byte 20
# Append-only tables: an index, once written, means the same thing forever.
CODES: tuple[Code, ...] = (
    Code.RECHARGE, Code.CONSUME, Code.SUBSIDY_ISSUE, Code.SUBSIDY_EXPIRE, Code.REFUND,
    Code.GRACE_ISSUE, Code.GRACE_EXPIRE, Code.CORRECTION, Code.METER_SETTLE, Code.MOVE,
    Code.DEBT_REPAY, Code.TAKEOVER,
)  # fmt: skip
KINDS: tuple[Kind, ...] = (Kind.SINGLE, Kind.PENDING, Kind.POST, Kind.VOID)
TIME_SOURCES: tuple[TimeSource, ...] = (
    TimeSource.NTP, TimeSource.CLOUD, TimeSource.METER, TimeSource.PERSISTED, TimeSource.SIMULATED,
)  # fmt: skip
SYSTEM_ACCOUNTS: tuple[System, ...] = (
    System.PAYMENTS_RECEIVED, System.CASH_IN_TRANSIT, System.ENERGY_SALES,
    System.REFUNDS_PAYABLE, System.CORRECTIONS_FEN, System.SUBSIDY_ISSUED, System.SUBSIDY_USED,
    System.SUBSIDY_EXPIRED, System.GRACE_ISSUED, System.GRACE_USED, System.GRACE_EXPIRED,
    System.CORRECTIONS_WH, System.MOVES_IN_TRANSIT, System.WATER_SALES,
    System.WATER_SUBSIDY_ISSUED, System.WATER_SUBSIDY_USED, System.WATER_SUBSIDY_EXPIRED,
    System.TAKEOVER_FEN, System.TAKEOVER_WH, System.TAKEOVER_L,
)  # fmt: skip
POCKETS: tuple[Pocket, ...] = (
    Pocket.SUBSIDY, Pocket.PREPAID, Pocket.GRACE, Pocket.DEBT, Pocket.WATER_SUBSIDY,
)  # fmt: skip
REF_KEYS: tuple[str, ...] = (
    "meter", "reg_from", "reg_to", "energy_wh", "cost_cum", "tariff", "swap", "payment",
    "method", "command", "period", "owed", "refund", "pending", "grace_until", "correction",
    "original", "reason", "move", "to_node", "from_node", "takeover", "node", "account", "seq",
)  # fmt: skip

_HEAD = struct.Struct(">BQQBBBBQ")  # format, id (2 × 64 bits), code, kind, source, linked, amount
_PENDING = struct.Struct(">QQ")
_SYSTEM_IDS = tuple((AccountId(f"sys:{s.value}"), SYSTEM_UNIT[s]) for s in SYSTEM_ACCOUNTS)
_SYSTEM_INDEX: dict[str, bytes] = {a: bytes((i,)) for i, (a, _) in enumerate(_SYSTEM_IDS)}
_POCKET_INDEX = {p.value: 0x80 + i for i, p in enumerate(POCKETS)}
_KEY_INDEX = {key: bytes((i,)) for i, key in enumerate(REF_KEYS)}
_CODE_INDEX = {c: i for i, c in enumerate(CODES)}
_KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
_SOURCE_INDEX = {s: i for i, s in enumerate(TIME_SOURCES)}
_OWNER = re.compile(rb"[A-Za-z0-9_.\-]{1,40}")
_REF_KEY = re.compile(rb"[a-z][a-z0-9_]{0,31}")
_TEXT, _NEGATIVE = 0x10, 8  # value tags
_POST = KINDS.index(Kind.POST)  # … and VOID after it: the kinds with a pending id
# Integer value tags 0 … 0x0F as data: size in bytes and the least and most magnitude in its
# shortest form (2^53 − 1 needs 7 bytes); tag 8 (−0) admits nothing.
_SIZE = tuple(range(8)) * 2
_LEAST = (0, *(1 << 8 * (n - 1) for n in range(1, 8)), 1, *(1 << 8 * (n - 1) for n in range(1, 8)))
_MOST = (*(min(MAX_AMOUNT, (1 << 8 * n) - 1) for n in range(8)), 0,
         *(min(MAX_AMOUNT, (1 << 8 * n) - 1) for n in range(1, 8)))  # fmt: skip
_KEY_AT = (*REF_KEYS, *(None,) * (256 - len(REF_KEYS)))  # a key byte's table key, if any
_from_bytes = int.from_bytes
_new = object.__new__
# Decoded account pairs by their bytes: a node has a few hundred owners, a few pairs each;
# and encoded merchant accounts by account id (checked once).
_pairs: dict[bytes, tuple[AccountId, AccountId, Unit]] = {}
_encoded: dict[str, bytes] = {}
_ACCOUNT_CACHE = 4096


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode()
    return _varint(len(raw)) + raw


def _account(account: str) -> bytes:
    known = _SYSTEM_INDEX.get(account) or _encoded.get(account)
    if known is None:
        if len(_encoded) >= _ACCOUNT_CACHE:
            _encoded.clear()
        known = _encoded[account] = _merchant_account(account)
    return known


def _merchant_account(account: str) -> bytes:
    owner, _, pocket = account.partition(":")
    tag = _POCKET_INDEX.get(pocket)
    raw = owner.encode()
    if tag is None or owner == "sys" or not _OWNER.fullmatch(raw):
        raise InvalidValue(f"account {account!r} has no version-2 encoding")
    return bytes((tag, len(raw))) + raw


def _ref_value(value: RefValue) -> bytes:
    if isinstance(value, str):
        return bytes((_TEXT,)) + _text(value)
    size = (abs(value).bit_length() + 7) // 8
    return bytes((size if value >= 0 else _NEGATIVE + size,)) + abs(value).to_bytes(size, "big")


def encode_transfer_v2(t: Transfer) -> bytes:
    """The version-2 body of a transfer (the module's layout)."""
    try:
        head = _HEAD.pack(FORMAT_V2, t.id >> 64, t.id & 0xFFFF_FFFF_FFFF_FFFF,
                          _CODE_INDEX[t.code], _KIND_INDEX[t.kind], _SOURCE_INDEX[t.time_source],
                          t.linked, t.amount)  # fmt: skip
    except KeyError as exc:
        raise InvalidValue(f"{exc.args[0]!r} has no version-2 code") from exc
    parts = [head]
    if t.pending_id is not None:
        parts.append(_PENDING.pack(t.pending_id >> 64, t.pending_id & 0xFFFF_FFFF_FFFF_FFFF))
    parts += (_account(t.debit), _account(t.credit), _text(t.time), _varint(len(t.refs)))
    for key in sorted(t.refs):
        index = _KEY_INDEX.get(key)
        parts.append(index if index is not None else bytes((0x80 + len(key),)) + key.encode())
        parts.append(_ref_value(t.refs[key]))
    return b"".join(parts)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` (the one-byte case is inlined by callers) and the position after."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > pos:
                raise DecodeError("a varint is longer than needed")
            return value, i + 1
        shift += 7
    raise DecodeError("a varint is cut short or longer than 4 bytes")


def _read_account(raw: bytes) -> tuple[AccountId, Unit]:
    """The account whose whole encoding is `raw` (its length taken from its own bytes)."""
    tag = raw[0]
    if tag < 0x80:
        if tag >= len(_SYSTEM_IDS):
            raise DecodeError(f"system account index {tag} is unknown")
        return _SYSTEM_IDS[tag]
    index, owner = tag - 0x80, raw[2:]
    if (
        index >= len(POCKETS)
        or len(owner) != raw[1]
        or not _OWNER.fullmatch(owner)
        or owner == b"sys"
    ):
        raise DecodeError("a merchant account is malformed")
    pocket = POCKETS[index]
    return AccountId(f"{owner.decode()}:{pocket.value}"), POCKET_UNIT[pocket]


def _read_accounts(raw: bytes, split: int) -> tuple[AccountId, AccountId, Unit]:
    """Debit, credit and unit of the two accounts encoded in `raw`, the credit at `split`;
    remembered, so an entry of a pair seen before costs one dict look-up."""
    debit, unit = _read_account(raw[:split])
    credit, credit_unit = _read_account(raw[split:])
    if debit == credit or unit is not credit_unit:
        raise DecodeError(f"debit {debit} and credit {credit} are one account or two units")
    if len(_pairs) >= _ACCOUNT_CACHE:
        _pairs.clear()
    _pairs[raw] = debit, credit, unit
    return debit, credit, unit


def _read_key(data: bytes, pos: int) -> tuple[str, int]:
    """An in-line ref key (its byte 0x80 + n at `pos`) and the position after it."""
    if data[pos] < 0x80:
        raise DecodeError(f"ref key index {data[pos]} is unknown")
    end = pos + 1 + data[pos] - 0x80
    raw = data[pos + 1 : end]
    if end > len(data) or not _REF_KEY.fullmatch(raw) or raw.decode() in _KEY_INDEX:
        raise DecodeError("an in-line ref key is malformed or has a table index")
    return raw.decode(), end


def _read_refs(data: bytes, pos: int) -> dict[str, RefValue]:
    """The refs from the count at `pos` to the end of `data`, any layout."""
    count = data[pos]
    pos += 1
    if count >= 0x80:
        count, pos = _read_varint(data, pos - 1)
    refs: dict[str, RefValue] = {}
    last = ""
    for _ in range(count):
        key = _KEY_AT[data[pos]]
        if key is None:
            key, pos = _read_key(data, pos)
        else:
            pos += 1
        if key <= last:
            raise DecodeError("ref keys are not in ascending order")
        last = key
        tag = data[pos]
        value: RefValue
        if tag < _TEXT:  # an integer: one range check refuses a leading zero, −0, a value
            end = pos + 1 + _SIZE[tag]  # beyond ±2^53−1 and a cut (shorter is smaller)
            number = _from_bytes(data[pos + 1 : end], "big")
            if not _LEAST[tag] <= number <= _MOST[tag]:
                raise DecodeError(f"ref {key}: integer cut short, not in its shortest form "
                                  "or beyond ±2^53−1")  # fmt: skip
            value = -number if tag > _NEGATIVE else number
        elif tag == _TEXT:
            n = data[pos + 1]
            pos += 2
            if n >= 0x80:
                n, pos = _read_varint(data, pos - 1)
            end = pos + n
            if end > len(data):
                raise DecodeError("a ref text is cut short")
            value = data[pos:end].decode()
        else:
            raise DecodeError(f"ref {key}: unknown value tag {tag:#x}")
        refs[key] = value
        pos = end
    if pos != len(data):
        raise DecodeError("bytes follow the refs")
    return refs


class _Decoded:
    """`Transfer`'s slots, plain: a decoder fills them and makes the object a `Transfer` by
    assigning its `__class__` (the identical layout allows it): a third of the cost of twelve
    `object.__setattr__` on the frozen class."""

    __slots__ = Transfer.__slots__


LAYOUTS = Layouts(  # learnt from the bodies this process decoded
    {"_accounts": _pairs.get, "_new": _new, "_Decoded": _Decoded, "_Transfer": Transfer,
     "_CODES": CODES, "_TIME_SOURCES": TIME_SOURCES, "_KINDS": KINDS}
)  # fmt: skip
_layout_decoder = LAYOUTS.decoder


def decode_transfer_v2(data: bytes) -> Transfer:
    """The transfer of a version-2 body; `DecodeError` for any bytes that are not exactly the
    encoding of a transfer."""
    decoder = _layout_decoder(len(data))  # the usual: a layout learnt from earlier bodies
    if decoder is not None:
        try:
            decoded: Transfer | None = decoder(data)
        except (IndexError, UnicodeDecodeError):
            decoded = None  # the general decoder says what is wrong
        if decoded is not None:
            return decoded
    return _decode_any(data)


def _decode_any(data: bytes) -> Transfer:
    """The general decoder: any layout, every check, and the reason for a refusal."""
    try:
        fmt, hi, lo, code, kind, source, linked, amount = _HEAD.unpack_from(data)
        ident = hi << 64 | lo
        if fmt != FORMAT_V2 or not ident or linked > 1 or not 0 < amount <= MAX_AMOUNT:
            raise DecodeError("version-2 header malformed (format, id, linked or amount)")
        kind_, code_, source_ = KINDS[kind], CODES[code], TIME_SOURCES[source]
        accounts_at, pending = 29, None
        if kind >= _POST:  # post or void
            hi, lo = _PENDING.unpack_from(data, 29)
            pending, accounts_at = hi << 64 | lo, 45
            if not pending:
                raise DecodeError("pending id 0")
        # Each account's length is in its own first bytes; the pair's bytes are looked up.
        pos = accounts_at
        split = pos + 1 if data[pos] < 0x80 else pos + 2 + data[pos + 1]
        time_at = split + 1 if data[split] < 0x80 else split + 2 + data[split + 1]
        raw = data[pos:time_at]
        debit, credit, unit = _pairs.get(raw) or _read_accounts(raw, split - pos)
        n = data[time_at]
        pos = time_at + 1
        if n >= 0x80:
            n, pos = _read_varint(data, time_at)
        refs_at = pos + n
        if refs_at >= len(data):
            raise DecodeError("the time is cut short")
        time = data[pos:refs_at].decode()
        refs = _read_refs(data, refs_at)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"not a version-2 transfer: {exc}") from exc
    LAYOUTS.learn(data, (accounts_at, time_at, refs_at), list(refs))
    # Every invariant of `Transfer.__post_init__` holds by the checks above (the tests decode
    # arbitrary bytes and re-validate whatever decodes), so it is not run a second time.
    t: Any = _new(_Decoded)
    t.id, t.debit, t.credit, t.amount, t.unit, t.code = ident, debit, credit, amount, unit, code_
    t.time, t.time_source, t.kind, t.pending_id = time, source_, kind_, pending
    t.linked, t.refs = linked == 1, refs
    t.__class__ = Transfer
    decoded: Transfer = t
    return decoded
