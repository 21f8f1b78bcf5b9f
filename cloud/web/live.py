"""The console's live feed: what one Server-Sent Events stream (`GET /console/events`) tells a
logged-in staff page, found by polling the database, so any number of workers serve streams
alike (no in-process pub/sub: an alarm stored through another worker is seen all the same).

Each connection keeps its own cursors and, every `Pace.tick` seconds, asks:

| event    | what                                       | found by                                |
|----------|--------------------------------------------|-----------------------------------------|
| `hello`  | the user's pop-up preferences and words,   | once, at the start                      |
|          | every alarm kind's among them              |                                         |
| `alarms` | alarms stored since the last one sent, with| `alarms.id` > the cursor (and ids it    |
|          | their building and floor                   | skipped, for `Pace.gap_wait` seconds)   |
| `nodes`  | a concentrator went off or on line (its    | its status, or its silence: on line as  |
|          | state in the tables, no pop-up)            | `cloud.db.presence` says, changed       |
| `values` | register, V, I, P, PF, relay, balance of   | the node's `upto` moved: its meters read|
|          | the meters read since the last one sent    | after the newest reading already sent   |
| `beat`   | nothing new for `Pace.beat` seconds        |                                         |
| `end`    | the session ended, or a newer stream of it | the token, authenticated on every tick  |
|          | replaced this one                          |                                         |

Every event's id is the cursor, `<alarm id>-<server ms>`: a reconnect sends it back
(`Last-Event-ID`; a newly loaded page passes its predecessor's as `?last=`) and the stream
resumes: the alarms after that id, and the values of the nodes seen since that time. A fresh
stream starts at the newest alarm and the readings already stored.

Alarm ids come from a sequence: a transaction holding a smaller id may commit after a larger
one was seen, so ids skipped over are asked again for a few seconds. A meter's values are
followed by its reading time, per node (`meters.last_reading` only moves forward): a box
whose clock went backwards shows its new values at its next reading after the old time.

Alarms are sent as codes (kind, building, floor, node), never as words: the page keeps a
pop-up's items across pages of the tab and draws them in its own language with the words of
its `hello` (a page reloaded in another language says them in that one).

One pop-up per event: a concentrator going off line changes its state on the page but pops
nothing up; if it stays silent the sweep stores its `node_silent` alarm
(`cloud.operations.silence`), and that alarm is the pop-up (as for every other kind, the
stored alarm is what pops up, is acknowledged and printed). A dropped connection that comes
back within `silent_after` pops nothing up, as it raises nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.chains.alarm_kinds import GROUPS, group_of
from cloud.db.console import AlarmPrefs
from cloud.db.models import Alarm, Concentrator
from cloud.db.presence import Presence, presence
from cloud.errors import Unauthorized
from cloud.operations import alarms
from cloud.people import auth
from cloud.people.auth import READ_ALL, STAFF, Principal
from cloud.web import i18n, monitoring
from cloud.web.chart import kwh_text
from cloud.web.forms import yuan_text
from cloud.web.monitoring import MeterRow

CURSOR = re.compile(r"^(\d{1,18})-(\d{1,13})$")  # ms: 13 digits reach the year 2286
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Pace:
    tick: float = 0.5  # seconds between polls
    beat: float = 15.0  # seconds of silence before a `beat`
    lifetime: float = 300.0  # seconds; then closed, and the browser reconnects with its cursor
    streams_per_session: int = 3  # a fourth replaces the oldest (a tab left open, a reload)
    alarms_per_tick: int = 100
    values_per_event: int = 200
    gap_wait: float = 10.0  # seconds an id skipped over is asked for again
    most_gap: int = 50  # a wider jump is no transaction in flight (a forged or old cursor)
    resume_within: dt.timedelta = dt.timedelta(minutes=10)  # an older cursor resumes no values


PACE = Pace()


@dataclass(frozen=True, slots=True)
class Cursor:
    alarm: int
    ms: int  # the server's clock when it was sent

    def text(self) -> str:
        return f"{self.alarm}-{self.ms}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """A cursor sent back by a browser; None when there is none or it is not ours."""
        found = CURSOR.match(text or "")
        return None if found is None else cls(int(found[1]), int(found[2]))

    @property
    def time(self) -> dt.datetime:
        return EPOCH + dt.timedelta(milliseconds=self.ms)


def ms_of(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Prefs:
    popup: bool = True
    sound: bool = True
    muted: frozenset[str] = frozenset()  # groups of `GROUPS`

    def wants(self, kind: str) -> bool:
        return self.popup and group_of(kind) not in self.muted


def prefs_of(session: Session, user: str) -> Prefs:
    row = session.get(AlarmPrefs, user)
    if row is None:
        return Prefs()
    muted = frozenset(g for g in row.muted if g in GROUPS) if isinstance(row.muted, list) else None
    return Prefs(row.popup, row.sound, muted or frozenset())


def save_prefs(session: Session, user: str, prefs: Prefs, now: dt.datetime) -> None:
    row = session.get(AlarmPrefs, user) or AlarmPrefs(user=user)
    row.popup, row.sound, row.muted = prefs.popup, prefs.sound, sorted(prefs.muted)
    row.updated = now
    session.add(row)


class Ended(Exception):
    """The stream is over: `reason` is `session` (log in again) or `replaced`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def event(name: str, cursor: Cursor, data: Any) -> str:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {cursor.text()}\nevent: {name}\ndata: {body}\n\n"


