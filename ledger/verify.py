"""The chain verifier: confirms an exported chain or names exactly what is wrong with it.

`verify_lines` reads a JSON-lines export (`ledger.export`), `verify_records` judges parsed
records, `verify_stored` the rows of a store as they are (bodies of either format, hashed as
stored, never re-encoded). Given the records of one node's chain in file order, the node's
trusted public keys, its key rotations (`ledger.key_rotation`: in an export they are records
too; a key signs the seqs up to the one it was retired at), and optionally the last head the
caller trusts (e.g. the cloud's acknowledged head), it reports:

| problem | meaning |
|---|---|
| `malformed` | a line is not a valid entry or checkpoint, or a stored body not a transfer |
| `wrong_node` | a record belongs to another node |
| `replay` | an entry appears twice, or one transfer id sits in two entries |
| `fork` | two different entries or signed heads for one seq; the trusted head was rewritten |
| `reorder` | entries are all there but out of sequence |
| `gap` | a sequence number is missing |
| `tampered` | content does not hash to its hash, or no longer chains to its successor or head |
| `wrong_key` | a checkpoint is signed by a key not the node's, or retired before its seq |
| `bad_rotation` | a key rotation that cannot be followed (`ledger.key_rotation.schedule_of`) |
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

from ledger.chain import Checkpoint, Entry, entry_hasher
from ledger.encoding import GENESIS_HASH, decode_transfer, encode_body
from ledger.encoding_v2 import FORMAT_V2, ID_END
from ledger.errors import DecodeError
from ledger.export import Record, parse_record
from ledger.key_rotation import KeyRotation, KeySchedule, schedule_of


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
    BAD_ROTATION = "bad_rotation"
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


StoredEntry = tuple[int, bytes, bytes, bytes]  # seq, prev_hash, hash, body: as a store holds it
# A row and its transfer's id (None: the body does not decode).
_Row = tuple[int, bytes, bytes, bytes, int | None]


def verify_records(
    records: Sequence[Record],
    keys: Sequence[Ed25519PublicKey],
    *,
    node: str | None = None,
    trusted: TrustedHead | None = None,
) -> Verdict:
    """Verify one node's records in the order given."""
    node = node or (records[0].node if records else None)
    findings: list[Finding] = []
    for record in records:
        if record.node != node:
            findings.append(
                Finding(Problem.WRONG_NODE, record.seq, f"record of node {record.node!r}")
            )
            break
    rows: list[_Row] = [
        (r.seq, r.prev_hash, r.hash, encode_body(r.transfer, r.version), r.transfer.id)
        for r in records
        if isinstance(r, Entry)
    ]
    checkpoints = [r for r in records if isinstance(r, Checkpoint)]
    rotations = [r for r in records if isinstance(r, KeyRotation)]
    return _verdict(node or "", rows, checkpoints, (keys, rotations), trusted, findings)


def verify_stored(
    node: str,
    entries: Iterable[StoredEntry],
    checkpoints: Sequence[Checkpoint],
    keys: Sequence[Ed25519PublicKey],
    *,
    rotations: Sequence[KeyRotation] = (),
    trusted: TrustedHead | None = None,
) -> Verdict:
    """Verify one node's chain from the bytes a store holds (entries in the order given, bodies
    of either format), judged as `verify_records` judges records, without building anything:
    each body is hashed as stored and only its transfer id is read (the replay check), in
    place for a version-2 body; a version-1 body is decoded for it. A body that does not carry
    an id is `malformed`. What else a body says is its readers' to decode (the edge's boot
    replay, the cloud's ingest: both refuse a body that is not a transfer)."""
    findings: list[Finding] = []
    rows: list[_Row] = []
    append = rows.append
    for seq, prev_hash, digest, body in entries:
        if len(body) >= ID_END and body[0] == FORMAT_V2:
            ident: int | None = int.from_bytes(body[1:ID_END], "big")
        else:
            try:
                ident = decode_transfer(body).id
            except DecodeError as exc:
                findings.append(Finding(Problem.MALFORMED, seq, f"body is not a transfer: {exc}"))
                ident = None
        append((seq, prev_hash, digest, body, ident))
    return _verdict(node, rows, checkpoints, (keys, rotations), trusted, findings)


def _verdict(  # noqa: PLR0917 (the shared core of the two entry points)
    node: str,
    rows: list[_Row],
    checkpoints: list[Checkpoint] | Sequence[Checkpoint],
    keys: tuple[Sequence[Ed25519PublicKey], Sequence[KeyRotation]],
    trusted: TrustedHead | None,
    findings: list[Finding],
) -> Verdict:
    ordered = _check_sequence(rows, findings)
    hashes = _check_links(node, ordered, trusted, findings)
    last_seq = ordered[-1][0] if ordered else None
    schedule = _schedule(node, keys, hashes, last_seq, trusted, findings)
    signed_through = _check_checkpoints(checkpoints, schedule, hashes, last_seq, findings)
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
        node=node or None,
        entries=len(ordered),
        first_seq=ordered[0][0] if ordered else None,
        last_seq=last_seq,
        head=ordered[-1][2] if ordered else None,
        checkpoints=len(checkpoints),
        signed_through=signed_through,
        findings=findings,
    )


