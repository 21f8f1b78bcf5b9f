"""`voltbook-edge ledger …`: export and verify a node's chain.

voltbook-edge ledger verify --chain chain.jsonl --key node.pub   an exported chain
voltbook-edge ledger verify --config site.toml                   a site's store, invariants too
voltbook-edge ledger export --config site.toml > chain.jsonl     works while `run` is up
voltbook-edge ledger cloud-oplog --config site.toml > head.jsonl the cloud's signed log head
"""

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
        help="export and verify the signed, hash-chained ledger",
        description="Work with a node's ledger chain.",
    )
    sub = ledger.add_subparsers(title="ledger commands", metavar="ACTION", required=True)
    verify = sub.add_parser(
        "verify",
        help="check a chain export, or a site's whole ledger: hashes, order, signatures",
        description=(
            "Check every entry's hash and link, the sequence (gaps, reordering, replays, forks) "
            "and every checkpoint signature. Prints a one-line JSON summary and exits 0 when the "
            "chain is sound; prints the first problem and exits 1 when it is not. With --config, "
            "checks the site's store instead (integrity, every row, signatures) and the ledger "
            "invariants over it, read-only (works while the runtime runs)."
        ),
    )
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--chain", type=Path, help="JSON-lines export to check")
    source.add_argument("--config", type=Path, help="a site.toml: check that site's store")
    verify.add_argument(
        "--key",
        action="append",
        help="the node's public key: a PEM file or 64 hex digits (repeat during a key rotation;"
        " with --config, default: node.pub beside the site's node key)",
    )
    verify.add_argument("--node", help="expected node id (default: the first record's)")
    verify.add_argument(
        "--trusted-head",
        metavar="SEQ:HASH",
        help="last head you trust (e.g. the cloud acknowledged); a change before it is a fork",
    )
    verify.set_defaults(func=run_verify)
    export = sub.add_parser(
        "export",
        help="print a site's chain as JSON lines (entries and signed checkpoints)",
        description=(
            "Print every ledger entry (seq, id, code, accounts, amount, unit, refs such as the "
            "period and the meter registers, hashes) and every signed checkpoint of the site's "
            "store, one JSON object per line, in chain order. Opens the store read-only, so it "
            "works while `voltbook-edge run` is up."
        ),
    )
    export.add_argument("--config", required=True, type=Path, help="the site.toml")
    export.set_defaults(func=run_export)
    oplog = sub.add_parser(
        "cloud-oplog",
        help="print the highest signed operator-log head the cloud's acks carried",
        description=(
            "Print, as one JSON line, the cloud's operator-log head signed with its key that "
            "this concentrator kept (the highest its acks carried). Give the file to "
            "`voltbook-cloud oplog verify --heads FILE`: a cloud log cut or rewritten behind "
            "it is named. Exit 1 when no ack carried one yet."
        ),
    )
    oplog.add_argument("--config", required=True, type=Path, help="the site.toml")
    oplog.set_defaults(func=run_cloud_oplog)


def _read_key(value: str) -> bytes:
    path = Path(value)
    return path.read_bytes() if path.exists() else value.encode()


def _trusted_head(value: str | None) -> TrustedHead | None:
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    return TrustedHead(int(seq), bytes.fromhex(digest))


def run_verify(args: argparse.Namespace) -> int:
    if args.config is not None:
        return run_verify_site(args)
    if not args.key:
        print("error: --chain needs --key (the node's public key)", file=sys.stderr)
        return 2
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


def run_verify_site(args: argparse.Namespace) -> int:
    from edge.runtime.audit import audit_store
    from edge.runtime.boot import verifying_key
    from edge.site import SiteConfigError, load_site
    from edge.site.node_pub import VerifyingKey
    from edge.store import StoreError

    try:
        site = load_site(args.config)
        if args.key:
            verifying = VerifyingKey(load_public_key(_read_key(args.key[0])))
        else:
            verifying = verifying_key(site)
        audit = audit_store(site, verifying.key)
    except (SiteConfigError, DecodeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not audit.ok:
        print(f"ledger of {site.settings.node} is NOT sound: {verifying.explain(audit.problem)}",
              file=sys.stderr)  # fmt: skip
        print(json.dumps({**audit.summary, "problem": audit.problem}, separators=(",", ":")))
        return 1
    unsigned = audit.summary.get("not_checkpointed", 0)
    if unsigned:
        print(
            f"note: {unsigned} entries not yet checkpointed (the runtime signs them with its next "
            "commit)",
            file=sys.stderr,
        )
    print(json.dumps(audit.summary, separators=(",", ":")))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from edge.runtime.boot import node_public_key
    from edge.site import SiteConfigError, load_site
    from edge.store import Store, StoreError

    try:
        site = load_site(args.config)
        key = node_public_key(site)
        with Store.open_readonly(site.settings.store_path, public_key=key) as store:
            out = sys.stdout
            for line in store.export_lines():
                out.write(line + "\n")
            out.flush()
    except SiteConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0  # `| head`: the reader has what it wanted
    return 0


def run_cloud_oplog(args: argparse.Namespace) -> int:
    from edge.runtime.boot import node_public_key
    from edge.site import SiteConfigError, load_site
    from edge.store import Store, StoreError
    from edge.sync.session import OPLOG_HEAD_STATE

    try:
        site = load_site(args.config)
        key = node_public_key(site)
        with Store.open_readonly(site.settings.store_path, public_key=key) as store:
            head = store.get_state(OPLOG_HEAD_STATE)
    except SiteConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if head is None:
        print("no ack has carried the cloud's operator-log head yet", file=sys.stderr)
        return 1
    print(json.dumps(head, sort_keys=True, separators=(",", ":")))
    return 0
