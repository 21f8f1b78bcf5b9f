"""Tamper tests: each manipulation of an exported chain must be named correctly."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.chain import Checkpoint, Entry, NodeKey
from ledger.export import record_line
from ledger.verify import Problem, TrustedHead, verify_lines, verify_records
from tests.ledger.factories import VECTOR_SEED, sample_records

KEY = NodeKey.from_seed(VECTOR_SEED)
OTHER = NodeKey.from_seed(bytes(31) + b"\x01")


def records() -> list[Entry | Checkpoint]:
    return sample_records()  # type: ignore[return-value]


def lines(recs: list[Entry | Checkpoint]) -> list[str]:
    return [record_line(r) for r in recs]


def first_problem(recs: list[Entry | Checkpoint], **kw: object) -> tuple[Problem, int | None]:
    verdict = verify_records(recs, [KEY.public_key], **kw)  # type: ignore[arg-type]
    assert not verdict.ok
    return verdict.findings[0].problem, verdict.findings[0].seq


def entry_index(recs: list[Entry | Checkpoint], seq: int) -> int:
    return next(i for i, r in enumerate(recs) if isinstance(r, Entry) and r.seq == seq)


def test_sound_chain_is_confirmed() -> None:
    verdict = verify_records(records(), [KEY.public_key])
    assert verdict.ok
    assert verdict.summary()["signed_through"] == 6


def test_flipped_amount_is_tampered_at_that_entry() -> None:
    text = lines(records())
    i = entry_index(records(), 4)
    text[i] = text[i].replace('"amount":', '"amount":1', 1)
    verdict = verify_lines(text, [KEY.public_key])
    assert [(f.problem, f.seq) for f in verdict.findings] == [(Problem.TAMPERED, 4)]


@pytest.mark.parametrize("field", ["hash", "prev_hash"])
def test_flipped_hash_byte_is_tampered(field: str) -> None:
    recs = records()
    i = entry_index(recs, 2)
    entry = recs[i]
    assert isinstance(entry, Entry)
    raw = bytearray(getattr(entry, field))
    raw[0] ^= 1
    recs[i] = dataclasses.replace(entry, **{field: bytes(raw)})
    assert first_problem(recs)[0] is Problem.TAMPERED


def test_rewritten_entry_with_fresh_hash_breaks_the_link() -> None:
    recs = records()
    i = entry_index(recs, 2)
    old = recs[i]
    assert isinstance(old, Entry)
    forged = dataclasses.replace(old.transfer, amount=old.transfer.amount + 1)
    from ledger.chain import make_entry

    recs[i] = make_entry(old.node, old.seq, old.prev_hash, forged)
    assert first_problem(recs) == (Problem.TAMPERED, 2)


def test_dropped_entry_is_a_gap() -> None:
    recs = records()
    del recs[entry_index(recs, 3)]
    assert first_problem(recs) == (Problem.GAP, 3)


def test_swapped_entries_are_a_reorder() -> None:
    recs = records()
    a, b = entry_index(recs, 4), entry_index(recs, 5)
    recs[a], recs[b] = recs[b], recs[a]
    assert first_problem(recs) == (Problem.REORDER, 4)


def test_duplicated_entry_is_a_replay() -> None:
    recs = records()
    recs.insert(entry_index(recs, 5), recs[entry_index(recs, 2)])
    problem, seq = first_problem(recs)
    assert (problem, seq) == (Problem.REPLAY, 2)


def test_same_transfer_at_two_seqs_is_a_replay() -> None:
    from ledger.chain import Chain

    chain = Chain("edge-0001")
    recs: list[Entry | Checkpoint] = []
    t = records()[0]
    assert isinstance(t, Entry)
    recs += [chain.append(t.transfer), chain.append(t.transfer), chain.checkpoint(KEY)]
    assert first_problem(recs) == (Problem.REPLAY, 2)


def test_two_versions_of_one_seq_are_a_fork() -> None:
    recs = records()
    entry = recs[entry_index(recs, 6)]
    assert isinstance(entry, Entry)
    from ledger.chain import make_entry

    other = make_entry(entry.node, 6, entry.prev_hash, dataclasses.replace(entry.transfer, id=99))
    recs.append(other)
    assert first_problem(recs) == (Problem.FORK, 6)


def test_changed_acknowledged_prefix_is_a_fork() -> None:
    recs = records()
    trusted = TrustedHead(3, bytes(32))
    assert first_problem(recs, trusted=trusted) == (Problem.FORK, 3)


def test_chain_shorter_than_trusted_head_is_truncated() -> None:
    recs = [r for r in records() if r.seq <= 3]
    entry = recs[entry_index(recs, 3)]
    assert isinstance(entry, Entry)
    assert first_problem(recs, trusted=TrustedHead(5, entry.hash)) == (Problem.TRUNCATED, 5)


def test_resigned_with_another_key_is_wrong_key() -> None:
    recs = [
        r
        if isinstance(r, Entry)
        else dataclasses.replace(r, key_id=OTHER.key_id, signature=OTHER.private_key.sign(b"x"))
        for r in records()
    ]
    from ledger.chain import sign_checkpoint

    recs = [
        r if isinstance(r, Entry) else sign_checkpoint(OTHER, r.node, r.seq, r.head) for r in recs
    ]
    assert first_problem(recs)[0] is Problem.WRONG_KEY


def test_flipped_signature_is_bad_signature() -> None:
    recs = records()
    i = next(i for i, r in enumerate(recs) if isinstance(r, Checkpoint))
    cp = recs[i]
    assert isinstance(cp, Checkpoint)
    recs[i] = dataclasses.replace(cp, signature=bytes([cp.signature[0] ^ 1]) + cp.signature[1:])
    assert first_problem(recs) == (Problem.BAD_SIGNATURE, cp.seq)


def test_entries_after_the_last_checkpoint_are_an_unsigned_tail() -> None:
    recs = records()[:-1]  # drop the final checkpoint
    assert first_problem(recs) == (Problem.UNSIGNED_TAIL, 4)


def test_record_of_another_node() -> None:
    recs = records()
    recs[0] = dataclasses.replace(recs[0], node="edge-0002")  # type: ignore[type-var]
    assert Problem.WRONG_NODE in verify_records(recs, [KEY.public_key], node="edge-0001").problems


@pytest.mark.parametrize("bad", ["{", "[]", '{"type":"entry"}', '{"type":"banana"}'])
def test_malformed_line(bad: str) -> None:
    verdict = verify_lines([*lines(records())[:2], bad], [KEY.public_key])
    assert verdict.problems == [Problem.MALFORMED]
    assert "line 3" in verdict.findings[0].detail


def _cli(tmp_path: Path, text: list[str]) -> subprocess.CompletedProcess[str]:
    chain = tmp_path / "chain.jsonl"
    chain.write_text("\n".join(text) + "\n", encoding="utf-8")
    key = tmp_path / "node.pub"
    from ledger.chain import public_key_pem

    key.write_bytes(public_key_pem(KEY.public_key))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "ledger",
            "verify",
            "--chain",
            str(chain),
            "--key",
            str(key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_confirms_a_sound_chain(tmp_path: Path) -> None:
    result = _cli(tmp_path, lines(records()))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["entries"] == 6
    assert len(result.stdout.strip().splitlines()) == 1


def test_cli_names_the_problem(tmp_path: Path) -> None:
    text = lines(records())
    del text[entry_index(records(), 2)]
    result = _cli(tmp_path, text)
    assert result.returncode == 1
    assert "gap at seq 2" in result.stderr


def test_a_pruned_chain_verifies_from_before_the_trusted_head() -> None:
    """A recovered store pruned to seq 2 exported while the cloud trusts seq 4: entries 3.. chain
    into the trusted head, nothing is missing."""
    recs = [r for r in sample_records() if r.seq > 2]
    entries = {r.seq: r for r in recs if isinstance(r, Entry)}
    verdict = verify_records(recs, [KEY.public_key], trusted=TrustedHead(4, entries[4].hash))
    assert verdict.ok, verdict.findings
    forked = verify_records(recs, [KEY.public_key], trusted=TrustedHead(4, bytes(32)))
    assert Problem.FORK in forked.problems
    later = verify_records(
        [r for r in recs if r.seq > 3], [KEY.public_key], trusted=TrustedHead(2, entries[3].hash)
    )
    assert Problem.GAP in later.problems  # seq 3 is missing after the trusted head