def _check_sequence(rows: list[_Row], findings: list[Finding]) -> list[_Row]:
    """Find replays, forks and reordering; return one row per seq, in seq order."""
    file_order = [row[0] for row in rows]
    if file_order and file_order == list(range(file_order[0], file_order[0] + len(rows))):
        return rows  # the usual case, settled at C speed: every seq once, in order
    by_seq: dict[int, _Row] = {}
    for row in rows:
        seq = row[0]
        first = by_seq.get(seq)
        if first is None:
            by_seq[seq] = row
        elif first == row:
            findings.append(Finding(Problem.REPLAY, seq, "entry repeated"))
        else:
            findings.append(Finding(Problem.FORK, seq, "two different entries for one seq"))
    repeated = _seen_twice(file_order)
    for before, after in pairwise(file_order):
        if after < before and not {before, after} & repeated:
            findings.append(Finding(Problem.REORDER, after, f"seq {after} comes after {before}"))
            break
    return [by_seq[s] for s in sorted(by_seq)]


def _check_links(
    node: str, ordered: list[_Row], trusted: TrustedHead | None, findings: list[Finding]
) -> dict[int, bytes]:
    """Check gaps, each entry's hash and its link to the previous one; return seq -> hash."""
    if not ordered:
        return {}
    add = findings.append
    # A chain may start after seq 1 (a store pruned to an anchor) at or before the trusted
    # head's successor: the trusted head then vouches for what came before it.
    expected = min(trusted.seq + 1, ordered[0][0]) if trusted else 1
    hashes: dict[int, bytes] = {}
    seen_ids: dict[int, int] = {}
    previous: _Row | None = None
    digest_of = entry_hasher(node)
    for row in ordered:
        seq, prev_hash, digest, body, ident = row
        if seq != expected:
            missing = f"{expected}..{seq - 1}" if seq - 1 > expected else expected
            add(Finding(Problem.GAP, expected, f"seq {missing} missing"))
            previous = None
        expected = seq + 1
        if digest_of(seq, prev_hash, body) != digest:
            add(Finding(Problem.TAMPERED, seq, "content does not match its hash"))
        if previous is not None and prev_hash != previous[2]:
            add(Finding(Problem.TAMPERED, previous[0], f"seq {seq} chained to another"))
        elif seq == 1 and prev_hash != GENESIS_HASH:
            add(Finding(Problem.TAMPERED, 1, "first entry does not start from the genesis hash"))
        elif previous is None and trusted and seq == trusted.seq + 1 and prev_hash != trusted.hash:
            add(Finding(Problem.FORK, seq, "does not extend the trusted head"))
        hashes[seq] = digest
        if ident is not None:
            other = seen_ids.setdefault(ident, seq)
            if other != seq:
                add(Finding(Problem.REPLAY, seq, f"transfer {ident:032x} already at seq {other}"))
        previous = row
    return hashes


def _seen_twice(seqs: list[int]) -> set[int]:
    seen: set[int] = set()
    twice: set[int] = set()
    for seq in seqs:
        (twice if seq in seen else seen).add(seq)
    return twice


def _schedule(  # noqa: PLR0917 (a private step of _verdict)
    node: str,
    keys: tuple[Sequence[Ed25519PublicKey], Sequence[KeyRotation]],
    hashes: Mapping[int, bytes],
    last_seq: int | None,
    trusted: TrustedHead | None,
    findings: list[Finding],
) -> KeySchedule:
    """The node's key schedule; a rotation that cannot be followed, or that lies beyond the
    chain's last entry, is a finding."""
    public_keys, rotations = keys

    def head_at(seq: int) -> bytes | None:
        if trusted is not None and seq == trusted.seq and seq not in hashes:
            return trusted.hash
        return hashes.get(seq)

    schedule, refused = schedule_of(node, rotations, public_keys, head_at)
    for rotation, why in refused:
        findings.append(Finding(Problem.BAD_ROTATION, rotation.seq, why.detail))
    for rotation in rotations:
        if rotation.seq > (last_seq or 0):
            detail = "a key rotation lies beyond the last entry"
            findings.append(Finding(Problem.TRUNCATED, rotation.seq, detail))
    return schedule


def _check_checkpoints(
    checkpoints: Sequence[Checkpoint],
    schedule: KeySchedule,
    hashes: Mapping[int, bytes],
    last_seq: int | None,
    findings: list[Finding],
) -> int:
    """Check each checkpoint; return the highest seq a valid one vouches for."""
    add = findings.append
    signed_heads: dict[int, bytes] = {}
    signed_through = 0
    for cp in checkpoints:
        key = schedule.key_for(cp.key_id, cp.seq)
        if key is None:
            add(Finding(Problem.WRONG_KEY, cp.seq, schedule.why_not(cp.key_id, cp.seq)))
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