def session_key(token: str) -> str:
    """What the open streams of one session are counted under (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Live:
    """One stream's cursors and who it is for."""

    token: str
    address: str
    who: Principal
    lang: str
    prefs: Prefs
    clock: Callable[[], float]  # monotonic seconds: when skipped ids stop being asked for
    silent_after: dt.timedelta  # a node silent this long counts off line (`cloud.db.presence`)
    alarm: int = 0
    gaps: dict[int, float] = field(default_factory=dict)  # skipped id → until when
    nodes: dict[str, tuple[int, bool]] = field(default_factory=dict)  # upto, online
    marks: dict[str, dt.datetime] = field(default_factory=dict)  # newest reading sent
    replaced: bool = False

    def hello(self, now: dt.datetime) -> str:
        t = i18n.translator(self.lang)
        keys = ("title", "group", "open", "close", "settings", "no_place")
        words: dict[str, Any] = {key: t(f"live_{key}") for key in keys}
        words |= {"node": t("live_node", node="{node}"), "arrears": t("state_arrears"),
                  "online": t("state_online"), "offline": t("state_offline"),
                  "kinds": i18n.alarm_kinds(t),
                  "other_kind": t(i18n.OTHER_KIND, code="{code}")}  # fmt: skip
        hello = {"popup": self.prefs.popup, "sound": self.prefs.sound, "words": words}
        return event("hello", Cursor(self.alarm, ms_of(now)), hello)

    def start(self, session: Session, now: dt.datetime, resume: Cursor | None) -> None:
        """Where this stream starts: after `resume`, or at what is stored now."""
        nodes = self._nodes(session, now - self.silent_after)
        self.marks = monitoring.newest_readings(session)
        if resume is None:
            self.alarm = alarms.last_id(session)
            self.nodes = nodes
            return
        self.alarm = resume.alarm
        if now - resume.time > PACE.resume_within:  # values from that long ago: not worth it
            self.nodes = nodes
            return
        # Nodes seen since the cursor (a worker's clock may lag: a second's leeway) count as
        # moved, so the values they brought are sent; their online state as it was is unknown.
        seen = {node for node, last in self._seen(session) if last >= resume.time - _LEEWAY}
        self.nodes = {n: (-1 if n in seen else upto, online) for n, (upto, online) in nodes.items()}
        for node in seen:
            self.marks.pop(node, None)

    def tick(self, session: Session, now: dt.datetime) -> list[str]:
        """The events of one poll; `Ended` when the stream must stop."""
        if self.replaced:
            raise Ended("replaced")
        try:
            self.who = auth.authenticate(session, self.token, self.address, now)
        except Unauthorized:
            raise Ended("session") from None
        if self.who.role not in READ_ALL:
            raise Ended("session")
        t = i18n.translator(self.lang)
        cursor_alarms, out_alarms = self._alarms(session)
        out_nodes, moved = self._node_changes(session, now - self.silent_after)
        rows = monitoring.read_since(session, {n: self.marks.get(n) for n in moved}, now)
        for row in rows:
            if row.last_reading is not None:
                self.marks[row.node] = max(row.last_reading, self.marks.get(row.node, EPOCH))
        cursor = Cursor(cursor_alarms, ms_of(now))
        events = []
        if out_alarms:
            events.append(event("alarms", cursor, out_alarms))
        if out_nodes:
            events.append(event("nodes", cursor, out_nodes))
        money = self.who.role in STAFF
        for first in range(0, len(rows), PACE.values_per_event):
            chunk = rows[first : first + PACE.values_per_event]
            events.append(event("values", cursor, [_values(r, t, money) for r in chunk]))
        return events

    def beat(self, now: dt.datetime) -> str:
        return event("beat", Cursor(self.alarm, ms_of(now)), {})

    def _alarms(self, session: Session) -> tuple[int, list[dict[str, Any]]]:
        moment = self.clock()
        self.gaps = {i: until for i, until in self.gaps.items() if until > moment}
        rows = alarms.newer(session, self.alarm, self.gaps, PACE.alarms_per_tick)
        for row in rows:
            self.gaps.pop(row.id, None)
            if row.id > self.alarm:
                if row.id - self.alarm <= PACE.most_gap:
                    skipped = range(self.alarm + 1, row.id)
                    self.gaps |= dict.fromkeys(skipped, moment + PACE.gap_wait)
                self.alarm = row.id
        wanted = [r for r in rows if self.prefs.wants(r.kind)]
        places = alarms.places(session, wanted)
        return self.alarm, [_alarm(r, places.get(r.id)) for r in wanted]

    def _node_changes(
        self, session: Session, heard_since: dt.datetime
    ) -> tuple[list[dict[str, Any]], list[str]]:
        out, moved = [], []
        for node, (upto, online) in self._nodes(session, heard_since).items():
            known = self.nodes.get(node)
            self.nodes[node] = (upto, online)
            if known is None:
                continue  # registered since: nothing of it is on any page yet
            if known[1] != online:  # no pop-up: a silence pops up as its stored alarm
                out.append({"node": node, "online": online})
            if known[0] != upto:
                moved.append(node)
        return out, moved

    @staticmethod
    def _nodes(session: Session, heard_since: dt.datetime) -> dict[str, tuple[int, bool]]:
        """Each node's (upto, on line), silent ones off line."""
        node = Concentrator
        rows = session.execute(select(node.node, node.upto, node.online, node.last_seen))
        return {
            name: (int(upto), presence(bool(online), seen, heard_since) is Presence.ONLINE)
            for name, upto, online, seen in rows
        }

    @staticmethod
    def _seen(session: Session) -> list[tuple[str, dt.datetime]]:
        rows = session.execute(select(Concentrator.node, Concentrator.last_seen))
        return [(node, last) for node, last in rows if last is not None]


