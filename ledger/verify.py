"""The chain verifier: confirms an exported chain or names exactly what is wrong with it.

Given the records of one node's chain in file order, the node's trusted public keys, and
optionally the last head the caller trusts (e.g. the cloud's acknowledged head), it reports:

| problem | meaning |
|---|---|
| `malformed` | a line is not a valid entry or checkpoint |
| `wrong_node` | a record belongs to another node |
| `replay` | an entry appears twice, or one transfer id sits in two entries |
| `fork` | two different entries or signed heads for one seq; the trusted head was rewritten |
| `reorder` | entries are all there but out of sequence |
| `gap` | a sequence number is missing |
| `tampered` | content does not hash to its hash, or no longer chains to its successor or head |
| `wrong_key` | a checkpoint is signed by a key that is not the node's |
| `bad_signature` | a checkpoint names the node's key but its signature does not verify |
| `truncated` | the chain ends before a head that was signed or trusted |
| `unsigned_tail` | entries after the last valid checkpoint (nothing vouches for them) |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import Checkpoint, Entry, entry_hash, key_id
from ledger.encoding import GENESIS_HASH, encode_transfer
from ledger.errors import DecodeError
from ledger.export import Record, parse_record


class Problem(StrEnum):
    MALFORMED = "malformed"
    WRONG_NODE = "wrong_node"
    REPLAY = "replay"
    FORK = "fork"
    REORDER = "reorder"
    GAP = "gap"
    TAMPERED = "tampered"
    WRONG_KEY = "wrong_key"
    BAD_SIGNATURE = "bad_signature"
    TRUNCATED = "truncated"
    UNSIGNED_TAIL = "unsigned_tail"


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    seq: int | None
    detail: str

    def __str__(self) -> str:
        where = f" at seq {self.seq}" if self.seq is not None else ""
        return f"{self.problem.value}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class TrustedHead:
    seq: int
    hash: bytes


@dataclass(slots=True)
class Verdict:
    node: str | None
    entries: int
    first_seq: int | None
    last_seq: int | None
    head: bytes | None
    checkpoints: int
    signed_through: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def problems(self) -> list[Problem]:
        return [f.problem for f in self.findings]

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "node": self.node,
            "entries": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head": self.head.hex() if self.head else None,
            "checkpoints": self.checkpoints,
            "signed_through": self.signed_through,
            "problems": [str(f) for f in self.findings],
        }


def verify_lines(
    lines: Iterable[str],
    keys: Sequence[Ed25519PublicKey],
    *,
    node: str | None = None,
    trusted: TrustedHead | None = None,
) -> Verdict:
    """Verify a JSON-lines export. A malformed line is a finding, not an exception."""
    records: list[Record] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line))
        except DecodeError as exc:
            verdict = Verdict(node, 0, None, None, None, 0, 0)
            verdict.findings.append(Finding(Problem.MALFORMED, None, f"line {number}: {exc}"))
            return verdict
    return verify_records(records, keys, node=node, trusted=trusted)


def verify_records(
    records: Sequence[Record],
    keys: Sequence[Ed25519PublicKey],
    *,
    node: str | None = None,
    trusted: TrustedHead | None = None,
) -> Verdict:
    """Verify one node's records in the order given."""
    entries = [r for r in records if isinstance(r, Entry)]
    checkpoints = [r for r in records if isinstance(r, Checkpoint)]
    node = node or (records[0].node if records else None)
    findings: list[Finding] = []
    for record in records:
        if record.node != node:
            findings.append(
                Finding(Problem.WRONG_NODE, record.seq, f"record of node {record.node!r}")
            )
            break
    ordered = _check_sequence(entries, findings)
    hashes = _check_links(ordered, trusted, findings)
    last_seq = ordered[-1].seq if ordered else None
    signed_through = _check_checkpoints(checkpoints, keys, hashes, last_seq, findings)
    if trusted is not None:
        if last_seq is None or last_seq < trusted.seq:
            findings.append(
                Finding(Problem.TRUNCATED, trusted.seq, "chain ends before the trusted head")
            )
        elif trusted.seq in hashes and hashes[trusted.seq] != trusted.hash:
            findings.append(
                Finding(Problem.FORK, trusted.seq, "the acknowledged prefix has changed")
            )
    if last_seq is not None and signed_through < last_seq:
        findings.append(
            Finding(
                Problem.UNSIGNED_TAIL,
                signed_through + 1,
                f"entries {signed_through + 1}..{last_seq} are not covered by a valid checkpoint",
            )
        )
    return Verdict(
        node=node,
        entries=len(ordered),
        first_seq=ordered[0].seq if ordered else None,
        last_seq=last_seq,
        head=ordered[-1].hash if ordered else None,
        checkpoints=len(checkpoints),
        signed_through=signed_through,
        findings=findings,
    )


