"""What every request passes before an endpoint sees it: a bounded body that is JSON we accept,
no query parameter the endpoint does not take, and the client's address as a trusted proxy
says it.

- **Body.** `BodyGuard` (ASGI middleware) reads at most `MAX_BODY` bytes: a `Content-Length`
  above it, or a stream that grows past it, is answered 413 before more is read. A JSON body
  goes through `ledger.untrusted.load_json` (nesting depth, integer digits, finite numbers —
  no `NaN` or `Infinity` —, unique keys, UTF-8 without lone surrogates, no NUL character) and
  is refused with 422 when it fails: such values would otherwise reach pydantic, the database
  or the JSON encoder of the answer, and fail there with a 500. The payment notifications
  (`RAW_BODY_PATHS`) are the exception: their endpoints verify the raw bytes themselves.
- **Query.** `no_unknown_query` (a dependency of the whole app) refuses a parameter the route
  does not declare (a misspelt filter would silently match everything).
- **Address.** `client_address`: the peer's address, or, when the peer is one of the configured
  trusted proxies (`[api] trusted_proxies`), the right-most `X-Forwarded-For` address that is
  not a trusted proxy. Nothing else is believed: the per-address login limit counts what this
  returns (uvicorn's own proxy-header handling is off, `cloud.server`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.errors import Invalid
from ledger.errors import DecodeError
from ledger.untrusted import load_json

MAX_BODY = 2 << 20  # the largest legitimate body: an IR handheld export (1 000 000 characters)
MAX_JSON_DEPTH = 16  # a registry body nests a few levels
# Bodies checked by their endpoint, not here: a payment provider's notification is verified
# over its raw bytes and every one, garbage included, is answered in the provider's own shape
# and recorded (`cloud.payments.notices`). Still bounded by `MAX_BODY`.
RAW_BODY_PATHS = frozenset(
    {"/payments/wechat/notify", "/payments/alipay/notify", "/payments/wechat/refund-notify"}
)

# Paths whose bodies are not JSON and may be larger: a photo of a fault ticket (the API's and the
# field app's) or of a reading's register (the field app's), up to `cloud.operations.photos.
# MAX_BYTES`, and the fields and part headers of the field app's form that carries one
# (`cloud.web.multipart`: a few hundred bytes).
FORM_OVERHEAD = 16 << 10
PHOTO_PATHS = r"/(?:field/)?faults/\d{1,19}/photos|/field/readings/[A-Za-z0-9\-]{8,64}/photos"
BODY_LIMITS = ((re.compile(PHOTO_PATHS), (5 << 20) + FORM_OVERHEAD),)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BodyGuard:
    """Bounds every request body and refuses JSON we do not accept (see the module docstring);
    `refuse(status, error, detail)` makes the answer in the app's one error shape."""

    def __init__(self, app: ASGIApp, refuse: Any, max_body: int = MAX_BODY) -> None:
        self.app, self.refuse, self.max_body = app, refuse, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        path = scope.get("path", "")
        limit = next((most for shape, most in BODY_LIMITS if shape.fullmatch(path)),
                     self.max_body)  # fmt: skip
        too_large = self.refuse(413, "too_large", f"the request body is larger than {limit} bytes")
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        raw = path in RAW_BODY_PATHS
        if body and not raw and _is_json(headers.get(b"content-type", b"")):
            try:
                load_json(body, max_bytes=self.max_body, max_depth=MAX_JSON_DEPTH,
                          allow_nul=False)  # fmt: skip
            except DecodeError as exc:
                await self.refuse(422, "invalid", f"the body is not JSON we accept: {exc}")(
                    scope, receive, send
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class UnknownQuery(Invalid):
    """A query parameter the route does not take (`names`, sorted)."""

    def __init__(self, names: list[str], message: str) -> None:
        super().__init__(message)
        self.names = names


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def no_unknown_query(request: Request) -> None:
    """Refuse (422) a query parameter the route does not declare (its dependencies' included).
    The names are worked out once per route and kept by the app (`app.state.declared_query`,
    id → (route, names): the route is kept too, so its id cannot be reused)."""
    route = request.scope.get("route")
    cache: dict[int, tuple[Any, frozenset[str]]] = request.app.state.declared_query
    hit = cache.get(id(route))
    if hit is None or hit[0] is not route:
        dependant = getattr(route, "dependant", None)
        names = frozenset(_query_names(dependant)) if dependant is not None else frozenset()
        cache[id(route)] = hit = (route, names)
    unknown = sorted(set(request.query_params) - hit[1])
    if unknown:
        raise UnknownQuery(
            unknown,
            f"unknown query parameter {', '.join(unknown)} (this endpoint takes: "
            f"{', '.join(sorted(hit[1])) or 'none'})",
        )


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (`10.0.0.5`, `10.0.0.0/8`, `::1`); `ValueError` naming a bad one."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request) -> str:
    """The client's address (see the module docstring)."""
    peer = request.client.host if request.client else ""
    proxies: tuple[Network, ...] = getattr(request.app.state, "trusted_proxies", ())
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, proxies):
            return hop[:64]
    return peer
