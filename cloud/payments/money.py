"""Yuan strings and integer fen: Alipay speaks yuan (`"19.90"`), everything of ours speaks fen.

Never through a float (`19.9 * 100 == 1989.9999…`): `Decimal`, exactly two places.
"""

from __future__ import annotations

import re
from decimal import Decimal

from cloud.errors import Invalid

_YUAN = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?")


def yuan(fen: int) -> str:
    """`1990` → `"19.90"`."""
    if type(fen) is not int or fen < 0:
        raise Invalid(f"an amount in fen must be a non-negative integer, not {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def fen_of(text: object) -> int:
    """`"19.9"` or `"19.90"` → `1990`; anything else (a sign, an exponent, three decimals,
    spaces) is `Invalid`."""
    if not isinstance(text, str) or _YUAN.fullmatch(text) is None:
        raise Invalid(f"an amount in yuan must look like 19.90, not {text!r}")
    return int(Decimal(text).quantize(Decimal("0.01")) * 100)
