"""The signed commissioning report: what a concentrator found on its buses before handover.

`voltbook-edge commission` (`edge/commissioning/`) writes it and signs it with the node's
Ed25519 key; the cloud (`POST /concentrators/{node}/commissioning`) checks it with the key it
registered for that node and prints it as the PDF a building manager signs. Both sides read it
through this module, so they agree on every field.

The file is one JSON object `{"report": {...}, "key_id": "<16 hex>", "signature": "<128 hex>"}`.
The signature is Ed25519 over `TAG | canonical_json(report)` (`ledger.encoding.canonical_json`:
sorted keys, no whitespace, raw UTF-8). Only integers, strings, booleans and null: a read
success is `reads_ok` of `reads_tried`, never a float. The report (`check_report` holds every
field to this shape, so a cloud never stores or prints what it did not understand):

    format       "voltbook-commissioning/1"
    node, site   the node id and the site's name
    taken_at     ISO 8601 with its UTC offset
    version      the edge's package version
    reads        reads of `basic` per meter (3)
    relay_test   whether relays were tripped and closed
    buses        [{bus, protocol, discovery, complete, probes, reads_ok, reads_tried,
                   found, missing, extra, error}]
    meters       [{address, bus, protocol, status, shop, account, reads_ok, reads_tried,
                   register, unit, relay, relay_detail, error}]

A meter's `status` is `found` (declared and there), `missing` (declared, not there) or
`extra` (there, not declared); `register` is the last register read, in `unit` (`Wh` for
electricity, `L` for water), null when never read; `relay` is `ok`, `failed`, `no_relay`,
`not_tested` or `not_read`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import NodeKey, key_id
from ledger.encoding import canonical_json
from ledger.errors import DecodeError

TAG: Final = b"voltbook/commissioning/report/v1\x00"
FORMAT: Final = "voltbook-commissioning/1"
STATUSES: Final = ("found", "missing", "extra")
RELAY_RESULTS: Final = ("ok", "failed", "no_relay", "not_tested", "not_read")
UNITS: Final = ("Wh", "L")
DISCOVERY: Final = ("dlt645-search", "modbus-unit-scan", "cjt188-address", "declared-only")
MAX_METERS: Final = 4096
MAX_BUSES: Final = 64
MAX_TEXT: Final = 300

_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}:\d{2}|Z)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

BUS_FIELDS: Final = {
    "bus": "text",  # site.toml's bus names are free text
    "protocol": "name",
    "discovery": DISCOVERY,
    "complete": bool,
    "probes": int,
    "reads_ok": int,
    "reads_tried": int,
    "found": int,
    "missing": int,
    "extra": int,
    "error": "text",
}
METER_FIELDS: Final = {
    "address": "name",
    "bus": "text",
    "protocol": "name",
    "status": STATUSES,
    "shop": "text?",
    "account": "text?",
    "reads_ok": int,
    "reads_tried": int,
    "register": "int?",
    "unit": UNITS,
    "relay": RELAY_RESULTS,
    "relay_detail": "text",
    "error": "text",
}
REPORT_FIELDS: Final = {
    "format": (FORMAT,),
    "node": "text",
    "site": "text",
    "taken_at": "time",
    "version": "text",
    "reads": int,
    "relay_test": bool,
    "buses": "buses",
    "meters": "meters",
}


def _check_value(where: str, rule: object, value: object) -> None:
    if rule is bool:
        ok = isinstance(value, bool)
    elif rule is int or rule == "int?":
        ok = (value is None and rule == "int?") or (type(value) is int and 0 <= value <= 2**53 - 1)
    elif rule == "name":
        ok = isinstance(value, str) and _NAME.fullmatch(value) is not None
    elif rule in ("text", "text?"):
        ok = (value is None and rule == "text?") or (
            isinstance(value, str) and len(value) <= MAX_TEXT
        )
    elif rule == "time":
        ok = isinstance(value, str) and _TIME.fullmatch(value) is not None
    elif isinstance(rule, tuple):
        ok = isinstance(value, str) and value in rule
    else:  # pragma: no cover - the tables above name only these rules
        raise AssertionError(rule)
    if not ok:
        raise DecodeError(f"commissioning report: {where} is not a valid value ({value!r:.60})")


def _check_object(where: str, fields: Mapping[str, object], value: object) -> None:
    if not isinstance(value, dict):
        raise DecodeError(f"commissioning report: {where} is not an object")
    if set(value) != set(fields):
        wrong = sorted(set(value) ^ set(fields))
        raise DecodeError(f"commissioning report: {where} has wrong fields {wrong[:5]}")
    for name, rule in fields.items():
        if rule in ("buses", "meters"):
            continue
        _check_value(f"{where}.{name}", rule, value[name])


def check_report(report: object) -> dict[str, Any]:
    """`report` if it has exactly the shape above, else `DecodeError` saying what is wrong."""
    _check_object("report", REPORT_FIELDS, report)
    assert isinstance(report, dict)
    for part, fields, limit in (
        ("buses", BUS_FIELDS, MAX_BUSES),
        ("meters", METER_FIELDS, MAX_METERS),
    ):
        items = report[part]
        if not isinstance(items, list) or len(items) > limit:
            raise DecodeError(f"commissioning report: {part} is not a list of at most {limit}")
        for i, item in enumerate(items):
            _check_object(f"{part}[{i}]", fields, item)
            if item["reads_ok"] > item["reads_tried"]:
                raise DecodeError(f"commissioning report: {part}[{i}] reads_ok > reads_tried")
    return report


def sign_report(report: Mapping[str, Any], key: NodeKey) -> dict[str, Any]:
    """The signed file's object for `report` (checked first: we sign only what we can read)."""
    checked = check_report(dict(report))
    signature = key.private_key.sign(TAG + canonical_json(checked))
    return {"report": checked, "key_id": key.key_id, "signature": signature.hex()}


def verify_report(signed: object, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The report inside `signed` if `public_key` signed exactly it; else `DecodeError`."""
    if not isinstance(signed, dict) or set(signed) != {"report", "key_id", "signature"}:
        raise DecodeError("a signed commissioning report is {report, key_id, signature}")
    sig, kid = signed["signature"], signed["key_id"]
    if not (isinstance(sig, str) and _HEX128.fullmatch(sig)):
        raise DecodeError("the report's signature is not 128 lower-case hex digits")
    if not (isinstance(kid, str) and _HEX16.fullmatch(kid)):
        raise DecodeError("the report's key_id is not 16 lower-case hex digits")
    if kid != key_id(public_key):
        raise DecodeError(f"the report is signed by key {kid}, not this node's")
    report = check_report(signed["report"])
    try:
        public_key.verify(bytes.fromhex(sig), TAG + canonical_json(report))
    except InvalidSignature:
        raise DecodeError("the report's signature does not verify (altered or forged)") from None
    return report
