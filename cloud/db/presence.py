"""Whether the cloud counts a concentrator on line: worked out when read, from its retained
status and `last_seen`, so no job has to mark it (and every API process agrees).

A node's retained MQTT status says online or offline (the broker publishes its last will,
offline, when its connection drops), and `last_seen` is when its last batch or status arrived.
A node whose status still says online but from which nothing has arrived for `silent_after`
is *silent*: a box hung with its connection alive, a broker that stopped passing its messages
on, a status retained from before a crash. The console and `/metrics` count it off line.

| presence  | its status says | heard from within `silent_after` |
|-----------|-----------------|----------------------------------|
| `online`  | online          | yes                              |
| `silent`  | online          | no (or never)                    |
| `offline` | offline         | either                           |

A node sends a batch every polling cycle (`poll_interval_s`, 15 minutes by default), so the
default, 45 minutes (`cloud.config.SILENT_AFTER_MIN`, `[ingest] silent_after_min`), is three
cycles without a word.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ColumnElement, and_

from cloud.db.models import Concentrator


class Presence(StrEnum):
    ONLINE = "online"
    SILENT = "silent"
    OFFLINE = "offline"


def presence(online: bool, last_seen: dt.datetime | None, heard_since: dt.datetime) -> Presence:
    """The node's presence; `heard_since` is now − silent_after."""
    if not online:
        return Presence.OFFLINE
    if last_seen is None or last_seen < heard_since:
        return Presence.SILENT
    return Presence.ONLINE


def on_line(node: type[Concentrator], heard_since: dt.datetime | None) -> ColumnElement[bool]:
    """`presence(…) is ONLINE` as SQL over the concentrators table; `heard_since` None: the
    status alone."""
    if heard_since is None:
        return node.online.is_(True)
    return and_(node.online.is_(True), node.last_seen >= heard_since)
