"""What arrives from the network: any bytes either decode or raise our error, never anything
else (`ledger.untrusted.load_json`, `open_signed`, `open_command`, `Ack.from_fields`), and a
valid message decodes exactly as before."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import NodeKey
from ledger.encoding import canonical_json
from ledger.errors import DecodeError, LedgerError
from ledger.signed import (
    ACK_TAG,
    COMMAND_TAG,
    Command,
    CommandKind,
    Rejected,
    open_command,
    open_signed,
    sign,
    trusted,
)
from ledger.untrusted import MAX_DEPTH, MAX_MESSAGE_BYTES, load_json, nesting_depth
from ledger.wire import Ack, WireError

CLOUD = NodeKey.from_seed(bytes(range(32)))
KEYS = trusted(CLOUD.public_key)
NODE = "edge-0001"
NOW = dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC)

HOSTILE = {
    "deep brackets": b"[" * 100_000,
    "deep objects": b'{"a":' * 50_000,
    "balanced but deep": b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    "5000-digit id": b'{"id": ' + b"7" * 5000 + b"}",
    "21-digit integer": b'{"seq": 123456789012345678901}',
    "NaN": b'{"seq": NaN}',
    "Infinity": b'{"seq": -Infinity}',
    "float overflow": b'{"seq": 1e999}',
    "long float": b'{"seq": 0.' + b"1" * 100 + b"}",
    "escaped lone surrogate": b'{"id": "\\ud800"}',
    "escaped lone surrogate key": b'{"\\udfff": 1}',
    "encoded surrogate": b'{"id": "\xed\xa0\x80"}',
    "not UTF-8": b'{"id": "\xff"}',
    "UTF-16": '{"id": 1}'.encode("utf-16"),
    "BOM": b'\xef\xbb\xbf{"id": 1}',
    "empty": b"",
    "binary": bytes(range(256)),
    "huge": b'{"id": "' + b"a" * MAX_MESSAGE_BYTES + b'"}',
    "repeated key": b'{"id": 1, "id": 2}',
    "unterminated escapes": b'"' + b'\\"' * 100_000,
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_payload_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        load_json(payload)


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_command_or_ack_is_rejected_as_malformed(payload: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        open_command(payload, KEYS, NODE, NOW)
    assert caught.value.reason == "malformed"
    with pytest.raises(Rejected):
        open_signed(ACK_TAG, payload, KEYS)


def test_nesting_is_counted_outside_strings_only() -> None:
    assert nesting_depth(b'{"a": "[[[[[[", "b": [[1]]}', 10) == 3
    assert nesting_depth(b'["\\"[[[", []]', 10) == 2
    assert load_json(b'{"a": "' + b"[" * 1000 + b'"}') == {"a": "[" * 1000}


def test_valid_numbers_and_astral_characters_decode_as_before() -> None:
    text = '{"a": -12345678901234567890, "b": 1.5e-3, "c": "\\ud83d\\ude00 电", "d": [true, null]}'
    assert load_json(text.encode()) == json.loads(text)


unicode = st.text(alphabet=st.characters(exclude_categories=("Cs",)))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20) + 1, max_value=10**20 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_any_valid_json_decodes_as_json_loads_does(value: Any) -> None:
    payload = canonical_json(value)
    assert load_json(payload) == json.loads(payload)


# fmt: off
FRAGMENTS = ["[", "]", "{", "}", '"', "\\", ":", ",", "1", "-", "e9", "0" * 25, ".5", "NaN",
             "Infinity", "true", "null", "\\ud800", "\\u0041", "a", " ", '"id"', "\x00", "\udc80"]
# fmt: on
JSONISH = st.lists(
    st.sampled_from(FRAGMENTS),
    max_size=60,
).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=300) | JSONISH)
def test_any_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        load_json(payload)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300) | JSONISH)
def test_any_bytes_open_as_a_command_or_are_rejected(payload: bytes) -> None:
    for attempt in (
        lambda: open_command(payload, KEYS, NODE, NOW),
        lambda: Ack.from_fields(open_signed(ACK_TAG, payload, KEYS)),
    ):
        with contextlib.suppress(Rejected, WireError):
            attempt()


def _command_fields() -> dict[str, Any]:
    return Command(
        id="ab" * 16,
        seq=1,
        target=NODE,
        kind=CommandKind.RECHARGE,
        issued=NOW,
        expires=NOW + dt.timedelta(days=1),
        args={"account": "A0001", "fen": 100, "payment": "P1"},
    ).fields()


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(_command_fields())), value=json_values | st.just(2**70))
def test_a_signed_command_with_any_value_at_any_field_opens_or_is_rejected(
    field: str, value: Any
) -> None:
    fields = {**_command_fields(), field: value}
    try:
        payload = sign(COMMAND_TAG, fields, CLOUD)
    except ValueError:  # canonical JSON cannot hold it: nobody can sign it either
        return
    try:
        command = open_command(payload, KEYS, NODE, NOW)
    except Rejected as exc:
        assert exc.reason in ("malformed", "wrong_target", "expired")
        return
    assert isinstance(command.args, dict) and type(command.seq) is int


ACK_FIELDS = {
    "node": NODE,
    "seq": 3,
    "head": "00" * 32,
    "upto": 9,
    "status": "ok",
    "now": NOW.isoformat(),
    "reason": "",
}


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(ACK_FIELDS)), value=json_values | st.just(2**70))
def test_a_signed_ack_with_any_value_at_any_field_opens_or_is_a_wire_error(
    field: str, value: Any
) -> None:
    payload = sign(ACK_TAG, {**ACK_FIELDS, field: value}, CLOUD)
    try:
        ack = Ack.from_fields(open_signed(ACK_TAG, payload, KEYS))
    except (Rejected, WireError):
        return
    assert 0 <= ack.seq < 2**63 and 0 <= ack.upto < 2**63 and len(ack.head) == 32


def test_the_errors_are_the_ledgers() -> None:
    assert issubclass(WireError, DecodeError) and issubclass(WireError, ValueError)
    assert issubclass(Rejected, LedgerError)


@pytest.mark.parametrize(
    "payload",
    [b'"a\\u0000b"', b'{"\\u0000": 1}', b'[1, {"k": ["x", "\\u0000"]}]'],
)
def test_nul_is_refused_only_where_asked(payload: bytes) -> None:
    """The cloud's ingest refuses NUL (PostgreSQL cannot hold it in text); commands keep it."""
    assert load_json(payload) == json.loads(payload)
    with pytest.raises(DecodeError, match="NUL"):
        load_json(payload, allow_nul=False)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" + b"1, " * 1000 + b"-" + b"9" * 21 + b"]",  # a long integer among short ones
        b'["' + b"9" * 30 + b'", 1' + b"0" * 20 + b"]",  # digits in a string do not hide it
        b'["x", "\\ud800"]',  # a lone surrogate behind an ordinary string
    ],
)
def test_the_fast_paths_still_refuse_what_hides_in_a_large_payload(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        load_json(payload)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("padding", [0, 40])  # brackets inside a string: walked, not counted
def test_the_bracket_count_shortcut_decides_depth_as_the_walk_does(
    depth: int, padding: int
) -> None:
    payload = b'[{"s":"' + b"[{" * padding + b'"},' + b"[" * depth + b"]" * depth + b"]"
    deep = nesting_depth(payload, MAX_DEPTH) > MAX_DEPTH
    assert deep == (depth + 1 > MAX_DEPTH)
    if deep:
        with pytest.raises(DecodeError, match="nested deeper"):
            load_json(payload)
    else:
        assert load_json(payload) == json.loads(payload)
