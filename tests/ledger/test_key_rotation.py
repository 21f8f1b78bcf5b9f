"""A node's key rotated in its chain (`ledger.key_rotation`): the frozen record, its decoder
against any bytes, and the rule every verifier follows — the old key signs up to the rotation's
seq, only the new one after it, and a rotation not signed by the current key is refused."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.chain import Checkpoint, Entry, NodeKey, sign_checkpoint
from ledger.encoding import GENESIS_HASH
from ledger.errors import DecodeError
from ledger.export import parse_record, record_line
from ledger.key_rotation import KeyRotation, KeySchedule, schedule_of
from ledger.signed import Rejected
from ledger.verify import Problem, verify_lines, verify_records
from tests.ledger.factories import VECTOR_NODE, VECTOR_SEED, sample_records

VECTOR = Path(__file__).parent.parent / "vectors" / "key-rotation-v1.json"
OLD = NodeKey.from_seed(VECTOR_SEED)
NEW = NodeKey.from_seed(bytes(range(32, 64)))
STRANGER = NodeKey.from_seed(bytes(31) + b"\x07")

Record = Entry | Checkpoint | KeyRotation


def _entries() -> list[Entry]:
    return [r for r in sample_records() if isinstance(r, Entry)]  # type: ignore[misc]


def rotated_chain(rotation_signer: NodeKey = OLD, last_signer: NodeKey = NEW) -> list[Record]:
    """Entries 1-3 checkpointed by the old key, the rotation at 3, entries 4-6 checkpointed by
    `last_signer`."""
    entries = _entries()
    rotation = KeyRotation.sign(rotation_signer, VECTOR_NODE, 3, entries[2].hash, NEW.public_key)
    return [
        *entries[:3],
        sign_checkpoint(OLD, VECTOR_NODE, 3, entries[2].hash),
        rotation,
        *entries[3:],
        sign_checkpoint(last_signer, VECTOR_NODE, 6, entries[5].hash),
    ]


def test_the_rotation_record_is_byte_for_byte_frozen() -> None:
    frozen = VECTOR.read_bytes().strip()
    made = KeyRotation.sign(OLD, VECTOR_NODE, 3, _entries()[2].hash, NEW.public_key)
    assert made.payload == frozen
    decoded = KeyRotation.decode(frozen)
    assert (decoded.node, decoded.seq, decoded.head) == (VECTOR_NODE, 3, _entries()[2].hash)
    assert (decoded.old_key_id, decoded.new_key_id) == (OLD.key_id, NEW.key_id)


def test_a_rotation_mid_chain_verifies_with_the_old_or_the_new_key() -> None:
    chain = rotated_chain()
    lines = [record_line(r) for r in chain]
    assert parse_record(lines[4]) == chain[4]  # the export line round-trips
    for trusted in (NEW, OLD):
        verdict = verify_lines(lines, [trusted.public_key])
        assert verdict.ok, verdict.findings
        assert (verdict.signed_through, verdict.checkpoints) == (6, 2)


def test_without_its_rotation_the_new_keys_checkpoint_is_unknown() -> None:
    chain = [r for r in rotated_chain() if not isinstance(r, KeyRotation)]
    verdict = verify_records(chain, [OLD.public_key])
    assert verdict.problems == [Problem.WRONG_KEY, Problem.UNSIGNED_TAIL]


def test_the_retired_key_is_refused_after_the_rotation_seq() -> None:
    verdict = verify_records(rotated_chain(last_signer=OLD), [NEW.public_key])
    assert verdict.problems == [Problem.WRONG_KEY, Problem.UNSIGNED_TAIL]
    assert verdict.findings[0].seq == 6
    assert "retired at seq 3" in verdict.findings[0].detail
    assert verdict.signed_through == 3  # what it signed before still verifies


def test_a_forged_rotation_is_refused_and_its_key_signs_nothing() -> None:
    forged = rotated_chain(rotation_signer=STRANGER)  # STRANGER → NEW, STRANGER not the node's
    verdict = verify_records(forged, [OLD.public_key])
    assert Problem.BAD_ROTATION in verdict.problems
    assert verdict.problems[-2:] == [Problem.WRONG_KEY, Problem.UNSIGNED_TAIL]
    assert verdict.signed_through == 3


def test_a_rotation_bound_to_another_head_is_refused() -> None:
    chain = rotated_chain()
    entries = _entries()
    chain[4] = KeyRotation.sign(OLD, VECTOR_NODE, 3, entries[1].hash, NEW.public_key)
    verdict = verify_records(chain, [OLD.public_key])
    assert verdict.problems[0] is Problem.BAD_ROTATION
    assert "head" in verdict.findings[0].detail


def test_a_second_rotation_chains_from_the_first() -> None:
    entries = _entries()
    third = NodeKey.from_seed(bytes(31) + b"\x09")
    chain = rotated_chain()
    chain.insert(-1, KeyRotation.sign(NEW, VECTOR_NODE, 5, entries[4].hash, third.public_key))
    chain[-1] = sign_checkpoint(third, VECTOR_NODE, 6, entries[5].hash)
    assert verify_records(chain, [third.public_key]).ok
    assert verify_records(chain, [OLD.public_key]).ok
    # the first key may not rotate again once retired
    chain.insert(-1, KeyRotation.sign(OLD, VECTOR_NODE, 5, entries[4].hash, STRANGER.public_key))
    assert Problem.BAD_ROTATION in verify_records(chain, [third.public_key]).problems


def test_the_schedule_rule() -> None:
    rotation = KeyRotation.sign(OLD, VECTOR_NODE, 10, bytes(32), NEW.public_key)
    schedule = KeySchedule.starting(VECTOR_NODE, OLD.public_key).follow(rotation, bytes(32))
    assert schedule.key_for(OLD.key_id, 10) is not None
    assert schedule.key_for(OLD.key_id, 11) is None
    assert schedule.key_for(NEW.key_id, 1) is not None  # a resent batch, re-signed
    assert schedule.key_for(STRANGER.key_id, 1) is None
    assert set(schedule.current) == {NEW.key_id}
    with pytest.raises(Rejected) as refused:  # OLD is retired now
        schedule.follow(
            KeyRotation.sign(OLD, VECTOR_NODE, 11, bytes(32), STRANGER.public_key), None
        )
    assert refused.value.reason == "not_current"
    with pytest.raises(Rejected) as refused:
        schedule.follow(KeyRotation.sign(NEW, VECTOR_NODE, 9, bytes(32), STRANGER.public_key), None)
    assert refused.value.reason == "out_of_order"
    with pytest.raises(Rejected) as refused:
        schedule.follow(
            KeyRotation.sign(NEW, "edge-0002", 12, bytes(32), STRANGER.public_key), None
        )
    assert refused.value.reason == "wrong_node"
    genesis = KeyRotation.sign(OLD, VECTOR_NODE, 0, b"\x01" * 32, NEW.public_key)  # not genesis
    with pytest.raises(Rejected):
        KeySchedule.starting(VECTOR_NODE, OLD.public_key).follow(genesis, None)
    at_genesis = KeyRotation.sign(OLD, VECTOR_NODE, 0, GENESIS_HASH, NEW.public_key)
    KeySchedule.starting(VECTOR_NODE, OLD.public_key).follow(at_genesis, None)


def test_a_line_of_rotations_no_trusted_key_is_on_is_untrusted() -> None:
    rotation = KeyRotation.sign(STRANGER, VECTOR_NODE, 0, GENESIS_HASH, NEW.public_key)
    schedule, refused = schedule_of(VECTOR_NODE, [rotation], [OLD.public_key], lambda s: None)
    assert [why.reason for _, why in refused] == ["not_current"]
    assert set(schedule.current) == {OLD.key_id}


def _mutations() -> st.SearchStrategy[bytes]:
    frozen = json.loads(VECTOR.read_bytes())
    keys = sorted(frozen)
    return st.one_of(
        st.binary(max_size=600),
        st.builds(
            lambda k, v: json.dumps({**frozen, k: v}).encode(),
            st.sampled_from(keys),
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=130),
                st.booleans(),
                st.just("0" * 64),
                st.just("f" * 128),
                st.lists(st.integers(), max_size=2),
            ),
        ),
        st.builds(
            lambda k: json.dumps({x: frozen[x] for x in keys if x != k}).encode(),
            st.sampled_from(keys),
        ),
    )


@given(_mutations())
def test_any_bytes_decode_or_are_rejected(payload: bytes) -> None:
    try:
        rotation = KeyRotation.decode(payload)
    except Rejected as exc:
        assert exc.reason in {"malformed", "bad_signature", "unknown_key"}
        return
    assert rotation.payload == payload or KeyRotation.decode(rotation.payload) == rotation


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=5))
def test_any_export_line_parses_or_raises_decode_error(noise: bytes, cut: int) -> None:
    line = record_line(KeyRotation.decode(VECTOR.read_bytes().strip()))
    text = line[: len(line) - cut] + noise.decode("utf-8", "replace")
    with contextlib.suppress(DecodeError):  # and nothing else
        parse_record(text)
