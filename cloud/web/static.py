"""`/static/…`: the pages' own CSS, font and scripts, served by the cloud (never a CDN: a
site's network may not reach one, and WeChat's browser may block it).

Only the files shipped in `cloud/web/static/` are served, looked up in a table made when the
module loads: a path is a key, never joined onto the file system, so `..` reaches nothing. Each
URL carries its content hash (`render.static_url`), so the answer may be cached for a year.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from cloud.errors import NotFound
from cloud.web.render import STATIC, static_url

router = APIRouter(prefix="/static", include_in_schema=False)

MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
FILES = {
    path.relative_to(STATIC).as_posix(): path
    for path in sorted(STATIC.rglob("*"))
    if path.is_file() and path.suffix in MEDIA_TYPES
}
YEAR = 365 * 24 * 3600
HOUR = 3600  # a URL without the content hash (the font, named from the CSS) may change


@router.get("/{name:path}")
def static_file(
    name: Annotated[str, Path(max_length=200)],
    v: Annotated[str | None, Query(max_length=32, description="content hash")] = None,
) -> Response:
    path = FILES.get(name)
    if path is None:
        raise NotFound(f"no static file {name!r}")
    hashed = v is not None and static_url(name).endswith(f"?v={v}")
    cache = f"public, max-age={YEAR}, immutable" if hashed else f"public, max-age={HOUR}"
    return Response(
        path.read_bytes(),
        media_type=MEDIA_TYPES[path.suffix],
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
