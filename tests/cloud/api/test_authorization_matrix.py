"""Every route of the app × every role (and no token): who may call it.

The expectations are written out here, from the role table (`cloud.people.auth`'s docstring), not
read from the code under test. The routes are enumerated from `app.routes`, so a route added
without a row in `EXPECTED` fails `test_every_route_has_an_expectation`.

A forbidden role must get 403 (no token: 401) and change nothing in the database (every table
compared before and after); an allowed role must get anything but 401/403 — a 404 or a 422 for
a minimal body still proves the role check let it through.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, text

from cloud.people.auth import Role
from tests.cloud.api.conftest import (
    MERCHANT_ACCOUNT,
    NODE,
    PASSWORD,
    bearer,
    issue_token,
)

PUBLIC = "public"  # no token needed (every caller, anonymous included, is allowed)
SIGNED = "signed"  # no token: a provider's signature decides, the same for every caller
EVERYONE = frozenset(Role)
STAFF = frozenset({Role.ADMIN, Role.OPERATOR, Role.FINANCE, Role.AUDITOR})
READ_ALL = STAFF | {Role.INSTALLER}
MONEY_DESK = frozenset({Role.ADMIN, Role.OPERATOR, Role.FINANCE})
OPERATIONS = frozenset({Role.ADMIN, Role.OPERATOR})
FIELD = frozenset({Role.ADMIN, Role.OPERATOR, Role.INSTALLER})
PAYOUT = frozenset({Role.ADMIN, Role.FINANCE})
ADMIN = frozenset({Role.ADMIN})

SELF = frozenset({Role.MERCHANT})  # a merchant, for its own account
# A page of `cloud.web`: it authenticates its session cookie, never a bearer token, so every
# role's token must be answered exactly as no token is, and change nothing (who may see which
# page with a session is tested in tests/web/).
PAGE = "page"

# (method, path) → the roles allowed, or PUBLIC.
EXPECTED: dict[tuple[str, str], frozenset[Role] | str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/static/{name:path}"): PAGE,
    ("GET", "/m"): PAGE,
    ("GET", "/m/"): PAGE,
    ("GET", "/m/login"): PAGE,
    ("POST", "/m/login"): PAGE,
    ("POST", "/m/logout"): PAGE,
    ("POST", "/m/topup"): PAGE,
    ("GET", "/field"): PAGE,
    ("GET", "/field/"): PAGE,
    ("GET", "/field/login"): PAGE,
    ("POST", "/field/login"): PAGE,
    ("POST", "/field/logout"): PAGE,
    ("GET", "/field/faults/{fault_id}"): PAGE,
    ("POST", "/field/faults"): PAGE,
    ("POST", "/field/faults/{fault_id}/status"): PAGE,
    ("POST", "/field/faults/{fault_id}/comments"): PAGE,
    ("POST", "/field/faults/{fault_id}/assignee"): PAGE,
    ("POST", "/field/faults/{fault_id}/photos"): PAGE,
    ("GET", "/field/faults/{fault_id}/photos/{photo_id}"): PAGE,
    ("POST", "/field/readings/{reading_key}/photos"): PAGE,
    ("GET", "/field/readings/photos/{photo_id}"): PAGE,
    ("POST", "/field/readings"): PAGE,
    ("POST", "/field/recharges"): PAGE,  # the money desk's roles (tests/web/test_field_desk_pages)
    ("POST", "/field/swaps"): PAGE,
    ("GET", "/field/receipts/{number}"): PAGE,
    ("GET", "/field/sw.js"): PAGE,
    ("GET", "/field/manifest.webmanifest"): PAGE,
    ("GET", "/m/orders/{out_trade_no}"): PAGE,
    ("GET", "/m/paid"): PAGE,
    ("GET", "/m/receipts/{number}.pdf"): PAGE,
    ("GET", "/m/statement.pdf"): PAGE,
    ("GET", "/m/wechat/login"): PAGE,
    ("GET", "/m/wechat/back"): PAGE,
    ("GET", "/console"): PAGE,
    ("GET", "/console/"): PAGE,
    ("GET", "/console/login"): PAGE,
    ("POST", "/console/login"): PAGE,
    ("POST", "/console/logout"): PAGE,
    ("GET", "/console/monitoring"): PAGE,
    ("GET", "/console/meters/{address}"): PAGE,
    ("GET", "/console/reports"): PAGE,
    ("GET", "/console/reports/{name}"): PAGE,
    ("GET", "/console/reports/{name}/export"): PAGE,
    ("POST", "/console/reports/{name}/templates"): PAGE,
    ("GET", "/console/subsidies"): PAGE,
    ("POST", "/console/batches/confirm"): PAGE,
    ("POST", "/console/batches"): PAGE,
    ("GET", "/console/batches/{batch}"): PAGE,
    ("GET", "/console/batches/{batch}/panel"): PAGE,
    ("POST", "/console/batches/{batch}/retry"): PAGE,
    ("GET", "/console/batches/keep-power"): PAGE,
    ("GET", "/console/batches/keep-power/panel"): PAGE,
    ("POST", "/console/batches/keep-power/push"): PAGE,
    ("GET", "/console/dashboard"): PAGE,
    ("GET", "/console/people"): PAGE,
    ("POST", "/console/people"): PAGE,
    ("GET", "/console/people/{name}"): PAGE,
    ("POST", "/console/people/{name}"): PAGE,
    ("POST", "/console/people/{name}/password"): PAGE,
    ("POST", "/console/people/{name}/unlock"): PAGE,
    ("GET", "/console/oplog"): PAGE,
    ("GET", "/console/events"): PAGE,
    ("GET", "/console/alarms"): PAGE,
    ("POST", "/console/alarms/{alarm_id}/acknowledge"): PAGE,
    ("GET", "/console/alarms/settings"): PAGE,
    ("POST", "/console/alarms/settings"): PAGE,
    ("GET", "/console/registry"): PAGE,
    ("GET", "/console/registry/nodes"): PAGE,
    ("POST", "/console/registry/nodes/push"): PAGE,
    ("POST", "/console/registry/nodes/{node}/push"): PAGE,
    ("POST", "/console/registry/nodes/register"): PAGE,
    ("POST", "/console/registry/nodes/preassign"): PAGE,
    ("GET", "/console/registry/{kind}"): PAGE,
    ("GET", "/console/registry/{kind}/new"): PAGE,
    ("POST", "/console/registry/{kind}/new"): PAGE,
    ("GET", "/console/registry/{kind}/{key}"): PAGE,
    ("POST", "/console/registry/{kind}/{key}"): PAGE,
    ("GET", "/console/registry/{kind}/{key}/delete"): PAGE,
    ("POST", "/console/registry/{kind}/{key}/delete"): PAGE,
    ("GET", "/console/accounts/{account}"): PAGE,
    ("POST", "/console/accounts/{account}/recharge"): PAGE,
    ("POST", "/console/accounts/{account}/correction"): PAGE,
    ("POST", "/console/accounts/{account}/refund"): PAGE,
    ("POST", "/console/accounts/{account}/move"): PAGE,
    ("GET", "/console/desk"): PAGE,
    ("POST", "/console/corrections/{ref}/{verb}"): PAGE,
    ("POST", "/console/refunds/{ref}/{verb}"): PAGE,
    ("GET", "/console/receipts/{number}"): PAGE,
    ("GET", "/console/receipts/{number}/pdf"): PAGE,
    ("GET", "/console/meter-swaps"): PAGE,
    ("POST", "/console/meter-swaps"): PAGE,
    ("POST", "/console/meter-swaps/ir-import"): PAGE,
    ("POST", "/console/meter-swaps/{ref}/{verb}"): PAGE,
    ("GET", "/console/takeovers"): PAGE,
    ("POST", "/console/takeovers"): PAGE,
    ("POST", "/console/takeovers/{old}/{verb}"): PAGE,
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/provision"): PUBLIC,  # a claim token is its permission (cloud.api.claims)
    ("POST", "/claims"): FIELD,
    ("GET", "/claims"): FIELD,
    ("POST", "/claims/{claim}/revoke"): FIELD,
    ("POST", "/claims/nodes"): OPERATIONS,  # pre-assign a node id to a site
    ("POST", "/auth/logout"): EVERYONE,
    ("GET", "/auth/me"): EVERYONE,
    ("POST", "/auth/password"): EVERYONE,
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("GET", "/users/{name}"): ADMIN,
    ("PATCH", "/users/{name}"): ADMIN,
    ("POST", "/users/{name}/password"): ADMIN,
    ("POST", "/users/{name}/unlock"): ADMIN,
    ("GET", "/operator-log"): STAFF,
    ("GET", "/operator-log/verify"): STAFF,
    ("GET", "/concentrators"): READ_ALL,
    ("POST", "/updates"): OPERATIONS,
    ("GET", "/updates"): READ_ALL,
    ("GET", "/updates/{rollout_id}"): READ_ALL,
    ("GET", "/updates/bundles/{sha256}"): PUBLIC,  # signed by the release key; boxes have no login
    ("POST", "/concentrators"): FIELD,
    ("GET", "/concentrators/{node}"): READ_ALL,
    ("POST", "/concentrators/{node}/clear-quarantine"): ADMIN,
    ("POST", "/concentrators/{node}/takeover"): OPERATIONS,
    ("GET", "/concentrators/{node}/takeover"): READ_ALL,
    ("POST", "/concentrators/{node}/takeover/recover"): OPERATIONS,
    ("POST", "/concentrators/{node}/takeover/approve"): ADMIN,
    ("POST", "/concentrators/{node}/takeover/reject"): ADMIN,
    ("POST", "/concentrators/{node}/takeover/reissue"): OPERATIONS,
    ("POST", "/concentrators/{node}/commissioning"): FIELD,
    ("GET", "/concentrators/{node}/commissioning/latest"): READ_ALL,
    ("GET", "/accounts"): STAFF | SELF,
    ("GET", "/accounts/{account}"): STAFF | SELF,
    ("GET", "/meters"): READ_ALL | SELF,
    ("GET", "/readings"): READ_ALL | SELF,
    ("GET", "/ledger"): STAFF | SELF,
    ("GET", "/recharges"): STAFF | SELF,
    ("POST", "/recharges"): MONEY_DESK,
    ("GET", "/recharges/{payment}"): STAFF | SELF,
    ("POST", "/relays"): OPERATIONS,
    ("GET", "/commands"): READ_ALL,
    ("GET", "/commands/{command_id}"): READ_ALL,
    ("GET", "/alarms"): READ_ALL,
    ("GET", "/alarms/counts"): READ_ALL,
    ("GET", "/alarms/read-success"): READ_ALL,
    ("POST", "/alarms/{alarm_id}/acknowledge"): FIELD,
    ("GET", "/faults"): READ_ALL,
    ("POST", "/faults"): FIELD,
    ("GET", "/faults/{fault_id}"): READ_ALL,
    ("POST", "/faults/{fault_id}/status"): FIELD,
    ("POST", "/faults/{fault_id}/assignee"): OPERATIONS,
    ("POST", "/faults/{fault_id}/photos"): FIELD,
    ("GET", "/faults/{fault_id}/photos/{photo_id}"): READ_ALL,
    ("GET", "/notices"): STAFF | SELF,
    ("GET", "/notices/{notice_id}"): STAFF | SELF,
    ("POST", "/notices/power-off"): OPERATIONS,
    # -- operations: correct, refund (operator); pay out or cancel (finance); swap (field) --
    ("GET", "/corrections"): STAFF,
    ("POST", "/corrections"): OPERATIONS,
    ("GET", "/corrections/{correction}"): STAFF,
    ("POST", "/corrections/{correction}/approve"): PAYOUT,
    ("POST", "/corrections/{correction}/reject"): PAYOUT,
    ("GET", "/refunds"): STAFF,
    ("POST", "/refunds"): OPERATIONS,
    ("GET", "/refunds/{refund}"): STAFF,
    ("POST", "/refunds/{refund}/pay"): PAYOUT,
    ("POST", "/refunds/{refund}/cancel"): MONEY_DESK,
    ("GET", "/meter-swaps"): READ_ALL,
    ("POST", "/meter-swaps"): FIELD,
    ("GET", "/meter-swaps/{swap}"): READ_ALL,
    ("POST", "/meter-swaps/{swap}/approve"): OPERATIONS,
    ("POST", "/meter-swaps/{swap}/reject"): OPERATIONS,
    ("POST", "/meter-swaps/ir-import"): FIELD,
    ("GET", "/meter-swaps/ir-readings"): READ_ALL,
    ("GET", "/moves"): STAFF,
    ("POST", "/moves"): OPERATIONS,
    ("GET", "/moves/{move}"): STAFF,
    ("GET", "/receipts"): STAFF,
    ("GET", "/receipts/{number}"): STAFF,
    ("POST", "/receipts/recharges/{payment}"): MONEY_DESK,
    # -- a concentrator's configuration is field work --
    ("GET", "/concentrators/{node}/config"): READ_ALL,
    ("POST", "/concentrators/{node}/config"): FIELD,
    ("POST", "/registry/push"): FIELD,
    # -- reports: staff; templates are the admin's; a merchant's own statement --
    ("GET", "/reports/consumption"): STAFF,
    ("GET", "/reports/deposits"): STAFF,
    ("GET", "/reports/meters"): STAFF,
    ("GET", "/reports/refunds"): STAFF,
    ("GET", "/reports/subsidies"): STAFF,
    ("GET", "/report-templates"): STAFF,
    ("GET", "/report-templates/{name}"): STAFF,
    ("PUT", "/report-templates/{name}"): ADMIN,
    ("DELETE", "/report-templates/{name}"): ADMIN,
    ("GET", "/statements/{account}"): STAFF | SELF,
    # -- online payments: a merchant pays into its own account, the desk shows a QR code --
    ("POST", "/payments/orders"): MONEY_DESK | SELF,
    ("GET", "/payments/orders"): STAFF | SELF,
    ("GET", "/payments/orders/{out_trade_no}"): STAFF | SELF,
    ("POST", "/payments/orders/{out_trade_no}/close"): MONEY_DESK | SELF,
    ("POST", "/payments/wechat/notify"): SIGNED,
    ("POST", "/payments/alipay/notify"): SIGNED,
}
# The registry: everyone but merchants reads it; operations keep it, installers map meters.
for _kind, _writers in {
    "sites": OPERATIONS, "buildings": OPERATIONS, "floors": OPERATIONS, "shops": OPERATIONS,
    "merchants": OPERATIONS, "account-types": OPERATIONS, "tariffs": OPERATIONS,
    "accounts": OPERATIONS, "meters": FIELD, "subsidy-policies": OPERATIONS,
    "alarm-rules": OPERATIONS, "arrears-policies": OPERATIONS,
}.items():  # fmt: skip
    EXPECTED |= {
        ("GET", f"/registry/{_kind}"): READ_ALL,
        ("GET", f"/registry/{_kind}/{{key}}"): READ_ALL,
        ("POST", f"/registry/{_kind}"): _writers,
        ("PATCH", f"/registry/{_kind}/{{key}}"): _writers,
        ("DELETE", f"/registry/{_kind}/{{key}}"): _writers,
    }

# Refunds to the original payment and the daily reconciliation (`cloud/api/payment_refunds.py`,
# `cloud/api/reconciliations.py`): WeChat Pay's refund notices are signed, not logged in;
# only finance signs a day off.
EXPECTED |= {
    ("POST", "/payments/wechat/refund-notify"): PUBLIC,
    ("GET", "/payments/refunds/{out_refund_no}"): STAFF,
    ("GET", "/payments/reconciliations"): STAFF,
    ("GET", "/payments/reconciliations/{day}"): STAFF,
    ("POST", "/payments/reconciliations/{day}/sign-off"): frozenset({Role.FINANCE}),
}

# What to put in a path: the merchant's own account (isolation is tested on its own), a user
# no request here logs in as, ids that may not exist (404 is an allowed answer).
PATH_VALUES = {
    "node": NODE,
    "account": MERCHANT_ACCOUNT,
    "name": "installer-1",
    "payment": "P-none",
    "command_id": "0" * 32,
    "out_trade_no": "VB-none",
    "day": "2026-11-23",
    "out_refund_no": "RF-none",
    "rollout_id": "1",
    "sha256": "ab" * 32,
    "fault_id": "1",
}
NEW_KEY = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/auth/login"): {"user": "operator-1", "password": PASSWORD},
    ("POST", "/auth/password"): {"old": PASSWORD, "new": "a new and long password"},
    ("POST", "/users"): {"name": "new-user", "role": "auditor", "password": PASSWORD},
    ("PATCH", "/users/{name}"): {"display_name": "Installer One"},
    ("POST", "/users/{name}/password"): {"password": "another long password"},
    ("POST", "/concentrators"): {"node": "edge-0009", "public_key": NEW_KEY},
    ("POST", "/recharges"): {"account": MERCHANT_ACCOUNT, "fen": 100, "method": "cash"},
    ("POST", "/payments/orders"): {
        "account": MERCHANT_ACCOUNT,
        "fen": 100,
        "provider": "wechat",
        "channel": "native",
    },
    ("POST", "/relays"): {"meters": ["000000000001"], "action": "trip"},
    ("POST", "/updates"): {
        "version": 7,
        "url": "https://cloud.example/b.tar",
        "sha256": "ab" * 32,
        "size": 1,
        "nodes": [NODE],
    },
    ("POST", "/alarms/{alarm_id}/acknowledge"): {"note": "seen on site"},
    ("POST", "/faults"): {"kind": "other", "site": "Plaza"},
    ("POST", "/faults/{fault_id}/status"): {"to": "closed"},
    ("POST", "/faults/{fault_id}/assignee"): {"user": "installer-1"},
    ("POST", "/notices/power-off"): {
        "reason": "maintenance",
        "shops": ["S101"],
        "from": "2026-12-08T09:00:00+08:00",
        "to": "2026-12-08T12:00:00+08:00",
    },
    ("POST", "/payments/reconciliations/{day}/sign-off"): {"note": "checked"},
}
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def app_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, looking into included routers too."""

    def walk(routes: Any) -> Iterator[Any]:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):  # FastAPI's included router
                yield from route.effective_route_contexts()
            else:
                yield route

    for route in walk(app.routes):
        for method in sorted((getattr(route, "methods", None) or set()) & METHODS):
            yield method, route.path


