"""The cloud's web pages, server-rendered inside the same FastAPI app as the API: the merchant's
phone page (`/m/`, `cloud.web.phone`) now, the operator console later, on one foundation.

- **Templates** (`templates/`, Jinja2 with autoescaping) hold markup only: every word comes
  from one message catalogue (`catalogue`), Simplified Chinese by default, English switchable
  (`i18n`).
- **Sessions** (`sessions`): the login form logs in through `cloud.people.auth.login` and keeps
  the bearer token in an HttpOnly, SameSite=Lax cookie; every page authenticates it with
  `cloud.people.auth.authenticate`, and every POST form carries a CSRF token tied to it.
- **Static files** (`static/`: CSS, a subset of Noto Sans SC, a little ES5) are served by the
  cloud itself (`static`), never from a CDN: a site network may not reach one.
- Pages call the same services the API calls (`cloud.operations`, `cloud.reports`,
  `cloud.chains`, `cloud.registry`), never a second path around them.
"""
