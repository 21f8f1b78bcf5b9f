"""The entry ids are frozen format: each function must keep deriving exactly the id its tag and
facts gave when the chains in the field were written (`ledger.entry_ids`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger import entry_ids
from ledger.ids import derive_id

# (function, its arguments, the tag written in the field's chains)
CASES: list[tuple[Callable[..., int], tuple[str | int, ...], str]] = [
    (entry_ids.recharge, ("PAY-1",), "recharge"),
    (entry_ids.consume, ("000000000001", 10, 20, "prepaid"), "consume"),
    (entry_ids.meter_settle, ("S-1", "subsidy"), "meter-settle"),
    (entry_ids.correction, ("C-1",), "correction"),
    (entry_ids.refund, ("R-1",), "refund"),
    (entry_ids.grace, ("R-1",), "grace"),
    (entry_ids.grace_expire, ("R-1",), "grace-expire"),
    (entry_ids.grace_end, ("R-1",), "grace-end"),
    (entry_ids.settle, ("0" * 32, "post"), "settle"),
    (entry_ids.move_out, ("M-1",), "move-out"),
    (entry_ids.move_expire, ("M-1",), "move-expire"),
    (entry_ids.move_in, ("M-1",), "move-in"),
    (entry_ids.debt_repay, ("A0001", 0), "debt-repay"),
    (entry_ids.takeover_open, ("T1", "A0001:prepaid"), "takeover-open"),
    (entry_ids.takeover_close, ("T1", "A0001:prepaid"), "takeover-close"),
]


@pytest.mark.parametrize(("function", "facts", "tag"), CASES, ids=[c[2] for c in CASES])
def test_each_entry_id_is_its_frozen_tag_and_facts(
    function: Callable[..., int], facts: tuple[str | int, ...], tag: str
) -> None:
    assert function(*facts) == derive_id(tag, *facts)


def test_every_tag_has_its_function_and_no_two_collide() -> None:
    assert {c[2] for c in CASES} == {t.value for t in entry_ids.EntryTag}
    ids = [function(*facts) for function, facts, _ in CASES]
    assert len(set(ids)) == len(ids)


def test_the_same_reference_under_two_tags_gives_two_ids() -> None:
    assert entry_ids.refund("X") != entry_ids.grace("X") != entry_ids.grace_end("X")
