"""Shared test policy.

Tests that need PostgreSQL or Mosquitto call `service_missing(...)` when the service cannot be
found or started: under `REQUIRE_REAL_SERVICES=1` (set by CI) that is a failure, otherwise a skip.

Hypothesis: `HYPOTHESIS_PROFILE=ci` (set by `.ci/run`) derandomizes every property test, so a
landing is judged on the same examples each time; local runs keep drawing new ones, and print
the `@reproduce_failure` blob of anything they find.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("default", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def service_missing(name: str, why: str) -> None:
    message = f"{name} is not available: {why}"
    if os.environ.get("REQUIRE_REAL_SERVICES") == "1":
        pytest.fail(message + " (REQUIRE_REAL_SERVICES=1: real services are mandatory)")
    pytest.skip(message)
