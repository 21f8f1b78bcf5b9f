"""Property test of the whole API against its own OpenAPI schema (schemathesis): for every
operation, requests generated from the schema — valid ones (positive mode) and ones that break
it (negative mode) — never get a server error, and every answer matches the schema documented
for its status (errors included: the one `ErrorOut` shape). Run as an admin (every route is
reachable) on SQLite and PostgreSQL: a value one backend accepts and the other chokes on (a
2^63 id, a NUL in a string) is a 5xx found here. Bounded for CI: `EXAMPLES` requests per
operation and mode; the count of requests is printed.

Each operation is its own Hypothesis run (`operation.as_strategy()`); the failures of all of
them are reported together, so one bad endpoint does not hide another.
"""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from cloud.people.auth import Role
from tests.cloud.api.conftest import bearer

EXAMPLES = 5  # per operation and mode: ~120 operations × 2 modes × 2 engines, bounded for CI
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.mark.slow
def test_no_request_gets_a_server_error(client: TestClient, tokens: dict[Role, str]) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    headers = bearer(tokens[Role.ADMIN])
    failures: dict[str, str] = {}
    requests = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            nonlocal requests
            requests += 1
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS)

        try:
            no_server_error()
        except Unsatisfiable:
            pass  # no request can break the schema here (a path of plain strings, no query)
        except Exception as exc:
            failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"[:2000]
    print(f"schemathesis: {len(operations)} operations, {requests} requests, "
          f"{len(failures)} failing")  # fmt: skip
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
