"""`ledger.commissioning`: the signed report's shape and signature. Whatever arrives is a report
or a `DecodeError`, never another exception; a report signs and verifies; one changed field,
another key or another spelling of the fields is refused."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import NodeKey
from ledger.commissioning import FORMAT, check_report, sign_report, verify_report
from ledger.errors import DecodeError
from ledger.untrusted import load_json

KEY = NodeKey.from_seed(b"c" * 32)


def report() -> dict[str, Any]:
    return {
        "format": FORMAT, "node": "market-1", "site": "示范市场",
        "taken_at": "2026-11-24T16:00:00+08:00", "version": "0.1.0", "reads": 3,
        "relay_test": False,
        "buses": [{"bus": "rs485-1", "protocol": "cjt188", "discovery": "cjt188-address",
                   "complete": True, "probes": 3, "reads_ok": 3, "reads_tried": 3, "found": 1,
                   "missing": 0, "extra": 0, "error": ""}],
        "meters": [{"address": "10000000000001", "bus": "rs485-1", "protocol": "cjt188",
                    "status": "found", "shop": "S1", "account": "A1", "reads_ok": 3,
                    "reads_tried": 3, "register": 12_345, "unit": "L", "relay": "not_tested",
                    "relay_detail": "", "error": ""}],
    }  # fmt: skip


def test_a_report_signs_and_verifies() -> None:
    signed = sign_report(report(), KEY)
    assert verify_report(json.loads(json.dumps(signed)), KEY.public_key) == report()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("reads",), 4),
        (("meters", 0, "register"), 12_346),
        (("meters", 0, "status"), "missing"),
        (("buses", 0, "complete"), False),
        (("site",), "另一个市场"),
    ],
)
def test_any_changed_field_is_refused(path: tuple[Any, ...], value: object) -> None:
    signed = sign_report(report(), KEY)
    changed = copy.deepcopy(signed)
    target = changed["report"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(DecodeError, match="does not verify"):
        verify_report(changed, KEY.public_key)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(extra=1),
        lambda r: r.pop("node"),
        lambda r: r.update(reads=True),  # a bool is not a count
        lambda r: r.update(reads=-1),
        lambda r: r.update(taken_at="yesterday"),
        lambda r: r["meters"][0].update(reads_ok=4),  # more than tried
        lambda r: r["meters"][0].update(register=1.5),
        lambda r: r["meters"][0].update(address="../etc"),
        lambda r: r["meters"][0].update(unit="kWh"),
        lambda r: r.update(meters={}),
    ],
)
def test_a_report_of_another_shape_is_refused(change: Any) -> None:
    bad = report()
    change(bad)
    with pytest.raises(DecodeError):
        check_report(bad)
    with pytest.raises(DecodeError):
        sign_report(bad, KEY)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_are_a_report_or_our_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        verify_report(load_json(payload), KEY.public_key)


SIGNED = sign_report(report(), KEY)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(json_values, st.sampled_from(["report", "key_id", "signature", "node", "meters"]))
def test_any_json_in_any_place_is_a_report_or_our_error(value: object, where: str) -> None:
    signed = copy.deepcopy(SIGNED)
    if where in ("report", "key_id", "signature"):
        signed[where] = value
    else:
        signed["report"][where] = value
    with contextlib.suppress(DecodeError):
        verify_report(signed, KEY.public_key)
