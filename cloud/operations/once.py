"""A row kept once per client key when two requests with that key race (the phone's offline
queue resending while its first send is still being answered, two tabs).

Each keyed service first looks its key up; two requests can both find nothing and both insert.
`add_once` inserts in a savepoint (`write_once`: whatever `write` adds, e.g. a ticket and its
opening step), so the loser's unique violation (on PostgreSQL it waits for the winner's
commit, then fails) costs only the savepoint: the caller gets the winner's row, re-read, and
compares it with what it was sent — the same answer as the winner's, or `Conflict` for other
content under the key — never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

T = TypeVar("T")


def add_once(session: Session, row: object, twin: Callable[[], T | None]) -> T | None:
    """Insert `row`; None when it went in. When a unique key refused it: the row a concurrent
    request committed under that key (`twin()`, read again); when there is none, another
    constraint refused it and its error is raised."""
    return write_once(session, lambda: session.add(row), twin)


def write_once(
    session: Session, write: Callable[[], None], twin: Callable[[], T | None]
) -> T | None:
    """`add_once` for the rows `write` adds (flushed in the savepoint): all of them, or none."""
    try:
        with session.begin_nested():
            write()
    except IntegrityError:
        found = twin()
        if found is None:
            raise
        return found
    return None
