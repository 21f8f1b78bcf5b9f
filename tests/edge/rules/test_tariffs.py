"""Tariffs: flat, time-of-use (by time and by the meter's registers), tiered; splits sum to the
whole and costs are exact."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules.errors import InputError, PolicyError
from edge.rules.tariffs import (
    CostPart,
    FlatTariff,
    Period,
    Tier,
    TieredTariff,
    TouRange,
    TouTariff,
    _time_in_periods,  # the split itself, nothing remembered
    apportion,
    energy_of,
    exact_cost_of,
    merge_parts,
    price_energy,
    reference_price,
    split_parts,
    time_in_periods,
)
from ledger.units import ExactCost, Price, Wh, exact_cost
from tests.edge.rules.helpers import TZ, at

T = dt.time
# A commercial table in the style of Shanghai's: valley at night, two peaks, a sharp noon.
TOU = TouTariff(
    ranges=(
        TouRange(T(22), T(6), Period.VALLEY),
        TouRange(T(6), T(8), Period.FLAT),
        TouRange(T(8), T(11), Period.PEAK),
        TouRange(T(11), T(13), Period.SHARP),
        TouRange(T(13), T(18), Period.FLAT),
        TouRange(T(18), T(22), Period.PEAK),
    ),
    prices=(
        (Period.SHARP, Price(13_000)),
        (Period.PEAK, Price(11_000)),
        (Period.FLAT, Price(7_000)),
        (Period.VALLEY, Price(3_000)),
    ),
)
TIERED = TieredTariff(
    (Tier(Wh(10_000), Price(5_000)), Tier(Wh(20_000), Price(6_000)), Tier(None, Price(9_000)))
)
FLAT = FlatTariff(Price(8_365))


def test_flat_is_one_part_at_its_price() -> None:
    parts = price_energy(FLAT, Wh(1_230), at(2026, 11, 1), at(2026, 11, 1, 1))
    assert parts == (CostPart(Wh(1_230), Price(8_365), "single"),)
    assert exact_cost_of(parts) == exact_cost(Wh(1_230), Price(8_365))


def test_zero_energy_has_no_parts() -> None:
    assert price_energy(TOU, Wh(0), at(2026, 11, 1), at(2026, 11, 2)) == ()


def test_tou_by_time_splits_across_a_boundary_in_order() -> None:
    parts = price_energy(TOU, Wh(600), at(2026, 11, 1, 21, 30), at(2026, 11, 1, 22, 30))
    assert parts == (
        CostPart(Wh(300), Price(11_000), "peak"),
        CostPart(Wh(300), Price(3_000), "valley"),
    )


def test_tou_by_time_across_midnight_and_days() -> None:
    # 48 h: every period twice; shares follow hours (valley 8 h, flat 7 h, peak 7 h, sharp 2 h).
    spent = time_in_periods(TOU, at(2026, 11, 1, 0), at(2026, 11, 3, 0))
    hours = {period: micros / 3_600_000_000 for period, micros in spent.items()}
    assert hours == {Period.VALLEY: 16, Period.FLAT: 14, Period.PEAK: 14, Period.SHARP: 4}
    assert list(spent) == [Period.VALLEY, Period.FLAT, Period.PEAK, Period.SHARP]
    parts = price_energy(TOU, Wh(4_800), at(2026, 11, 1, 0), at(2026, 11, 3, 0))
    assert {p.label: p.energy for p in parts} == {
        "valley": 1600,
        "flat": 1400,
        "peak": 1400,
        "sharp": 400,
    }


def test_tou_backwards_interval_lands_in_the_period_at_its_end() -> None:
    parts = price_energy(TOU, Wh(50), at(2026, 11, 1, 12), at(2026, 11, 1, 9))
    assert parts == (CostPart(Wh(50), Price(11_000), "peak"),)


def test_tou_registers_win_over_time() -> None:
    # By time this hour is all peak, but the meter's own clock says part of it was sharp.
    by_period = {Period.SHARP: 30, Period.PEAK: 70, Period.FLAT: 0, Period.VALLEY: 0}
    parts = price_energy(TOU, Wh(100), at(2026, 11, 1, 9), at(2026, 11, 1, 10), by_period=by_period)
    # Chronological first (peak was seen by the box's clock), then the rest in meter order.
    assert parts == (
        CostPart(Wh(70), Price(11_000), "peak"),
        CostPart(Wh(30), Price(13_000), "sharp"),
    )


def test_tou_registers_rounding_still_sums_to_the_total_register() -> None:
    # Per-tariff registers 0.01 kWh each can disagree with the total register by a step.
    by_period = {Period.PEAK: 10, Period.FLAT: 10, Period.VALLEY: 10}
    parts = price_energy(TOU, Wh(20), at(2026, 11, 1, 7), at(2026, 11, 1, 9), by_period=by_period)
    assert energy_of(parts) == 20


def test_tou_registers_ignored_when_unusable() -> None:
    start, end = at(2026, 11, 1, 21, 30), at(2026, 11, 1, 22, 30)
    by_time = price_energy(TOU, Wh(600), start, end)
    for bad in ({Period.PEAK: -10, Period.VALLEY: 20}, {Period.PEAK: 0}, {}):
        assert price_energy(TOU, Wh(600), start, end, by_period=bad) == by_time


def test_tou_table_must_cover_the_day_once_with_prices() -> None:
    prices = ((Period.FLAT, Price(7_000)), (Period.VALLEY, Price(3_000)))
    with pytest.raises(PolicyError, match="gap"):
        TouTariff(
            (TouRange(T(0), T(12), Period.FLAT), TouRange(T(13), T(0), Period.VALLEY)), prices
        )
    with pytest.raises(PolicyError, match="overlap"):
        TouTariff(
            (TouRange(T(0), T(13), Period.FLAT), TouRange(T(12), T(0), Period.VALLEY)), prices
        )
    with pytest.raises(PolicyError, match="no price"):
        TouTariff((TouRange(T(0), T(0), Period.PEAK),), prices)
    with pytest.raises(PolicyError, match="positive"):
        TouTariff((TouRange(T(0), T(0), Period.FLAT),), ((Period.FLAT, Price(0)),))
    whole_day = TouTariff((TouRange(T(0), T(0), Period.FLAT),), prices)
    assert whole_day.period_at(T(13, 7)) is Period.FLAT


def test_tiers_split_at_thresholds() -> None:
    parts = price_energy(TIERED, Wh(13_000), at(2026, 11, 5), at(2026, 11, 6), month_used_wh=9_000)
    assert parts == (
        CostPart(Wh(1_000), Price(5_000), "tier1"),
        CostPart(Wh(10_000), Price(6_000), "tier2"),
        CostPart(Wh(2_000), Price(9_000), "tier3"),
    )


def test_tier_table_validation() -> None:
    with pytest.raises(PolicyError):
        TieredTariff((Tier(Wh(100), Price(1)),))
    with pytest.raises(PolicyError):
        TieredTariff((Tier(Wh(100), Price(1)), Tier(Wh(50), Price(2)), Tier(None, Price(3))))
    with pytest.raises(PolicyError):
        FlatTariff(Price(0))


def test_reference_prices() -> None:
    assert reference_price(FLAT) == 8_365
    assert reference_price(TIERED) == 5_000
    # (8×3000 + 7×7000 + 7×11000 + 2×13000) / 24 = 7333.3…, rounded up.
    assert reference_price(TOU) == 7_334


def test_apportion_and_split_helpers() -> None:
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(5, [0, 3, 0]) == [0, 5, 0]
    with pytest.raises(InputError):
        apportion(5, [0, 0])
    parts = (CostPart(Wh(5), Price(1), "a"), CostPart(Wh(5), Price(2), "b"))
    head, tail = split_parts(parts, 7)
    assert head == (parts[0], CostPart(Wh(2), Price(2), "b"))
    assert tail == (CostPart(Wh(3), Price(2), "b"),)
    assert merge_parts((*tail, *head)) == (CostPart(Wh(5), Price(2), "b"), parts[0])


# -- properties ---------------------------------------------------------------------------------

moments = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31), timezones=st.just(TZ)
)
energies = st.integers(min_value=0, max_value=5_000_000)
tariffs = st.sampled_from([FLAT, TOU, TIERED])
registers = st.dictionaries(
    st.sampled_from(list(Period)), st.integers(min_value=0, max_value=100_000), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(
    tariff=tariffs,
    energy=energies,
    start=moments,
    seconds=st.integers(0, 3 * 24 * 3600),
    used=st.integers(0, 50_000),
    by_period=registers,
)
def test_parts_always_sum_to_the_energy(
    *,
    tariff: FlatTariff | TouTariff | TieredTariff,
    energy: int,
    start: dt.datetime,
    seconds: int,
    used: int,
    by_period: dict[Period, int],
) -> None:
    end = start + dt.timedelta(seconds=seconds)
    parts = price_energy(tariff, Wh(energy), start, end, month_used_wh=used, by_period=by_period)
    assert energy_of(parts) == energy
    assert all(part.energy > 0 for part in parts)
    assert exact_cost_of(parts) == sum(p.energy * p.price for p in parts)


@settings(max_examples=300, deadline=None)
@given(energies, moments, st.integers(1, 3 * 24 * 3600))
def test_tou_by_time_is_proportional_to_time(energy: int, start: dt.datetime, seconds: int) -> None:
    end = start + dt.timedelta(seconds=seconds)
    spent = time_in_periods(TOU, start, end)
    assert sum(spent.values()) == seconds * 1_000_000
    parts = {p.label: p.energy for p in price_energy(TOU, Wh(energy), start, end)}
    for period, micros in spent.items():
        exact = energy * micros / (seconds * 1_000_000)
        assert abs(parts.get(period.value, 0) - exact) < 1


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60_000), st.integers(0, 30_000), st.integers(0, 30_000))
def test_tiers_are_additive(used: int, first: int, second: int) -> None:
    """Pricing two consecutive intervals costs exactly what pricing them as one does."""
    t0, t1 = at(2026, 11, 2), at(2026, 11, 3)
    whole = price_energy(TIERED, Wh(first + second), t0, t1, month_used_wh=used)
    a = price_energy(TIERED, Wh(first), t0, t1, month_used_wh=used)
    b = price_energy(TIERED, Wh(second), t0, t1, month_used_wh=used + first)
    assert exact_cost_of(a) + exact_cost_of(b) == exact_cost_of(whole)
    assert ExactCost(exact_cost_of(whole)) >= exact_cost(Wh(first + second), Price(5_000))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10**9), min_size=1, max_size=6).filter(lambda w: sum(w) > 0),
    st.integers(0, 10**7),
)
def test_apportion_sums_exactly_and_stays_within_one(weights: list[int], total: int) -> None:
    shares = apportion(total, weights)
    assert sum(shares) == total
    for share, weight in zip(shares, weights, strict=True):
        assert abs(share - total * weight / sum(weights)) < 1
        assert weight or not share


# An instant in a daylight-saving zone's repeated hour (fold 0 and 1 are an hour apart), the
# same instants in UTC and in the site's zone: what an interval's remembered split must tell
# apart, since aware datetimes compare by instant across zones and by wall clock within one.
NEW_YORK = ZoneInfo("America/New_York")
zones = st.sampled_from([TZ, dt.UTC, NEW_YORK])
instants = st.sampled_from(
    [
        dt.datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK),  # the repeated hour
        dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK),
        at(2026, 11, 1, 21, 45),
        at(2026, 11, 1, 22, 0),
        at(2026, 11, 1, 22, 15),
        at(2026, 11, 2, 13, 0),
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(instants, zones, instants, zones), min_size=1, max_size=12))
def test_a_remembered_split_is_the_split_worked_out_afresh(
    intervals: list[tuple[dt.datetime, dt.tzinfo, dt.datetime, dt.tzinfo]],
) -> None:
    """A cycle's meters share their interval, so its split is worked out once; whatever
    intervals came before, in whatever zones and folds, the split looked up is the one the
    plain computation gives."""
    for first, start_zone, last, end_zone in intervals:
        start = first.astimezone(start_zone)
        for fold in (0, 1):  # the same wall clock, the other fold: another instant in a DST hour
            end = last.astimezone(end_zone).replace(fold=fold)
            assert time_in_periods(TOU, start, end) == dict(_time_in_periods(TOU, start, end))
