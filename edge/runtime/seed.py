"""Opening balances of a new site: `seed.json`, booked once as recharges at the first run.

    {"recharges": [{"account": "A0001", "fen": 20000, "payment": "seed-A0001"}, ...]}

Each recharge's transfer id derives from its `payment` reference, and one already in the book
is skipped, so booking the seed at every start is harmless: a runtime killed in the middle of
it books the rest next time, and nothing twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge.site.errors import SiteConfigError


@dataclass(frozen=True, slots=True)
class SeedRecharge:
    account: str
    fen: int
    payment: str


def read_seed(path: Path, accounts: set[str]) -> list[SeedRecharge]:
    """The seed file's recharges, checked; SiteConfigError naming the file otherwise."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SiteConfigError(path, "the seed file named in site.toml does not exist") from None
    except (OSError, ValueError) as exc:
        raise SiteConfigError(path, f"the seed file is not readable JSON ({exc})") from None
    rows = data.get("recharges") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise SiteConfigError(path, 'the seed file must be {"recharges": [...]}')
    out = []
    for i, row in enumerate(rows):
        if not (
            isinstance(row, dict)
            and isinstance(row.get("account"), str)
            and type(row.get("fen")) is int
            and row["fen"] > 0
            and isinstance(row.get("payment"), str)
        ):
            raise SiteConfigError(
                path, f"recharge #{i + 1} needs account (text), fen (integer > 0) and payment"
            )
        if row["account"] not in accounts:
            raise SiteConfigError(
                path, f"recharge #{i + 1} is for unknown account {row['account']!r}"
            )
        out.append(SeedRecharge(row["account"], row["fen"], row["payment"]))
    return out
