"""The state codec: every rule state round-trips exactly; bad input names the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.rules.arrears import ArrearsState
from edge.rules.consumption import AccountCharges, ConsumptionState, MeterBilling
from edge.rules.decisions import RelayCause
from edge.rules.low_balance import LowBalanceState
from edge.rules.protection import Load, ProtectionState, Suspicion
from edge.rules.subsidy import SubsidyState
from edge.rules.tariffs import CostPart
from edge.runtime.codec import CodecError, decode, dumps, encode, loads
from ledger.units import ExactCost, Price, Wh

ZONE = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 1, 9, 30, tzinfo=ZONE)

STATES: list[object] = [
    ConsumptionState(
        MeterBilling(
            "000000000001",
            Wh(123450),
            T0,
            (Wh(1), Wh(2), Wh(3), Wh(4)),
            0,
            (CostPart(Wh(30), Price(8365), "peak"), CostPart(Wh(5), Price(3120), "valley")),
        ),
        AccountCharges(ExactCost(2**60 + 7), "2026-11", 1234),
    ),
    SubsidyState(frozenset({"2026-10", "2026-11"}), frozenset({"2026-10"})),
    ArrearsState(True, dt.date(2026, 11, 2)),
    ProtectionState(
        last=Load(200.0, 204.1),
        suspicion=Suspicion(T0, 2, Load(0.0, 0.0)),
        overload_since=None,
        tripped=RelayCause.MALICIOUS_LOAD,
        tripped_at=T0 + dt.timedelta(minutes=5),
        recent_trips=(T0, T0 + dt.timedelta(minutes=5)),
        locked_out=False,
    ),
    LowBalanceState({"A0001": dt.date(2026, 11, 1), "A0002": dt.date(2026, 10, 31)}),
]


@pytest.mark.parametrize("state", STATES, ids=lambda s: type(s).__name__)
def test_rule_states_round_trip_exactly(state: object) -> None:
    text = dumps(state)
    again = loads(type(state), text)
    assert again == state
    assert dumps(again) == text  # stable: the same state always stores the same text


def test_equal_sets_encode_equally() -> None:
    a = SubsidyState(frozenset({"2026-11", "2026-10", "2026-12"}))
    b = SubsidyState(frozenset({"2026-12", "2026-10", "2026-11"}))
    assert dumps(a) == dumps(b)


@dataclass(frozen=True)
class Nested:
    when: dt.datetime
    every: dt.timedelta
    by_cause: Mapping[RelayCause, int] = field(default_factory=dict)
    pair: tuple[int, str] = (0, "")
    maybe: int | None = None


@given(
    # From 2000: China has had no daylight saving time since 1991 (its gaps do not round-trip).
    st.datetimes(min_value=dt.datetime(2000, 1, 1), timezones=st.just(ZONE)),
    st.integers(0, 10**6),
    st.dictionaries(st.sampled_from(list(RelayCause)), st.integers(-(2**70), 2**70)),
    st.tuples(st.integers(), st.text()),
    st.none() | st.integers(),
)
def test_nested_values_round_trip(
    when: dt.datetime,
    seconds: int,
    by_cause: dict[RelayCause, int],
    pair: tuple[int, str],
    maybe: int | None,
) -> None:
    value = Nested(when, dt.timedelta(seconds=seconds), by_cause, pair, maybe)
    assert loads(Nested, dumps(value)) == value


def test_missing_fields_take_their_defaults() -> None:
    assert decode(ArrearsState, {}) == ArrearsState()


def test_a_retired_field_of_an_older_release_is_skipped_any_other_refused() -> None:
    old = {"meter": "M1", "reg_wh": 10, "at": T0.isoformat(), "short_wh": 294}
    assert decode(MeterBilling, old) == MeterBilling("M1", Wh(10), T0)
    with pytest.raises(CodecError, match="unknown fields"):
        decode(MeterBilling, {**old, "owed_wh": 1})


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"tripped": "yes"}, "ArrearsState.tripped"),
        ({"cut_off_done": "2026-13-01"}, "ArrearsState.cut_off_done"),
        ({"tripped": False, "extra": 1}, "unknown fields"),
        ([], "expected an object"),
    ],
)
def test_bad_input_names_the_field(data: object, where: str) -> None:
    with pytest.raises(CodecError, match=where):
        decode(ArrearsState, data)


def test_naive_datetimes_are_refused_both_ways() -> None:
    with pytest.raises(CodecError, match="naive"):
        encode(Suspicion(dt.datetime(2026, 1, 1), 1, None))
    with pytest.raises(CodecError, match="UTC offset"):
        decode(Suspicion, {"since": "2026-01-01T00:00:00", "count": 1, "base": None})


def test_not_json_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="not JSON"):
        loads(ArrearsState, '{"tripped": tr')


def test_a_value_of_the_wrong_type_is_named_with_its_type() -> None:
    with pytest.raises(CodecError, match=r"expected a Load, got 5 \(int\)"):
        encode(Suspicion(T0, 1, 5))  # type: ignore[arg-type]