def _check_sequence(entries: list[Entry], findings: list[Finding]) -> list[Entry]:
    """Find replays, forks and reordering; return one entry per seq, in seq order."""
    by_seq: dict[int, Entry] = {}
    for entry in entries:
        first = by_seq.get(entry.seq)
        if first is None:
            by_seq[entry.seq] = entry
        elif first == entry:
            findings.append(Finding(Problem.REPLAY, entry.seq, "entry repeated"))
        else:
            findings.append(Finding(Problem.FORK, entry.seq, "two different entries for one seq"))
    file_order = [e.seq for e in entries]
    repeated = _seen_twice(file_order)
    for before, after in pairwise(file_order):
        if after < before and not {before, after} & repeated:
            findings.append(Finding(Problem.REORDER, after, f"seq {after} comes after {before}"))
            break
    return [by_seq[s] for s in sorted(by_seq)]


def _check_links(
    ordered: list[Entry], trusted: TrustedHead | None, findings: list[Finding]
) -> dict[int, bytes]:
    """Check gaps, each entry's hash and its link to the previous one; return seq -> hash."""
    add = findings.append
    # A chain may start after seq 1 (a store pruned to an anchor) at or before the trusted
    # head's successor: the trusted head then vouches for what came before it.
    expected = min(trusted.seq + 1, ordered[0].seq) if trusted and ordered else 1
    hashes: dict[int, bytes] = {}
    seen_ids: dict[int, int] = {}
    previous: Entry | None = None
    for entry in ordered:
        if entry.seq != expected:
            missing = f"{expected}..{entry.seq - 1}" if entry.seq - 1 > expected else expected
            add(Finding(Problem.GAP, expected, f"seq {missing} missing"))
            previous = None
        expected = entry.seq + 1
        digest = entry_hash(entry.node, entry.seq, entry.prev_hash, encode_transfer(entry.transfer))
        if digest != entry.hash:
            add(Finding(Problem.TAMPERED, entry.seq, "content does not match its hash"))
        if previous is not None and entry.prev_hash != previous.hash:
            add(Finding(Problem.TAMPERED, previous.seq, f"seq {entry.seq} chained to another"))
        elif entry.seq == 1 and entry.prev_hash != GENESIS_HASH:
            add(Finding(Problem.TAMPERED, 1, "first entry does not start from the genesis hash"))
        elif (
            previous is None
            and trusted
            and entry.seq == trusted.seq + 1
            and entry.prev_hash != trusted.hash
        ):
            add(Finding(Problem.FORK, entry.seq, "does not extend the trusted head"))
        hashes[entry.seq] = entry.hash
        other = seen_ids.setdefault(entry.transfer.id, entry.seq)
        if other != entry.seq:
            add(
                Finding(
                    Problem.REPLAY,
                    entry.seq,
                    f"transfer {entry.transfer.id:032x} already at seq {other}",
                )
            )
        previous = entry
    return hashes


def _seen_twice(seqs: list[int]) -> set[int]:
    seen: set[int] = set()
    twice: set[int] = set()
    for seq in seqs:
        (twice if seq in seen else seen).add(seq)
    return twice


def _check_checkpoints(
    checkpoints: list[Checkpoint],
    keys: Sequence[Ed25519PublicKey],
    hashes: Mapping[int, bytes],
    last_seq: int | None,
    findings: list[Finding],
) -> int:
    """Check each checkpoint; return the highest seq a valid one vouches for."""
    add = findings.append
    trusted = {key_id(k): k for k in keys}
    signed_heads: dict[int, bytes] = {}
    signed_through = 0
    for cp in checkpoints:
        key = trusted.get(cp.key_id)
        if key is None:
            add(Finding(Problem.WRONG_KEY, cp.seq, f"signed by unknown key {cp.key_id}"))
            continue
        if not cp.verify(key):
            add(Finding(Problem.BAD_SIGNATURE, cp.seq, f"signature by {cp.key_id} is invalid"))
            continue
        other = signed_heads.setdefault(cp.seq, cp.head)
        if other != cp.head:
            add(Finding(Problem.FORK, cp.seq, "two validly signed heads for one seq"))
            continue
        if last_seq is None or cp.seq > last_seq:
            add(Finding(Problem.TRUNCATED, cp.seq, "a signed head lies beyond the last entry"))
            continue
        if cp.seq in hashes and hashes[cp.seq] != cp.head:
            add(Finding(Problem.TAMPERED, cp.seq, "entries do not lead to the signed head"))
            continue
        signed_through = max(signed_through, cp.seq)
    return signed_through
