"""`/docs`: the API's Swagger UI, its script, style and icon served by the cloud itself
(`static/vendor/`, swagger-ui-dist), never from a CDN a site's network may not reach.

FastAPI's page carries one inline script (the `SwaggerUIBundle(...)` call); its Content
Security Policy admits exactly that script by its SHA-256 and nothing from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from cloud.web.render import static_url

router = APIRouter(include_in_schema=False)

INLINE = re.compile(rb"<script>(.*?)</script>", re.S)


def docs_csp(html: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in INLINE.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} – API",
        swagger_js_url=static_url("vendor/swagger-ui-bundle.js"),
        swagger_css_url=static_url("vendor/swagger-ui.css"),
        swagger_favicon_url=static_url("vendor/favicon-32x32.png"),
    )
    page.headers["Content-Security-Policy"] = docs_csp(bytes(page.body))
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page
