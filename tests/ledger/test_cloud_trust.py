"""`ledger.cloud_trust`: the cloud keys a configuration pushes, as anything from outside may
send them — a list of keys or our error, never anything else — and the ring a box trusts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.chain import NodeKey
from ledger.cloud_trust import MAX_KEYS, parse_keys, public_hex, ring
from ledger.errors import InvalidValue
from ledger.signed import trusted

A, B, C = (NodeKey.from_seed(bytes([n]) * 32) for n in (1, 2, 3))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=10) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(JSON | st.lists(st.text(alphabet="0123456789abcdef", min_size=60, max_size=66)))
def test_anything_pushed_is_keys_or_our_error(raw: object) -> None:
    try:
        parsed = parse_keys(raw, "cloud_keys")
    except InvalidValue as exc:
        assert "cloud_keys" in str(exc)
    else:
        assert isinstance(raw, list) and [public_hex(k) for k in parsed] == raw


def test_keys_round_trip_and_too_many_are_refused() -> None:
    listed = [public_hex(k.public_key) for k in (A, B)]
    assert [public_hex(k) for k in parse_keys(listed, "x")] == listed
    with pytest.raises(InvalidValue, match=f"at most {MAX_KEYS}"):
        parse_keys(listed * MAX_KEYS, "x")
    with pytest.raises(InvalidValue, match="hex"):
        parse_keys([listed[0].upper()], "x")


def test_the_ring_is_the_configured_and_pushed_keys_less_the_retired() -> None:
    configured = trusted(A.public_key)
    assert ring(configured, (), ()) == configured
    assert set(ring(configured, (B.public_key,), ())) == {A.key_id, B.key_id}
    assert set(ring(configured, (B.public_key,), (A.public_key,))) == {B.key_id}
    assert ring(configured, (), (A.public_key, C.public_key)) == {}
