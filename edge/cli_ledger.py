"""`voltbook-edge ledger …`: verify (and, with the runtime, export) a node's chain."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.chain import load_public_key
from ledger.errors import DecodeError
from ledger.verify import TrustedHead, verify_lines


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = commands.add_parser(
        "ledger",
        help="verify the signed, hash-chained ledger",
        description="Work with a node's ledger chain.",
    )
    sub = ledger.add_subparsers(title="ledger commands", metavar="ACTION", required=True)
    verify = sub.add_parser(
        "verify",
        help="check a JSON-lines chain export: hashes, order, signatures",
        description=(
            "Check every entry's hash and link, the sequence (gaps, reordering, replays, forks) "
            "and every checkpoint signature. Prints a one-line JSON summary and exits 0 when the "
            "chain is sound; prints the first problem and exits 1 when it is not."
        ),
    )
    verify.add_argument("--chain", required=True, type=Path, help="JSON-lines export to check")
    verify.add_argument(
        "--key",
        required=True,
        action="append",
        help="the node's public key: a PEM file or 64 hex digits (repeat during a key rotation)",
    )
    verify.add_argument("--node", help="expected node id (default: the first record's)")
    verify.add_argument(
        "--trusted-head",
        metavar="SEQ:HASH",
        help="last head you trust (e.g. the cloud acknowledged); a change before it is a fork",
    )
    verify.set_defaults(func=run_verify)


def _read_key(value: str) -> bytes:
    path = Path(value)
    return path.read_bytes() if path.exists() else value.encode()


def _trusted_head(value: str | None) -> TrustedHead | None:
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    return TrustedHead(int(seq), bytes.fromhex(digest))


def run_verify(args: argparse.Namespace) -> int:
    try:
        keys = [load_public_key(_read_key(k)) for k in args.key]
        trusted = _trusted_head(args.trusted_head)
    except (DecodeError, ValueError, OSError) as exc:
        print(f"error: cannot use the key or trusted head given: {exc}", file=sys.stderr)
        return 2
    try:
        with args.chain.open(encoding="utf-8") as lines:
            verdict = verify_lines(lines, keys, node=args.node, trusted=trusted)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.chain}: {exc}", file=sys.stderr)
        return 2
    if verdict.ok:
        print(json.dumps(verdict.summary(), separators=(",", ":")))
        return 0
    print(f"chain {args.chain} is NOT sound: {verdict.findings[0]}", file=sys.stderr)
    print(json.dumps(verdict.summary(), separators=(",", ":")))
    return 1
