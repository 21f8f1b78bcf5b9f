"""Fault tickets: the field's work (`cloud.db.faults`), opened by hand or from an alarm, moved
through a table-driven state machine, each change a step of its history and a row of the
operator log.

    open ──► in_progress ──► fixed ──► closed
      │          │  ▲          │
      │          ▼  │          ▼
      └────► closed open   in_progress (not fixed after all)

`TRANSITIONS` is the whole machine: a move not in it is refused (409) and changes nothing. A
ticket opened from an alarm takes the alarm's concentrator and meter, and its kind from the
alarm's (`KIND_OF_ALARM`); one alarm opens at most one ticket that is not closed. Opening, a
move and a comment may carry a phone's key (`client_key`, kept on their step): each is applied
once per key, the same key again answered with what it did. A comment
is a step that keeps the status (`before` == `after`). `assign` gives a ticket to a technician
(an active user of a field role), logged `fault.assign` (with the phone's key, when it came
from the offline queue); it is not a step of the history.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from cloud.db.auth import OperatorLogEntry, User
from cloud.db.faults import Fault, FaultStep
from cloud.db.models import Alarm
from cloud.errors import Conflict, Invalid, NotFound
from cloud.operations.once import add_once, write_once
from cloud.people import oplog
from cloud.people.auth import FIELD

KINDS = ("meter_offline", "read_failures", "relay_fault", "bus_down", "concentrator_offline",
         "tamper", "other")  # fmt: skip
STATUSES = ("open", "in_progress", "fixed", "closed")
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"in_progress", "closed"}),
    "in_progress": frozenset({"fixed", "open"}),
    "fixed": frozenset({"closed", "in_progress"}),
    "closed": frozenset(),
}
# An alarm's kind (the edge's `AlarmKind`, the cloud's `quarantined`) → the fault it calls for.
KIND_OF_ALARM = {
    "meter_unreadable": "meter_offline", "read_success_low": "read_failures",
    "relay_failed": "relay_fault", "relay_still_failing": "relay_fault", "bus_down": "bus_down",
    "quarantined": "concentrator_offline", "malicious_load": "tamper",
}  # fmt: skip
MAX_NOTE = 500
PLACE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
NODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
METER = re.compile(r"[0-9A-Za-z]{1,32}")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a fault is: any of the registry's site name, a concentrator, a meter address."""

    site: str | None = None
    node: str | None = None
    meter: str | None = None

    def checked(self) -> Place:
        for value, shape, name in ((self.site, PLACE, "site"), (self.node, NODE, "node"),
                                   (self.meter, METER, "meter")):  # fmt: skip
            if value is not None and not shape.fullmatch(value):
                raise Invalid(f"{name} {value!r} is not one we know the shape of")
        if self.site is None and self.node is None and self.meter is None:
            raise Invalid("say where the fault is: a site, a concentrator or a meter")
        return self


def _note(note: str) -> str:
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise Invalid(f"a note is at most {MAX_NOTE} characters")
    return note


def _changed(
    session: Session,
    fault: Fault,
    before: str,
    *,
    note: str,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None = None,
) -> None:
    """A move: a step of the ticket's history and a row of the operator log; a `client_key` a
    concurrent request took first is refused (`Conflict`: it moved another ticket, or this one
    was locked and its key read again before)."""
    step = _step(fault, before, note=note, actor=actor, now=now, client_key=client_key)
    if client_key is None:
        session.add(step)
    elif add_once(session, step, lambda: keyed_step(session, client_key)) is not None:
        raise Conflict(f"key {client_key} was used for another move")
    _logged(session, fault, before, note=note, actor=actor, now=now, client_key=client_key)


def _step(fault: Fault, before: str | None, *, note: str, actor: oplog.Actor, now: dt.datetime,
          client_key: str | None) -> FaultStep:  # fmt: skip
    return FaultStep(fault_id=fault.id, before=before, after=fault.status, note=note,
                     by=actor.user, time=now, client_key=client_key)  # fmt: skip


