"""Shared test policy.

Tests that need PostgreSQL or Mosquitto call `service_missing(...)` when the service cannot be
found or started: under `REQUIRE_REAL_SERVICES=1` (set by CI) that is a failure, otherwise a skip.

Marks by fixture: a test that uses a fixture starting a service, or one that takes seconds to
build, is marked for it here (`MARKS_BY_FIXTURE`), so `make test-fast` (`-m "not slow and not
postgres and not mosquitto"`) leaves it out without a decorator on each test. `tests/e2e` marks
its own service fixtures the same way.

Hypothesis: `HYPOTHESIS_PROFILE=ci` (set by `.ci/run`) derandomizes every property test, so a
landing is judged on the same examples each time; local runs keep drawing new ones, and print
the `@reproduce_failure` blob of anything they find.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("default", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


TESTS = Path(__file__).parent

# (folder or module under tests/, fixture name) -> marks. Keyed by where the fixture is defined,
# because names repeat across folders.
MARKS_BY_FIXTURE: dict[tuple[str, str], tuple[str, ...]] = {
    ("edge/sync", "broker"): ("mosquitto",),  # a Mosquitto on a free port, per test
    ("edge/sync", "tls_broker"): ("mosquitto",),  # the same with TLS and the production ACLs
    ("edge/sync/test_uplink.py", "day"): ("slow",),  # 96 cycles of a 32-meter site, seconds
    # A migrated database, two concentrators registered and a month uploaded through the ingest,
    # per test: a fraction of a second each, but some 160 API tests make it the bulk of the run.
    ("cloud/api", "site"): ("slow",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        where = item.path.relative_to(TESTS).as_posix()
        fixtures = getattr(item, "fixturenames", ())
        for (scope, fixture), marks in MARKS_BY_FIXTURE.items():
            if fixture not in fixtures or not (where == scope or where.startswith(scope + "/")):
                continue
            for mark in marks:
                if item.get_closest_marker(mark) is None:
                    item.add_marker(getattr(pytest.mark, mark))


def service_missing(name: str, why: str) -> None:
    message = f"{name} is not available: {why}"
    if os.environ.get("REQUIRE_REAL_SERVICES") == "1":
        pytest.fail(message + " (REQUIRE_REAL_SERVICES=1: real services are mandatory)")
    pytest.skip(message)
