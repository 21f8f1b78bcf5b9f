"""The notices a merchant's phone page shows beside its alarms: power-off notices for
maintenance or a violation, arrears warnings, "recharge credited" and the like.

They come from the merchant-notice outbox (`cloud/notices/`, issue 14 item 8), which another
change builds. Until it lands this feed is empty; switching is one function: make
`notices_for` read that outbox (newest first, the account's own notices only) and map each row
to a `Notice`. The page and its tests need no other change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class Notice:
    time: dt.datetime
    title: str  # already in the merchant's language (the notice was written for them)
    body: str


def notices_for(session: Session, account: str, now: dt.datetime, limit: int = 10) -> list[Notice]:
    """The account's latest notices, newest first (none until `cloud/notices/` exists)."""
    return []
