"""Create, read, list, change and delete registry rows, the same way for every kind of row.

Each kind (site, shop, meter, tariff, …) is an `Entity`: its table, what it references (an
unknown reference is `NotFound`, nothing stored), what references it (deleting a row still
referenced is a `Conflict`), why a row must be kept anyway (`keeps`: an account that holds
money or has ledger entries, `cloud.registry.holdings`; a `Kept` conflict), what must be unique,
how a full row is checked and completed (`prepare`, raising `Invalid`), and which
concentrators' configuration it feeds (`nodes`). The entities themselves are declared in
`cloud.registry.entities`.

Every write, in the caller's transaction:
1. checks everything before changing anything;
2. marks the configuration of every concentrator the row fed *before or after* the change as
   changed (`registry_nodes.dirty`): a meter moved from edge-0001 to edge-0002 marks both;
3. appends one operator-log row with the values before and after (`cloud.people.oplog`).

Marked nodes get their new configuration when it is pushed (`cloud.registry.site_config`). A
tenant's move (`cloud.operations.moves`) changes its account's shop through `update` too, so it is
checked, marked and logged the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, func, inspect, select
from sqlalchemy.orm import Session

from cloud.db.registry import NodeConfig
from cloud.errors import Conflict, Invalid, NotFound
from cloud.people import oplog

Values = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ref:
    """A column naming a row of another table (`what` names it in errors)."""

    column: str
    model: Any
    what: str


@dataclass(frozen=True, slots=True)
class Referrer:
    """Rows of `model` whose `column` names this entity's key: `what` in the 409."""

    model: Any
    column: str
    what: str


