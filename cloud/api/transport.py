"""Whether a request came over TLS, and HSTS on every answer that did.

A request is over TLS when the cloud serves HTTPS itself (`[api] tls_cert`: uvicorn marks the
request's scheme `https`), or, with `[api] tls_proxy = true`, when its peer is one of `[api]
trusted_proxies` and the proxy says so with `X-Forwarded-Proto: https` (the right-most value:
the one the proxy next to us set). From anyone else the header is ignored: a client could
otherwise claim TLS it does not have.

Over TLS the request's scheme is `https` for everything after this middleware (the session
cookies are then `Secure`: `cloud.web.sessions`), and every answer carries
`Strict-Transport-Security`, so a browser that once reached the cloud over HTTPS never tries
plain HTTP again for a year. Plain HTTP answers carry no HSTS header (RFC 6797 §7.2: a host
must not send it over an insecure transport).
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = b"max-age=31536000; includeSubDomains"
HSTS_HEADER = b"strict-transport-security"
FORWARDED_PROTO = b"x-forwarded-proto"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def forwarded_https(
    peer: str | None, headers: list[tuple[bytes, bytes]], proxies: tuple[Network, ...]
) -> bool:
    """Whether a trusted proxy at `peer` says the client reached it over HTTPS."""
    if not peer or not proxies:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if not any(address in network for network in proxies):
        return False
    values = b",".join(value for name, value in headers if name.lower() == FORWARDED_PROTO)
    hops = [hop.strip().lower() for hop in values.split(b",") if hop.strip()]
    return bool(hops) and hops[-1] == b"https"


class TransportSecurity:
    """ASGI middleware: the scheme a trusted TLS proxy vouches for, and HSTS over TLS."""

    def __init__(self, app: ASGIApp, proxies: tuple[Network, ...] = (), *, tls_proxy: bool) -> None:
        self.app = app
        self.proxies = proxies if tls_proxy else ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("scheme") != "https":
            client = scope.get("client")
            if not forwarded_https(client[0] if client else None, scope["headers"], self.proxies):
                await self.app(scope, receive, send)
                return
            scope = {**scope, "scheme": "https"}

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HSTS_HEADER]
                message = {**message, "headers": [*headers, (HSTS_HEADER, HSTS)]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)
