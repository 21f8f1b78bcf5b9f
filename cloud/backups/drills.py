"""The restore drill: verify the latest backup on a schedule (`voltbook-cloud backup drill`,
run by the systemd timer `deploy/systemd/voltbook-restore-drill.timer`), record each result in
`restore_drills`, and raise a `restore_drill_failed` alarm (critical) when a backup could not
be restored or its books did not hold, so a backup that would not restore is found on a quiet
morning rather than on the day it is needed.

`latest_drill(session)` is the plain answer monitoring reads: whether the last drill passed,
and when it finished (None before the first drill).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.backups.verify import Verified
from cloud.chains.alarms import raise_alarm
from cloud.db.backups import RestoreDrill

ALARM = "restore_drill_failed"
MAX_DETAIL = 2000


def record(
    session: Session,
    *,
    kind: str,
    started: dt.datetime,
    finished: dt.datetime,
    verified: Verified | None = None,
    failure: str = "",
) -> RestoreDrill:
    """Store one drill: `verified` when the backup restored (its books may still be broken),
    else the `failure` that stopped it. A drill that did not pass raises the alarm."""
    if verified is not None:
        row = RestoreDrill(
            started=started, finished=finished, kind=verified.kind, backup=verified.backup[:200],
            ok=verified.ok, restore_seconds=verified.restore_seconds,
            check_seconds=verified.check_seconds, database_bytes=verified.database_bytes,
            summary=verified.check.summary(), problems=list(verified.check.problems),
        )  # fmt: skip
    else:
        reason = failure[:MAX_DETAIL]
        row = RestoreDrill(started=started, finished=finished, kind=kind, backup="", ok=False,
                           summary=reason, problems=[reason])  # fmt: skip
    session.add(row)
    if not row.ok:
        what = f"backup {row.backup}: " if row.backup else ""
        reasons = "; ".join(str(p) for p in row.problems[:5])
        raise_alarm(session, None, ALARM, finished,
                    f"restore drill failed: {what}{reasons}"[:MAX_DETAIL])  # fmt: skip
    session.flush()
    return row


def latest_drill(session: Session) -> tuple[bool, dt.datetime] | None:
    """(passed, finished) of the most recent drill, or None if none has run."""
    row = session.execute(
        select(RestoreDrill.ok, RestoreDrill.finished)
        .order_by(RestoreDrill.finished.desc(), RestoreDrill.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (bool(row.ok), row.finished)