def _logged(session: Session, fault: Fault, before: str | None, *, note: str,
            actor: oplog.Actor, now: dt.datetime, client_key: str | None) -> None:  # fmt: skip
    """`fault.open` (`before` None) or `fault.status`, with the phone's key when it sent one."""
    after = {"status": fault.status, "kind": fault.kind, "note": note}
    after |= {} if client_key is None else {"key": client_key}
    oplog.record(session, actor, "fault.open" if before is None else "fault.status",
                 f"fault:{fault.id}", None if before is None else {"status": before}, after,
                 now)  # fmt: skip


class AlarmTaken(Conflict):
    """The alarm has a ticket that is not closed (`fault_id`): one alarm, one open ticket."""

    def __init__(self, alarm_id: int, fault_id: int) -> None:
        super().__init__(f"alarm {alarm_id} has fault {fault_id} open already")
        self.alarm_id, self.fault_id = alarm_id, fault_id


def _new(kind: str, place: Place, note: str, *, actor: oplog.Actor, now: dt.datetime,
         alarm_id: int | None = None, assignee: str | None = None) -> Fault:  # fmt: skip
    """A ticket to open, checked (`Invalid`), not yet added."""
    if kind not in KINDS:
        raise Invalid(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    place = place.checked()
    return Fault(kind=kind, site=place.site, node=place.node, meter=place.meter,
                 alarm_id=alarm_id, status="open", note=_note(note), opened_by=actor.user,
                 assignee=assignee, opened=now, updated=now)  # fmt: skip


def open_fault(
    session: Session,
    kind: str,
    place: Place,
    *,
    note: str,
    actor: oplog.Actor,
    now: dt.datetime,
    assignee: str | None = None,
    client_key: str | None = None,
) -> tuple[Fault, bool]:
    """A new ticket, open, its opening step and log row: (the ticket, True). A `client_key` (the
    phone's offline queue, the API's `Idempotency-Key`) is kept on the opening step: a key that
    opened a ticket already is answered with it, (the ticket, False), not opened again; the same
    key for another ticket, or another step, is refused (409)."""
    wanted = _new(kind, place, note, actor=actor, now=now, assignee=assignee)
    return _opened(session, wanted, actor=actor, now=now, client_key=client_key)


def _opened(session: Session, fault: Fault, *, actor: oplog.Actor, now: dt.datetime,
            client_key: str | None) -> tuple[Fault, bool]:  # fmt: skip
    """`fault` added with its opening step; or the ticket `client_key` opened, now or in a
    concurrent request that committed first (the ticket and its step go in a savepoint: the
    loser keeps neither)."""
    if client_key is not None and (done := keyed_step(session, client_key)) is not None:
        return _replayed_open(session, done, fault), False

    def write() -> None:
        session.add(fault)
        session.flush()
        session.add(_step(fault, None, note=fault.note, actor=actor, now=now,
                          client_key=client_key))  # fmt: skip

    if client_key is None:
        write()
    elif (twin := write_once(session, write, lambda: keyed_step(session, client_key))) is not None:
        return _replayed_open(session, twin, fault), False
    session.flush()
    _logged(session, fault, None, note=fault.note, actor=actor, now=now, client_key=client_key)
    return fault, True


def _replayed_open(session: Session, done: FaultStep, wanted: Fault) -> Fault:
    """The ticket `done` opened, if it is the one `wanted` (the same kind, place, alarm, note)."""
    if done.before is None:
        fault = session.scalars(
            select(Fault).where(Fault.id == done.fault_id).execution_options(populate_existing=True)
        ).one()
        if _content(fault) == _content(wanted):
            return fault
    raise Conflict(f"key {done.client_key} was used for another ticket or step")


def _content(fault: Fault) -> tuple[object, ...]:
    return fault.kind, fault.site, fault.node, fault.meter, fault.alarm_id, fault.note


def open_from_alarm(
    session: Session,
    alarm_id: int,
    *,
    note: str,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None = None,
) -> tuple[Fault, bool]:
    """A ticket for the alarm: its concentrator and meter, its kind mapped (else `other`); a
    second ticket while one for the alarm is not closed is refused (`AlarmTaken`, 409), unless
    it is the same key again (its ticket, as `open_fault`). The alarm is locked first, so two
    requests for it (two phones back online at once) open one after the other."""
    query = select(Alarm).where(Alarm.id == alarm_id).with_for_update()
    alarm = session.scalars(query.execution_options(populate_existing=True)).first()
    if alarm is None:
        raise NotFound(f"no alarm {alarm_id}")
    if alarm.node is None and alarm.meter is None:
        raise Invalid(f"alarm {alarm_id} names no concentrator or meter")
    wanted = _new(KIND_OF_ALARM.get(alarm.kind, "other"), Place(node=alarm.node, meter=alarm.meter),
                  _note(note) or alarm.detail[:MAX_NOTE], actor=actor, now=now,
                  alarm_id=alarm_id)  # fmt: skip
    if client_key is not None and (done := keyed_step(session, client_key)) is not None:
        return _replayed_open(session, done, wanted), False
    taken = session.scalars(
        select(Fault.id).where(Fault.alarm_id == alarm_id, Fault.status != "closed")
    ).first()
    if taken is not None:
        raise AlarmTaken(alarm_id, taken)
    return _opened(session, wanted, actor=actor, now=now, client_key=client_key)


def move(
    session: Session,
    fault_id: int,
    to: str,
    *,
    note: str,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None = None,
) -> Fault:
    """Move the ticket to `to` if `TRANSITIONS` allows it (else 409, nothing changed). A move
    with a `client_key` already applied is answered with the ticket as it is, not applied again
    (a phone resending what it queued offline); the key is read again once the ticket is locked,
    so a resend racing its first send gets the first's answer."""
    if client_key is not None and (done := keyed_step(session, client_key)) is not None:
        return _replayed_move(session, done, fault_id, to)
    if to not in STATUSES:
        raise Invalid(f"status {to!r} is not one of {', '.join(STATUSES)}")
    fault = session.scalars(select(Fault).where(Fault.id == fault_id).with_for_update()).first()
    if fault is None:
        raise NotFound(f"no fault {fault_id}")
    if client_key is not None and (done := keyed_step(session, client_key)) is not None:
        return _replayed_move(session, done, fault_id, to)  # a twin committed while we waited
    before = fault.status
    if to not in TRANSITIONS[before]:
        raise Conflict(f"fault {fault_id} is {before}: it cannot become {to}")
    text = _note(note)
    fault.status, fault.updated = to, now
    _changed(session, fault, before, note=text, actor=actor, now=now, client_key=client_key)
    return fault


def keyed_step(session: Session, client_key: str) -> FaultStep | None:
    """The step a phone's key made, as committed now (not as this session saw it before)."""
    query = select(FaultStep).where(FaultStep.client_key == client_key)
    return session.scalars(query.execution_options(populate_existing=True)).first()


def _replayed_move(session: Session, done: FaultStep, fault_id: int, to: str) -> Fault:
    if done.fault_id != fault_id or done.after != to or done.before in (None, done.after):
        raise Conflict(f"key {done.client_key} was used for another move")
    return session.scalars(
        select(Fault).where(Fault.id == fault_id).execution_options(populate_existing=True)
    ).one()


def comment(
    session: Session,
    fault_id: int,
    note: str,
    *,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None = None,
) -> FaultStep:
    """A comment on the ticket: a step of its history that keeps its status (`before` ==
    `after`), logged `fault.comment`. A `client_key` already applied is answered with its step,
    not applied again; the same key for another comment is refused (409)."""
    text = _note(note)
    if not text:
        raise Invalid("a comment needs some text")
    if client_key is not None and (done := keyed_step(session, client_key)) is not None:
        return _replayed_comment(done, fault_id, text)
    fault = one(session, fault_id)
    step = FaultStep(fault_id=fault.id, before=fault.status, after=fault.status, note=text,
                     by=actor.user, time=now, client_key=client_key)  # fmt: skip
    if client_key is None:
        session.add(step)
    elif (twin := add_once(session, step, lambda: keyed_step(session, client_key))) is not None:
        return _replayed_comment(twin, fault_id, text)  # a concurrent request's, committed first
    fault.updated = now
    session.flush()
    oplog.record(session, actor, "fault.comment", f"fault:{fault.id}", None,
                 {"status": fault.status, "note": text}, now)  # fmt: skip
    return step


def _replayed_comment(done: FaultStep, fault_id: int, text: str) -> FaultStep:
    if done.fault_id != fault_id or done.note != text or done.before != done.after:
        raise Conflict(f"key {done.client_key} was used for another step")
    return done


def technicians(session: Session) -> list[User]:
    """The users a ticket may be assigned to: active, in a field role, by name."""
    field_roles = [r.value for r in FIELD]
    query = select(User).where(User.active.is_(True), User.role.in_(field_roles))
    return list(session.scalars(query.order_by(User.name)))


def assign(
    session: Session,
    fault_id: int,
    assignee: str | None,
    *,
    actor: oplog.Actor,
    now: dt.datetime,
    client_key: str | None = None,
) -> Fault:
    """Give the ticket to `assignee` (None: to nobody), an active user of a field role (else
    `Invalid`); logged `fault.assign` with who had it before. A closed ticket keeps its last
    assignee (`Conflict`); the same assignee again changes and logs nothing. A `client_key` (a
    phone's offline queue) is kept in the log row, even for the same assignee again; a key
    already applied is answered with the ticket as it is, not applied again, and the same key
    for another ticket or assignee is refused (409). The ticket's lock orders two requests with
    one key: the second reads the first's row once it has the lock."""
    fault = session.scalars(select(Fault).where(Fault.id == fault_id).with_for_update()).first()
    if fault is None:
        raise NotFound(f"no fault {fault_id}")
    if client_key is not None and (done := _keyed_assign(session, client_key)) is not None:
        if done.target != f"fault:{fault_id}" or (done.after or {}).get("assignee") != assignee:
            raise Conflict(f"key {client_key} was used for another assignment")
        return session.scalars(
            select(Fault).where(Fault.id == fault_id).execution_options(populate_existing=True)
        ).one()
    if assignee is not None:
        user = session.get(User, assignee)
        if user is None or not user.active or user.role not in FIELD:
            raise Invalid(f"{assignee!r} is not an active installer, operator or admin")
    if fault.status == "closed":
        raise Conflict(f"fault {fault_id} is closed")
    if fault.assignee == assignee and client_key is None:
        return fault
    before, fault.assignee, fault.updated = fault.assignee, assignee, now
    after = {"assignee": assignee} | ({} if client_key is None else {"key": client_key})
    oplog.record(session, actor, "fault.assign", f"fault:{fault.id}", {"assignee": before},
                 after, now)  # fmt: skip
    return fault


def _keyed_assign(session: Session, client_key: str) -> OperatorLogEntry | None:
    """The `fault.assign` log row a phone's key made, as committed now."""
    query = select(OperatorLogEntry).where(
        OperatorLogEntry.action == "fault.assign",
        OperatorLogEntry.after["key"].as_string() == client_key,
    )
    return session.scalars(query.execution_options(populate_existing=True)).first()


def listed(*, status: str | None = None, node: str | None = None, meter: str | None = None,
           active: bool | None = None, assignee: str | None = None) -> Select[Fault]:  # fmt: skip
    """Tickets, the most recently changed first; `active`: not closed (True) or closed;
    `assignee`: given to that user."""
    query = select(Fault).where(Fault.assignee == assignee) if assignee else select(Fault)
    for column, value in ((Fault.status, status), (Fault.node, node), (Fault.meter, meter)):
        if value is not None:
            query = query.where(column == value)
    if active is not None:
        query = query.where((Fault.status != "closed") if active else (Fault.status == "closed"))
    return query.order_by(Fault.updated.desc(), Fault.id.desc())


def history(session: Session, fault_id: int) -> list[FaultStep]:
    return list(session.scalars(
        select(FaultStep).where(FaultStep.fault_id == fault_id).order_by(FaultStep.id)
    ))  # fmt: skip


def one(session: Session, fault_id: int) -> Fault:
    fault = session.get(Fault, fault_id)
    if fault is None:
        raise NotFound(f"no fault {fault_id}")
    return fault