_LEEWAY = dt.timedelta(seconds=1)


def _alarm(row: Alarm, place: tuple[str, ...] | None) -> dict[str, Any]:
    """An alarm as the pop-up keeps it: codes, drawn in the page's language by the page."""
    building, floor, shop = place or ("", "", "")
    return {"id": row.id, "kind": row.kind, "severity": row.severity, "building": building,
            "floor": floor, "shop": row.shop or shop, "meter": row.meter or "",
            "node": row.node or ""}  # fmt: skip


def _values(row: MeterRow, t: i18n.Translate, money: bool) -> dict[str, Any]:
    """A meter's cells as `templates/console/_meters.html` writes them."""
    unknown = t("unknown")

    def number(value: float | None, fmt: str) -> str:
        return unknown if value is None else fmt % value

    relay = None if row.relay is None else bool(row.relay)
    values: dict[str, Any] = {
        "node": row.node, "meter": row.address,
        "register": unknown if row.energy_wh is None else kwh_text(row.energy_wh),
        "voltage": number(row.voltage, "%.1f"), "current": number(row.current, "%.2f"),
        "power": number(row.power, "%.0f"), "pf": number(row.pf, "%.2f"),
        "relay": relay,
        "relay_text": unknown if relay is None else t("relay_closed" if relay else "relay_open"),
    }  # fmt: skip
    if money:
        values["balance"] = unknown if row.balance_fen is None else yuan_text(row.balance_fen)
        values["arrears"] = row.in_arrears
    return values
