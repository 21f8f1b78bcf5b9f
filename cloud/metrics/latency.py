"""The API's latency, as a Prometheus histogram labelled by route template.

`RequestTimer` is a plain ASGI middleware (no `BaseHTTPMiddleware`: no extra task per request).
It times each HTTP request from its arrival to the end of the answer and labels it with the
route's template (`/accounts/{account}`, never `/accounts/A0001`) as the router matched it
(`scope["route"]`), so the number of series is bounded by the routes, whatever paths callers
send: an unmatched path is `unmatched`, an unusual method `other`.

    voltbook_api_request_duration_seconds{method, route}   histogram (seconds)
    voltbook_api_requests_total{method, route, status}     counter (status: the HTTP code)

An exception escaping the app (a bug; `cloud.app` answers it 500) is counted as 500. With
`[api] workers` > 1 each process keeps its own histogram and a scrape reaches one of them.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# From a cached read (~1 ms) to a report (seconds); Prometheus' default tops out at 10 s.
BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiLatency:
    """The histogram and the counter, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "voltbook_api_request_duration_seconds",
            "time from a request's arrival to the end of its answer, by route template",
            ["method", "route"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "voltbook_api_requests",
            "requests answered, by route template and HTTP status",
            ["method", "route", "status"],
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.duration.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()


def route_template(scope: Scope) -> str:
    """The matched route's path template, or `unmatched`."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestTimer:
    """ASGI middleware feeding `latency` for every HTTP request."""

    def __init__(self, app: ASGIApp, latency: ApiLatency) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.latency.observe(
                scope.get("method", ""), route_template(scope), status, time.perf_counter() - began
            )
