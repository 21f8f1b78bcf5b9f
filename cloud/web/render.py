"""Turning a template into an answer: the Jinja2 environment (autoescaping on, an undefined
name is an error, not an empty string), the filters pages format money, energy and time with,
and the headers every page carries.

Headers: a strict Content Security Policy (only our own scripts, styles, fonts and images;
inline SVG is markup, not an image, so the charts need nothing more; no `form-action`, because
the top-up form's answer redirects to the payment provider's page), no framing, no sniffing,
and `Cache-Control: no-store`: a page shows a merchant's balance and must not be kept by a
shared phone's cache or a proxy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cloud.chains.rollups import SITE_ZONE
from cloud.web import i18n
from cloud.web.chart import kwh_text
from cloud.web.forms import yuan_text

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def kwh_2(wh: int) -> str:
    """`97585` → `"97.58"` kWh, rounded down: what a balance buys is never overstated."""
    hundredths = max(wh, 0) // 10
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def local_time(when: dt.datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    return aware.astimezone(SITE_ZONE).strftime(fmt)


def price_yuan(price: int) -> str:
    """A price in 0.0001 CNY/kWh as yuan: `8365` → `"0.8365"`."""
    return f"{price // 10000}.{price % 10000:04d}"


def _static_version(name: str) -> str:
    try:
        return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


VERSIONS: dict[str, str] = {}


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: cached for a year, a new file is a new URL."""
    version = VERSIONS.get(name)
    if version is None:
        version = VERSIONS[name] = _static_version(name)
    return f"/static/{name}?v={version}"


ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(yuan=yuan_text, kwh=kwh_2, kwh1=kwh_text, local_time=local_time,
                   price_yuan=price_yuan)  # fmt: skip
ENV.globals.update(static_url=static_url)


def page(
    request: Request,
    template: str,
    lang: tuple[str, bool],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """The template rendered in the page's language, with the security headers; the language
    is remembered in its cookie when the request chose it (`?lang=`)."""
    chosen, remember = lang
    t = i18n.translator(chosen)
    html = ENV.get_template(template).render(
        t=t,
        term=lambda prefix, code: i18n.term(t, prefix, code),
        alarm_kind=lambda code: i18n.alarm_kind(t, code),
        lang=chosen,
        path=request.url.path,
        request_is_get=request.method == "GET",
        **context,
    )
    response = HTMLResponse(
        html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )
    if remember:
        response.set_cookie(i18n.COOKIE, chosen, max_age=i18n.COOKIE_AGE, samesite="lax",
                            secure=request.url.scheme == "https", path="/")  # fmt: skip
    return response
