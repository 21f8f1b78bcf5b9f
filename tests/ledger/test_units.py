"""Units and drift-free cumulative rounding (docs/architecture.md §4)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidValue
from ledger.units import (
    ExactCost,
    Price,
    Wh,
    charge_step,
    exact_cost,
    fen_rounded,
    fen_to_yuan,
    kwh_to_wh,
    yuan_to_fen,
)


def test_exact_cost_units() -> None:
    # 1 kWh at 0.8365 CNY/kWh = 0.8365 CNY = 8 365 000 × 1e-7 CNY = 83.65 fen
    assert exact_cost(Wh(1000), Price(8365)) == 8_365_000
    assert fen_rounded(ExactCost(8_365_000)) == 84  # 83.65 rounds half up
    assert fen_rounded(ExactCost(8_349_999)) == 83


@pytest.mark.parametrize("bad", [1.5, True, "3", None])
def test_floats_and_other_types_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValue):
        exact_cost(bad, Price(1))  # type: ignore[arg-type]


def test_negative_energy_refused() -> None:
    with pytest.raises(InvalidValue):
        exact_cost(Wh(-1), Price(8365))


def test_per_step_rounding_would_drift_but_cumulative_does_not() -> None:
    # 10 Wh at 0.8365 CNY/kWh is 0.8365 fen: naive per-step rounding charges 1 fen each time.
    cumulative, charged = ExactCost(0), 0
    for _ in range(1000):
        fen, cumulative = charge_step(cumulative, exact_cost(Wh(10), Price(8365)))
        charged += fen
    assert charged == 837  # 10 kWh × 0.8365 = 8.365 CNY → 836.5 → 837 fen, rounded once
    assert charged == fen_rounded(cumulative)


@given(
    steps=st.lists(st.integers(min_value=0, max_value=50_000), max_size=200),
    price=st.integers(min_value=0, max_value=50_000),
)
def test_cumulative_rounding_never_drifts(steps: list[int], price: int) -> None:
    cumulative, charged = ExactCost(0), 0
    for energy in steps:
        fen, cumulative = charge_step(cumulative, exact_cost(Wh(energy), Price(price)))
        assert fen >= 0
        charged += fen
        assert charged == fen_rounded(cumulative)
    exact_yuan = Decimal(sum(steps) * price) / Decimal(10**7)
    assert abs(Decimal(charged) / 100 - exact_yuan) <= Decimal("0.005")


def test_yuan_and_kwh_parsing_is_exact() -> None:
    assert yuan_to_fen("19.90") == 1990  # the float bug: 19.9 * 100 == 1989.9999…
    assert yuan_to_fen(Decimal("0.01")) == 1
    assert fen_to_yuan(1990) == "19.90"
    assert kwh_to_wh("1234.56") == 1_234_560
    for bad in (19.9, "0.001"):
        with pytest.raises(InvalidValue):
            yuan_to_fen(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        kwh_to_wh("0.0001")