@dataclass(frozen=True, slots=True)
class Entity:
    name: str  # "shop": log actions "shop.create", targets "shop:12"
    plural: str  # "shops": the API path
    model: Any
    key: str  # the primary key attribute
    refs: tuple[Ref, ...] = ()
    referrers: tuple[Referrer, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()  # combinations (a None member: not checked)
    immutable: tuple[str, ...] = ()  # never changed by an update (the key given at creation)
    prepare: Callable[[Session, Values], None] | None = None  # check and complete a full row
    nodes: Callable[[Session, Any], set[str]] = lambda session, row: set()
    filters: Mapping[str, Callable[[Any], ColumnElement[bool]]] = field(default_factory=dict)
    sorts: tuple[str, ...] = ()
    private: tuple[str, ...] = ()  # masked in lists and in the operator log
    keeps: Callable[[Session, Any], str | None] | None = None  # why a row may not be deleted


class Kept(Conflict):
    """A delete refused because the row is still needed by the books (money, history)."""


def mask(value: object) -> object:
    """An identity number as lists show it: the last 4 characters only."""
    if not isinstance(value, str) or not value:
        return value
    return "*" * max(len(value) - 4, 0) + value[-4:]


def columns(entity: Entity) -> list[str]:
    return [c.key for c in inspect(entity.model).column_attrs]


def values_of(entity: Entity, row: Any) -> Values:
    return {name: getattr(row, name) for name in columns(entity)}


def view(entity: Entity, row: Any) -> Values:
    """The row as the operator log keeps it (private values masked)."""
    values = values_of(entity, row)
    for name in entity.private:
        values[name] = mask(values[name])
    return values


def target(entity: Entity, row: Any) -> str:
    return f"{entity.name}:{getattr(row, entity.key)}"


def get(session: Session, entity: Entity, key: object) -> Any:
    row = session.get(entity.model, key)
    if row is None:
        raise NotFound(f"{entity.name} {key!r} does not exist")
    return row


def list_query(entity: Entity, filters: Mapping[str, Any], sort: str | None) -> Select[Any]:
    """Rows matching every filter given (None: not filtered), in `sort` order ("-x": down)."""
    query = select(entity.model)
    for name, value in filters.items():
        if value is not None:
            query = query.where(entity.filters[name](value))
    key = getattr(entity.model, entity.key)
    if sort:
        column = getattr(entity.model, sort.removeprefix("-"))
        query = query.order_by(column.desc() if sort.startswith("-") else column.asc())
    return query.order_by(key)


def mark(session: Session, nodes: Iterable[str], now: dt.datetime) -> None:
    """Note that these nodes' configuration changed since the version they were sent."""
    for node in sorted(set(nodes)):
        row = session.get(NodeConfig, node)
        if row is None:
            session.add(NodeConfig(node=node, version=0, dirty=True, changed=now))
        else:
            row.dirty, row.changed = True, now
    session.flush()


def _check_refs(session: Session, entity: Entity, values: Values) -> None:
    for ref in entity.refs:
        value = values.get(ref.column)
        if value is not None and session.get(ref.model, value) is None:
            raise NotFound(f"{ref.what} {value!r} does not exist")


def _check_unique(session: Session, entity: Entity, values: Values, row: Any) -> None:
    for combination in entity.unique:
        wanted = {name: values.get(name) for name in combination}
        if any(v is None for v in wanted.values()):
            continue
        query = select(func.count()).select_from(entity.model)
        for name, value in wanted.items():
            query = query.where(getattr(entity.model, name) == value)
        if row is not None:
            query = query.where(getattr(entity.model, entity.key) != getattr(row, entity.key))
        if session.scalar(query):
            said = ", ".join(f"{k} {v!r}" for k, v in wanted.items())
            raise Conflict(f"a {entity.name} with {said} exists already")


def _check_nulls(entity: Entity, values: Values) -> None:
    for column in inspect(entity.model).columns:
        if not column.nullable and column.key in values and values[column.key] is None:
            if column.primary_key and column.autoincrement is True:
                continue
            raise Invalid(f"{column.key} may not be null")


def create(
    session: Session,
    entity: Entity,
    values: Mapping[str, Any],
    actor: oplog.Actor,
    now: dt.datetime,
) -> Any:
    values = dict(values)
    _check_refs(session, entity, values)
    if entity.prepare is not None:
        entity.prepare(session, values)
    _check_nulls(entity, values)
    key = values.get(entity.key)
    if key is not None and session.get(entity.model, key) is not None:
        raise Conflict(f"{entity.name} {key!r} exists already")
    _check_unique(session, entity, values, None)
    row = entity.model(**values)
    session.add(row)
    session.flush()
    mark(session, entity.nodes(session, row), now)
    oplog.record(
        session, actor, f"{entity.name}.create", target(entity, row), None, view(entity, row), now
    )
    return row


def update(  # noqa: PLR0917 (the row, the change, who and when)
    session: Session,
    entity: Entity,
    key: object,
    changes: Mapping[str, Any],
    actor: oplog.Actor,
    now: dt.datetime,
) -> Any:
    row = get(session, entity, key)
    fixed = sorted(set(changes) & {entity.key, *entity.immutable})
    if fixed:
        raise Invalid(f"{fixed[0]} cannot be changed; create a new {entity.name} instead")
    _check_nulls(entity, dict(changes))
    _check_refs(session, entity, dict(changes))
    before, nodes = view(entity, row), entity.nodes(session, row)
    values = {**values_of(entity, row), **changes}
    if entity.prepare is not None:
        entity.prepare(session, values)
    _check_nulls(entity, values)
    _check_unique(session, entity, values, row)
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
    session.flush()
    mark(session, nodes | entity.nodes(session, row), now)
    oplog.record(
        session, actor, f"{entity.name}.update", target(entity, row), before, view(entity, row), now
    )
    return row


def delete(
    session: Session, entity: Entity, key: object, actor: oplog.Actor, now: dt.datetime
) -> None:
    row = get(session, entity, key)
    for referrer in entity.referrers:
        count = session.scalar(
            select(func.count())
            .select_from(referrer.model)
            .where(getattr(referrer.model, referrer.column) == key)
        )
        if count:
            raise Conflict(
                f"{entity.name} {key!r} is still used by {count} {referrer.what}(s); "
                "remove or change those first"
            )
    why = entity.keeps(session, row) if entity.keeps is not None else None
    if why is not None:
        raise Kept(why)
    before, nodes = view(entity, row), entity.nodes(session, row)
    name = target(entity, row)
    session.delete(row)
    session.flush()
    mark(session, nodes, now)
    oplog.record(session, actor, f"{entity.name}.delete", name, before, None, now)