@functools.cache
def table_names(engine: Engine) -> tuple[str, ...]:
    return tuple(sorted(inspect(engine).get_table_names()))


def fingerprint(engine: Engine) -> str:
    """A digest of every row of every table."""
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for name in table_names(engine):
            rows = sorted(
                repr(tuple(r)) for r in connection.execute(text(f'SELECT * FROM "{name}"'))
            )
            digest.update(f"{name}:{len(rows)}:{rows}".encode())
    return digest.hexdigest()


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)
    body = BODIES.get((method, path), {}) if method in {"POST", "PUT", "PATCH"} else None
    return client.request(method, url, json=body, headers=headers)


def test_every_route_has_an_expectation(client: TestClient) -> None:
    found = set(app_routes(client.app))  # type: ignore[arg-type]
    assert found - EXPECTED.keys() == set(), "routes without a row in EXPECTED"
    assert EXPECTED.keys() - found == set(), "rows in EXPECTED for routes that do not exist"


def _judge(
    client: TestClient, engine: Engine, tokens: dict[Role, str], method: str, path: str
) -> list[str]:
    """What is wrong with one route's answers, role by role (empty: nothing)."""
    wrong = []
    allowed = EXPECTED[method, path]
    if allowed == SIGNED:  # a token neither helps nor hurts: every caller gets one answer
        answers = {
            call(client, method, path, headers).status_code
            for headers in ({"Authorization": ""}, *(bearer(t) for t in tokens.values()))
        }
        if len(answers) != 1 or 403 in answers:
            wrong.append(f"signed, but the answers depend on the caller: {sorted(answers)}")
        return wrong
    if allowed == PUBLIC:
        for headers in ({"Authorization": ""}, *(bearer(t) for t in tokens.values())):
            answer = call(client, method, path, headers)
            if answer.status_code in {401, 403}:
                wrong.append(f"public, but {answer.status_code}: {answer.text}")
        return wrong
    if allowed == PAGE:
        before = fingerprint(engine)
        anonymous = call(client, method, path, {"Authorization": ""})
        for role, token in tokens.items():
            answer = call(client, method, path, bearer(token))
            if (answer.status_code, answer.text) != (anonymous.status_code, anonymous.text):
                wrong.append(f"{role}'s token changed a page's answer: {answer.status_code}")
        if fingerprint(engine) != before:
            wrong.append("a page called without a session changed the database")
        return wrong
    assert isinstance(allowed, frozenset)
    refused = [(None, {"Authorization": ""})] + [
        (role, bearer(tokens[role])) for role in Role if role not in allowed
    ]
    before = fingerprint(engine)
    for role, headers in refused:  # each refusal compared with the state just before it
        answer = call(client, method, path, headers)
        expected = 401 if role is None else 403
        if answer.status_code != expected:
            wrong.append(f"{role}: {answer.status_code} instead of {expected}: {answer.text}")
        after = fingerprint(engine)
        if after != before:
            wrong.append(f"{role}: a refused request changed the database")
        before = after
    for role in sorted(allowed):  # after the refusals: an allowed request may change things
        answer = call(client, method, path, bearer(tokens[role]))
        if answer.status_code in {401, 403}:
            wrong.append(f"{role.value} is allowed, got {answer.status_code}: {answer.text}")
    return wrong


def renewed_tokens(engine: Engine) -> dict[Role, str]:
    """A fresh token for each role's user (an earlier route may have logged it out or reset
    its password, which ends its sessions)."""
    return {role: issue_token(engine, f"{role.value}-1") for role in Role}


@pytest.mark.timeout(600)  # every route × every caller, ~2 minutes on PostgreSQL under load
def test_who_may_call_what(client: TestClient, engine: Engine, tokens: dict[Role, str]) -> None:
    """Every route × anonymous and every role, in one client (one database per engine: the
    routes run in a fixed order, and an allowed call may leave rows for the next)."""
    failures = {
        f"{method} {path}": wrong
        for method, path in sorted(EXPECTED)
        if (wrong := _judge(client, engine, renewed_tokens(engine), method, path))
    }
    assert not failures, "\n".join(f"{route}: {wrong}" for route, wrong in failures.items())
