"""The pure parts of the money operations: the IR handheld export (exact kWh → Wh, every bad
line refused with its number) and the amounts printed on receipts."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.operations.handheld import HandheldError, kwh_to_wh, parse
from cloud.operations.receipts import capital, yuan

HEADER = "address,read_at,energy_kwh\n"


def test_parse_reads_exact_registers() -> None:
    text = "\ufeff# handheld HX-2\n" + HEADER + "000000000001,2026-11-24T09:30:00+08:00,1234.56\n"
    (reading,) = parse(text + "000000000001,2026-11-24T09:30:00+08:00,1234.56\n")  # duplicate
    assert reading.energy_wh == 1_234_560
    assert reading.read_at == dt.datetime(2026, 11, 24, 1, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("000000000001,2026-11-24T09:30:00,1.00", "no offset"),
        ("000000000001,2026-11-24T09:30:00+08:00,1.5", "two decimals"),
        ("000000000001,2026-11-24T09:30:00+08:00,-1.00", "two decimals"),
        ("000000000001,2026-11-24T09:30:00+08:00,1e3", "two decimals"),
        ("00000000000!,2026-11-24T09:30:00+08:00,1.00", "address"),
        ("000000000001,yesterday,1.00", "ISO 8601"),
        ("000000000001,2026-11-24T09:30:00+08:00", "fields"),
    ],
)
def test_a_bad_line_refuses_the_file_naming_it(line: str, why: str) -> None:
    with pytest.raises(HandheldError, match=why) as caught:
        parse(HEADER + "000000000002,2026-11-24T09:30:00+08:00,2.00\n" + line + "\n")
    assert caught.value.line == 3


@pytest.mark.parametrize("text", ["", "# only a comment\n", HEADER, "a,b,c\n1,2,3\n", "\x00"])
def test_files_without_readings_are_refused(text: str) -> None:
    with pytest.raises(HandheldError):
        parse(text)


def test_one_time_two_registers_is_refused() -> None:
    row = "000000000001,2026-11-24T09:30:00+08:00,{}\n"
    with pytest.raises(HandheldError, match="twice"):
        parse(HEADER + row.format("1.00") + row.format("1.01"))


@given(st.integers(min_value=0, max_value=99_999_999_99))
def test_kwh_text_to_wh_is_exact(hundredths: int) -> None:
    assert kwh_to_wh(f"{hundredths // 100}.{hundredths % 100:02d}") == hundredths * 10


@pytest.mark.slow  # 100 random texts
@given(st.text(max_size=40))
def test_any_text_parses_or_raises_our_error(text: str) -> None:
    with contextlib.suppress(HandheldError):
        parse(HEADER + text)


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "零元整"),
        (5, "伍分"),
        (50, "伍角整"),
        (101, "壹元零壹分"),
        (5_000, "伍拾元整"),
        (12_345, "壹佰贰拾叁元肆角伍分"),
        (1_000_500, "壹万零伍元整"),
        (10_050_000, "壹拾万零伍佰元整"),
        (10_000_000_000, "壹亿元整"),
        (-300, "负叁元整"),
    ],
)
def test_capital_amounts(fen: int, text: str) -> None:
    assert capital(fen) == text


def test_yuan() -> None:
    assert [yuan(f) for f in (0, 5, 816_3, -1_234)] == ["0.00", "0.05", "81.63", "-12.34"]
