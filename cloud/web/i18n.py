"""Which language a page is in, and its words (`catalogue.MESSAGES`).

The choice, first that applies:

| source                     | effect                                                      |
|----------------------------|-------------------------------------------------------------|
| `?lang=zh` / `?lang=en`    | this page, and remembered in the `vb_lang` cookie (a year)  |
| the `vb_lang` cookie       | a choice made before                                        |
| `Accept-Language`          | only while no choice was made: English if the browser ranks |
|                            | an `en` tag above every `zh` tag, else Chinese              |
| nothing                    | Simplified Chinese                                          |

A merchant who switched once keeps the language on every phone page; a phone whose system
language is English sees English until the merchant chooses. An unknown `lang` value or cookie
is ignored (never an error page for a stale link).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from cloud.chains.alarm_kinds import BY_CODE, KINDS
from cloud.web.catalogue import LANGS, MESSAGES

DEFAULT = "zh"
COOKIE = "vb_lang"
COOKIE_AGE = 365 * 24 * 3600
MAX_ACCEPT = 512  # characters of Accept-Language looked at


def from_accept_language(header: str) -> str | None:
    """`zh` or `en`, whichever the header ranks higher (by q, then order), or None."""
    best: tuple[float, int, str] | None = None
    for index, part in enumerate(header[:MAX_ACCEPT].split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0.0 < q <= 1.0:  # q=0 means "not this one"; NaN and junk are ignored
            continue
        candidate = (-q, index, primary)
        if best is None or candidate < best:
            best = candidate
    return None if best is None else best[2]


def choose(request: Request, asked: str | None) -> tuple[str, bool]:
    """(language, whether to remember it in the cookie)."""
    if asked in LANGS:
        return str(asked), request.cookies.get(COOKIE) != asked
    remembered = request.cookies.get(COOKIE)
    if remembered in LANGS:
        return str(remembered), False
    return from_accept_language(request.headers.get("accept-language", "")) or DEFAULT, False


Translate = Callable[..., str]


def translator(lang: str) -> Translate:
    """`t(key, **values)`: the key's words in `lang`; a missing key raises `KeyError` (a test
    checks every key the templates use is in the catalogue)."""
    column = LANGS.index(lang)

    def t(key: str, **values: Any) -> str:
        words = MESSAGES[key][column]
        return words.format(**values) if values else words

    return t


def term(t: Translate, prefix: str, code: str) -> str:
    """The words for a coded value (`term(t, "method", "cash")` → 现金), or the code itself
    when the catalogue has none (a method or state added later still shows)."""
    key = f"{prefix}_{code}"
    return t(key) if key in MESSAGES else code


ALARM_KIND = "alarm_kind_"  # + the code: a kind's words
OTHER_KIND = "alarm_other_kind"  # a kind with none (a newer concentrator's): "其他类型（{code}）"


def alarm_kind(t: Translate, code: str) -> str:
    """An alarm kind's words (every kind in `cloud.chains.alarm_kinds` has them); one that is
    not in the table as its code under a generic label, never a bare code."""
    key = f"{ALARM_KIND}{code}"
    return t(key) if code in BY_CODE and key in MESSAGES else t(OTHER_KIND, code=code)


def alarm_kinds(t: Translate) -> dict[str, str]:
    """Every alarm kind's words, by code."""
    return {kind.code: alarm_kind(t, kind.code) for kind in KINDS}


def _lang(
    request: Request,
    lang: Annotated[str | None, Query(max_length=8, description="zh or en")] = None,
) -> tuple[str, bool]:
    return choose(request, lang)


# A page's dependency: declares `?lang=` (so `cloud.api.guards.no_unknown_query` accepts it).
Lang = Annotated[tuple[str, bool], Depends(_lang)]
