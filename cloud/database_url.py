"""Database URLs as an operator writes them, turned into SQLAlchemy URLs.

SQLAlchemy reads `postgresql+psycopg://user@host:port/db` and `sqlite:///path`, but not libpq's
multi-host form, which is how the cloud follows a primary that moves (README "Hot standby"):

    postgresql://voltbook@10.0.0.11:5432,10.0.0.12:5432/voltbook?target_session_attrs=read-write

libpq tries the hosts in order and keeps the first that accepts writes. SQLAlchemy's psycopg
dialect takes the same list as repeated `host` query parameters, so
`parse_database_url` rewrites the first form into
`postgresql://voltbook@/voltbook?host=10.0.0.11:5432&host=10.0.0.12:5432&target_session_attrs=…`
and leaves every other URL to `sqlalchemy.engine.make_url`. It raises `ValueError` with the
reason for anything it cannot read.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# scheme://[user[:password]@]hostlist[/database][?query], hostlist holding at least one comma.
_MULTI_HOST = re.compile(
    r"^(?P<scheme>postgres(?:ql)?(?:\+\w+)?)://"
    r"(?:(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@)?"
    r"(?P<hosts>[^/?@]*,[^/?@]*)"
    r"(?:/(?P<database>[^?]*))?"
    r"(?:\?(?P<query>.*))?$"
)
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(?P<port>\d{1,5}))?$")


def parse_database_url(text: str) -> URL:
    """`text` as a SQLAlchemy URL; libpq's `h1:p1,h2:p2` host lists become `host` parameters."""
    found = _MULTI_HOST.match(text.strip())
    if found is None:
        try:
            return make_url(text)
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"not a database URL: {exc}") from None
    hosts = tuple(_host(part) for part in found["hosts"].split(","))
    query: dict[str, str | tuple[str, ...]] = {}
    for name, value in parse_qsl(
        found["query"] or "", keep_blank_values=True, strict_parsing=False
    ):
        if name in ("host", "port", "hostaddr"):
            raise ValueError(f"the host list is in the address part; {name}= must not repeat it")
        query[name] = value
    query["host"] = hosts
    scheme = found["scheme"].replace("postgres+", "postgresql+")
    if scheme == "postgres":
        scheme = "postgresql"
    return URL.create(
        scheme,
        username=unquote(found["user"]) if found["user"] else None,
        password=unquote(found["password"]) if found["password"] is not None else None,
        database=unquote(found["database"]) if found["database"] else None,
        query=query,
    )


def _host(part: str) -> str:
    """One `host[:port]` of a libpq host list, checked."""
    matched = _HOST_PORT.match(part.strip())
    if matched is None:
        raise ValueError(f"{part!r} in the host list is not host or host:port")
    port = matched["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"port {port} in the host list is out of range")
    return matched["host"] if port is None else f"{matched['host']}:{port}"
