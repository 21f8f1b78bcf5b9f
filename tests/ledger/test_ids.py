"""Derived ids are stable, distinct for distinct facts, and unambiguous."""

from __future__ import annotations

import pytest

from ledger.errors import InvalidValue
from ledger.ids import derive_id


def test_stable_and_frozen() -> None:
    assert derive_id("subsidy_issue", "A0001", "2026-11") == derive_id(
        "subsidy_issue", "A0001", "2026-11"
    )
    assert derive_id("x") == 0x936D4AFDCDB39CA6F0148AE247270001  # frozen: ids must never change


def test_parts_are_unambiguous() -> None:
    assert derive_id("ab", "c") != derive_id("a", "bc")
    assert derive_id(1) != derive_id("1")
    assert derive_id("A0001", "2026-11") != derive_id("A0001", "2026-12")


def test_bad_parts() -> None:
    with pytest.raises(InvalidValue):
        derive_id()
    with pytest.raises(InvalidValue):
        derive_id(1.5)  # type: ignore[arg-type]
