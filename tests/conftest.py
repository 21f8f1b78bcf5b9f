"""Shared test policy.

Tests that need PostgreSQL or Mosquitto call `service_missing(...)` when the service cannot be
found or started: under `REQUIRE_REAL_SERVICES=1` (set by CI) that is a failure, otherwise a skip.
"""

from __future__ import annotations

import os

import pytest


def service_missing(name: str, why: str) -> None:
    message = f"{name} is not available: {why}"
    if os.environ.get("REQUIRE_REAL_SERVICES") == "1":
        pytest.fail(message + " (REQUIRE_REAL_SERVICES=1: real services are mandatory)")
    pytest.skip(message)
