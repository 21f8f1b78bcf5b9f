"""The entry ids are frozen format: each function must keep deriving exactly the id its tag and
facts gave when the chains in the field were written (`ledger.entry_ids`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger import entry_ids
from ledger.entry_ids import LEGS, derivation_of, derived_id
from ledger.ids import derive_id
from ledger.transfers import Code

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


@pytest.mark.parametrize("likely", ["", "prepaid", "debt", "cash_in_transit"])
def test_an_id_its_refs_derive_is_found_by_its_index_whatever_is_tried_first(likely: str) -> None:
    """The uplink sends such an id as its index (`ledger.wire_entries`): the index gives the
    id back; an id the refs do not derive, or refs that do not say, have no index. The order
    of the legs is wire format."""
    assert LEGS == ("subsidy", "prepaid", "grace", "credit", "debt", "water_subsidy")
    refs = {"meter": "000000000001", "reg_from": 100, "reg_to": 170}
    for index, leg in enumerate(LEGS):
        ident = entry_ids.consume("000000000001", 100, 170, leg)
        assert derivation_of(Code.CONSUME, refs, ident, likely=likely) == index
        assert derived_id(Code.CONSUME, refs, index) == ident
    payment = {"payment": "P1", "method": "cash"}
    assert derivation_of(Code.RECHARGE, payment, entry_ids.recharge("P1"), likely=likely) == 0
    assert derivation_of(Code.CONSUME, refs, entry_ids.recharge("P1"), likely=likely) is None
    assert derived_id(Code.CONSUME, {**refs, "reg_to": "170"}, 0) is None
    assert derived_id(Code.RECHARGE, payment, 1) is None
    assert derived_id(Code.REFUND, payment, 0) is None
