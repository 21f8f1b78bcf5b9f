"""`GET /metrics`: the Prometheus text format, behind a bearer token.

Served only when cloud.toml has `[metrics]` (`cloud.config.MetricsSettings`): then Prometheus
sends `Authorization: Bearer <token>` with the token of `[metrics] token_file` (its
`authorization: {credentials_file: …}` scrape setting). A missing or wrong token is 401 and
reveals nothing; without `[metrics]` the route does not exist (404), and the latency
middleware is not installed. The token is compared in constant time.

Each app has its own `CollectorRegistry` (never the library's global one), so several apps in
one process (the tests) do not share figures.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.engine import Engine

from cloud.db.engine import session_factory
from cloud.metrics.figures import DatabaseFigures
from cloud.metrics.latency import ApiLatency, RequestTimer

PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """What `create_app` needs to serve `/metrics`: the token and the drill's status file."""

    token: str
    restore_drill: Path | None = None

    def __repr__(self) -> str:  # never the token, in a log or a traceback
        return f"MetricsEndpoint(token=<hidden>, restore_drill={self.restore_drill!r})"


def install(
    app: FastAPI,
    engine: Engine,
    now: Callable[[], dt.datetime],
    settings: MetricsEndpoint,
    silent_after: dt.timedelta,
) -> CollectorRegistry:
    """Add the latency middleware and the `/metrics` route to `app`; returns its registry.
    `silent_after`: a node heard from no longer ago counts on line (`cloud.db.presence`)."""
    registry = CollectorRegistry(auto_describe=False)
    sessions = session_factory(engine, read_only=True)
    registry.register(DatabaseFigures(sessions, now, settings.restore_drill, silent_after))
    app.add_middleware(RequestTimer, latency=ApiLatency(registry))
    expected = f"Bearer {settings.token}".encode()

    def metrics(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse(
                status_code=401,
                content={"error": "unauthorized", "detail": "no valid metrics token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(PATH, metrics, methods=["GET"], include_in_schema=False)
    return registry
