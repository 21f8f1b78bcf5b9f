"""`/console/registry/…`: the registry and its rules on screens, over the services of the JSON
API (`cloud.api.registry`, `cloud.api.site_config`).

    GET  /console/registry                     the site tree: sites → buildings → floors
    GET  /console/registry/{kind}              a page of rows (filtered by site, building, floor)
    GET  /console/registry/{kind}/new   POST   a new row's form; creates it
    GET  /console/registry/{kind}/{key} POST   a row's form (a tariff: its day chart); changes it
    GET  /console/registry/{kind}/{key}/delete POST   asks to confirm; deletes it
                                               (`DELETE /registry/{kind}/{key}`)
    GET  /console/registry/nodes               each concentrator's pushed configuration version:
                                               acknowledged by the node, or pending
    POST /console/registry/nodes/{node}/push   push one node (`POST /concentrators/{node}/config`)
    POST /console/registry/nodes/push          push every changed node (`POST /registry/push`)
    POST /console/registry/nodes/register      register a concentrator (`POST /concentrators`)
    POST /console/registry/nodes/preassign     pre-assign a node id to a site before its box is
                                               provisioned (`POST /claims/nodes`: `reserved`)

A form's text becomes a body (`cloud.web.registry_fields`), is checked by the API's own body
model, and is written by `cloud.registry.rows` exactly as the API writes it (its checks, its
operator-log row, the nodes it marks). Who may write is the API's `Resource.writers`; every
staff role and installers may read. A refused form is shown again with the reasons in words,
nothing stored. A delete is the API's delete: refused (409, in words) while other rows still
name the row. Meters are registered and edited here, and each links to its monitoring page.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.api import claims as api_claims
from cloud.api import concentrators as api_nodes
from cloud.api import registry as api
from cloud.api import registry_bodies as bodies
from cloud.api import site_config as api_config
from cloud.api.common import CloudKey, DbSession, Now, count, silent_after
from cloud.db import models
from cloud.db import registry as reg
from cloud.db.claims import Claim
from cloud.db.presence import presence
from cloud.errors import Conflict, Invalid, NotFound, Quarantined
from cloud.ingest.claims import state_of
from cloud.keys import CLOUD_NODE
from cloud.people.auth import FIELD, OPERATIONS, Principal
from cloud.registry import entities, rows, site_config
from cloud.registry.subsidy_rules import known_subsidy_rules
from cloud.registry.values import DAY_MINUTES, PERIODS
from cloud.web import i18n, sessions
from cloud.web.console import Form, Staff, frame
from cloud.web.forms import read_lines_form
from cloud.web.i18n import Lang
from cloud.web.page_errors import PageError, Refused
from cloud.web.registry_fields import FORMS, FieldError, fen_text, kwh_text, parse, stored
from cloud.web.render import page, price_yuan

router = APIRouter(prefix="/console/registry", include_in_schema=False)

RESOURCES = {resource.entity.plural: resource for resource in api.RESOURCES}
PATCHES = {
    plural: bodies.patch_of(r.body, (r.entity.key, *r.entity.immutable))
    for plural, r in RESOURCES.items()
}
# The screens' tabs, in order: (kind, catalogue key).
TABS = (
    ("sites", "reg_sites"), ("buildings", "reg_buildings"), ("floors", "reg_floors"),
    ("shops", "reg_shops"), ("merchants", "reg_merchants"), ("account-types", "reg_account_types"),
    ("tariffs", "reg_tariffs"), ("subsidy-policies", "reg_subsidy_policies"),
    ("alarm-rules", "reg_alarm_rules"), ("arrears-policies", "reg_arrears_policies"),
    ("accounts", "reg_accounts"), ("meters", "reg_meters"),
)  # fmt: skip
KIND = "|".join(kind for kind, _ in TABS)
KindPath = Annotated[str, Path(pattern=f"^({KIND})$")]
KeyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
NodePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
NodeFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
RowFilter = Annotated[int | None, Query(ge=1, le=bodies.MAX_ID)]
PAGE_SIZE = 50
LinesForm = Annotated[dict[str, str], Depends(read_lines_form)]  # a form with text areas
COLOURS = {"sharp": "#a4262c", "peak": "#d9822b", "flat": "#0b6e4f", "valley": "#2f6fb0"}
# A pushed configuration's command, as the console says it.
DELIVERY = {"pending": "pending", "delivered": "pending", "applied": "acknowledged",
            "failed": "failed", "expired": "expired"}  # fmt: skip


# -- names of the places ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Places:
    """Every site's, building's and floor's name ("Market / B1 / 1F"): a few hundred rows."""

    sites: dict[int, str]
    buildings: dict[int, str]
    floors: dict[int, str]
    shops: dict[int, str] = field(default_factory=dict)  # numbers, of the listed rows' shops
    merchants: dict[int, str] = field(default_factory=dict)  # names, of the listed accounts'


def places(session: Session) -> Places:
    sites = dict(session.execute(select(reg.Site.id, reg.Site.name).order_by(reg.Site.name)).all())
    buildings = {
        b: f"{sites.get(s, '?')} / {name}"
        for b, s, name in session.execute(
            select(reg.Building.id, reg.Building.site_id, reg.Building.name)
        )
    }
    floors = {
        f: f"{buildings.get(b, '?')} / {name}"
        for f, b, name in session.execute(
            select(reg.Floor.id, reg.Floor.building_id, reg.Floor.name)
        )
    }
    return Places(sites, _by_name(buildings), _by_name(floors))


def _by_name(table: dict[int, str]) -> dict[int, str]:
    return dict(sorted(table.items(), key=lambda item: item[1]))


def _options(table: dict[int, str]) -> list[tuple[str, str]]:
    return [(str(k), v) for k, v in table.items()]


def choices(session: Session, known: Places) -> dict[str, list[tuple[str, str]]]:
    tariffs = session.execute(select(reg.Tariff.code, reg.Tariff.name).order_by(reg.Tariff.code))
    nodes = session.execute(
        select(models.Concentrator.node, models.Concentrator.name)
        .where(models.Concentrator.node != CLOUD_NODE)
        .order_by(models.Concentrator.node)
    )
    return {
        "sites": _options(known.sites),
        "buildings": _options(known.buildings),
        "floors": _options(known.floors),
        "tariffs": [(code, f"{code} {name}".strip()) for code, name in tariffs],
        "nodes": [(node, f"{node} {name}".strip()) for node, name in nodes],
        "rules": [(rule, rule) for rule in known_subsidy_rules()],
        "shops": [(str(shop), f"{number} · {known.floors.get(floor, '?')}") for shop, number, floor
                  in session.execute(select(reg.Shop.id, reg.Shop.number, reg.Shop.floor_id)
                                     .order_by(reg.Shop.number))],
        "merchants": [(str(m), name) for m, name in session.execute(
            select(reg.Merchant.id, reg.Merchant.name).order_by(reg.Merchant.name))],
        "account_types": [(code, f"{code} {name}") for code, name in session.execute(
            select(reg.AccountType.code, reg.AccountType.name).order_by(reg.AccountType.code))],
    }  # fmt: skip


# -- the lists' columns -------------------------------------------------------------------------

Cell = Callable[[Any, Places, i18n.Translate], str]


def _tariff_summary(row: reg.Tariff, known: Places, t: i18n.Translate) -> str:
    definition = row.definition
    if row.kind == "flat":
        return t("price_per_kwh", price=price_yuan(definition["price"]))
    if row.kind == "tou":
        return " · ".join(f"{t('period_' + p)} {price_yuan(v)}"
                          for p, v in definition["prices"].items())  # fmt: skip
    return " · ".join(f"≤{kwh_text(up)} {t('kwh_unit')}: {price_yuan(v)}" if up is not None
                      else f"{t('above')}: {price_yuan(v)}"
                      for up, v in definition["tiers"])  # fmt: skip


def _kwh(table: dict[str, int]) -> str:
    return ", ".join(f"{k} {kwh_text(v)}" for k, v in table.items()) or "—"


COLUMNS: dict[str, tuple[tuple[str, Cell], ...]] = {
    "sites": (
        ("f_name", lambda r, p, t: r.name),
        ("f_time_zone", lambda r, p, t: r.time_zone),
        ("f_default_tariff", lambda r, p, t: r.tariff or "—"),
        ("f_print_receipts", lambda r, p, t: t("yes") if r.print_receipts else t("no")),
    ),
    "buildings": (("f_name", lambda r, p, t: r.name),
                  ("f_site", lambda r, p, t: p.sites.get(r.site_id, "?"))),
    "floors": (("f_name", lambda r, p, t: r.name),
               ("f_building", lambda r, p, t: p.buildings.get(r.building_id, "?"))),
    "shops": (
        ("f_shop_number", lambda r, p, t: r.number),
        ("f_floor", lambda r, p, t: p.floors.get(r.floor_id, "?")),
        ("f_category", lambda r, p, t: r.category),
        ("f_area", lambda r, p, t: r.area_m2 or "—"),
        ("f_node", lambda r, p, t: r.node or "—"),
    ),
    "merchants": (
        ("f_name", lambda r, p, t: r.name),
        ("f_phone", lambda r, p, t: r.phone or "—"),
        ("f_id_number", lambda r, p, t: str(rows.mask(r.id_number) or "—")),
    ),
    "account-types": (("f_code", lambda r, p, t: r.code), ("f_name", lambda r, p, t: r.name)),
    "tariffs": (
        ("f_code", lambda r, p, t: r.code),
        ("f_name", lambda r, p, t: r.name or "—"),
        ("f_tariff_kind", lambda r, p, t: i18n.term(t, "kind", r.kind)),
        ("f_prices", _tariff_summary),
    ),
    "subsidy-policies": (
        ("f_site", lambda r, p, t: p.sites.get(r.site_id, "?")),
        ("f_by_type", lambda r, p, t: _kwh(r.by_type)),
        ("f_by_category", lambda r, p, t: _kwh(r.by_category)),
        ("f_rule", lambda r, p, t: r.rule or "—"),
        ("f_month_end", lambda r, p, t: i18n.term(t, "month_end", r.month_end)),
    ),
    "alarm-rules": (
        ("f_site", lambda r, p, t: p.sites.get(r.site_id, "?")),
        ("f_alarm_at", lambda r, p, t: r.alarm_at),
        ("f_below_yuan", lambda r, p, t: "—" if r.below_fen is None else fen_text(r.below_fen)),
        ("f_below_days", lambda r, p, t: "—" if r.below_days is None else str(r.below_days)),
        ("f_windows", lambda r, p, t: str(len(r.windows))),
    ),
    "arrears-policies": (
        ("f_site", lambda r, p, t: p.sites.get(r.site_id, "?")),
        ("f_arrears_mode", lambda r, p, t: i18n.term(t, "mode", r.mode)),
        ("f_cut_off", lambda r, p, t: r.cut_off),
        ("f_friendly_hours",
         lambda r, p, t: ", ".join(f"{a}-{b}" for a, b in r.friendly_hours) or "—"),
        ("f_holidays", lambda r, p, t: str(len(r.holidays))),
    ),
    "accounts": (
        ("account_id", lambda r, p, t: r.id),
        ("f_merchant", lambda r, p, t: p.merchants.get(r.merchant_id, "?")),
        ("f_shop_number", lambda r, p, t: p.shops.get(r.shop_id, "—")),
        ("f_account_type", lambda r, p, t: r.account_type),
        ("f_tariff", lambda r, p, t: r.tariff or "—"),
        ("f_credit_limit", lambda r, p, t: fen_text(r.credit_limit_fen)),
        ("f_keep_power", lambda r, p, t: t("yes") if r.keep_power else t("no")),
    ),
    "meters": (
        ("col_meter", lambda r, p, t: r.address),
        ("f_shop_number", lambda r, p, t: p.shops.get(r.shop_id, "?")),
        ("f_protocol", lambda r, p, t: r.protocol),
        ("f_bus", lambda r, p, t: r.bus),
        ("f_node", lambda r, p, t: r.node or "—"),
        ("f_multiplier", lambda r, p, t: str(r.multiplier)),
    ),
}  # fmt: skip


# -- the pages ----------------------------------------------------------------------------------


def _resource(kind: str) -> api.Resource:
    return RESOURCES[kind]


def _may_write(who: Principal, kind: str) -> bool:
    return kind in FORMS and who.role in _resource(kind).writers


def _writer(who: Principal, roles: tuple[Any, ...]) -> None:
    if who.role not in roles:  # the refusal page (403) in the console's frame
        raise Refused(who)


def _key(kind: str, text: str) -> object:
    resource = _resource(kind)
    if resource.entity.key != "id" or "id" in resource.body.model_fields:  # a typed key: text
        return text
    if not text.isdigit():
        raise PageError("registry_not_found", 404)
    return int(text)


def _row(session: Session, kind: str, key: object) -> Any:
    try:
        return rows.get(session, _resource(kind).entity, key)
    except NotFound:
        raise PageError("registry_not_found", 404) from None


def _screen(request: Request, lang: tuple[str, bool], who: Principal, template: str, *,
            tab: str, status: int = 200, **context: Any) -> Response:  # fmt: skip
    other = "en" if lang[0] == "zh" else "zh"
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    # A push is answered in place: its language link goes to the page that has a GET.
    path = "/console/registry/nodes" if tab == "nodes" else request.url.path
    link = path + "?" + urlencode({**query, "lang": other})
    return page(request, template, lang, status=status, **frame(request, who), tabs=TABS,
                tab=tab, lang_link=link, **context)  # fmt: skip


def _tree(session: Session) -> list[dict[str, Any]]:
    """Sites → buildings → floors, each floor with its shop count (empty ones too)."""
    counts = dict(session.execute(
        select(reg.Shop.floor_id, func.count()).group_by(reg.Shop.floor_id)
    ).all())  # fmt: skip
    buildings = session.execute(select(reg.Building).order_by(reg.Building.name)).scalars().all()
    floors = session.execute(select(reg.Floor).order_by(reg.Floor.name)).scalars().all()
    sites = session.execute(select(reg.Site).order_by(reg.Site.name)).scalars().all()
    return [{
        "site": site,
        "buildings": [{
            "building": b,
            "floors": [(f, counts.get(f.id, 0)) for f in floors if f.building_id == b.id],
        } for b in buildings if b.site_id == site.id],
    } for site in sites]  # fmt: skip


@router.get("")
def tree(request: Request, lang: Lang, who: Staff, session: DbSession) -> Response:
    return _screen(request, lang, who, "console/registry_tree.html", tab="", tree=_tree(session),
                   write=who.role in _resource("buildings").writers)  # fmt: skip


@router.get("/nodes")
def nodes(request: Request, lang: Lang, who: Staff, session: DbSession, now: Now,  # noqa: PLR0917
          pushed: Annotated[str | None, Query(max_length=100)] = None,
          registered: NodeFilter = None, preassigned: NodeFilter = None) -> Response:  # fmt: skip
    return _nodes_page(request, lang, who, session, now, pushed=pushed, registered=registered,
                       preassigned=preassigned)  # fmt: skip


def _claims_by_node(session: Session, now: dt.datetime) -> dict[str, str]:
    """The state of the newest claim bound to each pre-assigned node (`GET /claims`' `state`)."""
    bound = session.scalars(select(Claim).where(Claim.for_node.is_not(None)).order_by(Claim.id))
    return {c.for_node: state_of(c, now) for c in bound if c.for_node is not None}


def _nodes_page(request: Request, lang: tuple[str, bool], who: Principal, session: Session,
                now: dt.datetime, *,
                status: int = 200, pushed: str | None = None, problem: str | None = None,
                registered: str | None = None, new_node: dict[str, str] | None = None,
                new_errors: dict[str, str] | None = None, new_problem: str | None = None,
                preassigned: str | None = None, reserve: dict[str, str] | None = None,
                reserve_errors: dict[str, str] | None = None,
                reserve_problem: str | None = None) -> Response:  # fmt: skip
    found = session.execute(
        select(models.Concentrator, reg.NodeConfig, models.Command.status)
        .outerjoin(reg.NodeConfig, reg.NodeConfig.node == models.Concentrator.node)
        .outerjoin(models.Command, models.Command.id == reg.NodeConfig.command_id)
        .where(models.Concentrator.node != CLOUD_NODE)
        .order_by(models.Concentrator.node)
    ).all()
    claimed = _claims_by_node(session, now)
    sites = dict(session.execute(select(reg.Site.id, reg.Site.name).order_by(reg.Site.name)).all())
    t = i18n.translator(lang[0])
    heard_since = now - silent_after(request)
    listed = [{
        "node": c, "config": cfg, "delivery": DELIVERY.get(state or "", "never"),
        "presence": presence(c.online, c.last_seen, heard_since).value,
        "problems": [_problem_words(t, p) for p in site_config.build(session, c.node).problems],
        "claim": claimed.get(c.node), "site": sites.get(c.site_id or 0, ""),
    } for c, cfg, state in found]  # fmt: skip
    return _screen(request, lang, who, "console/registry_nodes.html", tab="nodes", status=status,
                   nodes=listed, pushed=pushed, problem=problem, registered=registered,
                   new_node=new_node or {}, new_errors=new_errors or {},
                   new_problem=new_problem, write=who.role in FIELD,
                   reserve_write=who.role in OPERATIONS, sites=list(sites.items()),
                   preassigned=preassigned, reserve=reserve or {},
                   reserve_errors=reserve_errors or {},
                   reserve_problem=reserve_problem,
                   silent_minutes=int(silent_after(request).total_seconds() // 60))  # fmt: skip


def _problem_words(t: i18n.Translate, problem: site_config.Problem) -> str:
    return t(f"cfg_problem_{problem.code}", **dict(problem.facts))


def _not_pushed(t: i18n.Translate, session: Session, node: str) -> str:
    """Why `node` is not pushed, in the page's language: its configuration's problems, and its
    state unless it is active (pre-assigned, quarantined)."""
    reasons = [_problem_words(t, p) for p in site_config.build(session, node).problems]
    found = session.get(models.Concentrator, node)
    if found is not None and found.status != models.NodeStatus.ACTIVE.value:
        reasons.append(i18n.term(t, "node_state", found.status))
    return t("reasons_joined").join(reasons)


@router.post("/nodes/push")
def push_changed(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    key: CloudKey,
    form: Form,
) -> Response:
    sessions.check_csrf(request, form.get("csrf"))
    _writer(who, FIELD)
    done = api_config.push_marked(session, now, key, who)
    t = i18n.translator(lang[0])
    told = [f"{p.node} v{p.version}" for p in done.pushed] + [
        f"{s.node}: {_not_pushed(t, session, s.node) or s.problem}" for s in done.skipped
    ]
    return _nodes_page(request, lang, who, session, now, pushed=", ".join(told) or "-")


@router.post("/nodes/register")
def register_node(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    form: LinesForm,
) -> Response:
    """A concentrator and its ledger's public key, registered by the API's own route."""
    sessions.check_csrf(request, form.get("csrf"))
    _writer(who, FIELD)
    sent = {name: form.get(name, "").strip() for name in ("node", "name", "public_key")}
    t = i18n.translator(lang[0])
    try:
        body = api_nodes.RegisterConcentrator.model_validate(sent)
        api_nodes.register_concentrator(body, who, session, now, now - silent_after(request))
    except (ValidationError, Invalid, Conflict) as exc:
        session.rollback()
        hints = {"node": "h_code", "name": "", "public_key": "h_public_key"}
        errors, problem = _refusal(t, exc, hints)
        if isinstance(exc, Conflict):
            problem = t("node_key_conflict", detail=str(exc))
        return _nodes_page(request, lang, who, session, now,
                           status=409 if isinstance(exc, Conflict) else 422, new_node=sent,
                           new_errors=errors,
                           new_problem=problem or t("registry_fix"))  # fmt: skip
    return RedirectResponse(f"/console/registry/nodes?registered={quote(body.node)}",
                            status_code=303)  # fmt: skip


@router.post("/nodes/preassign")
def preassign_node(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    form: Form,
) -> Response:
    """A node id reserved for a site before its box is provisioned, by the API's own route
    (`POST /claims/nodes`: operators and admins; logged)."""
    sessions.check_csrf(request, form.get("csrf"))
    _writer(who, OPERATIONS)
    sent = {name: form.get(name, "").strip() for name in ("site", "node", "name")}
    t = i18n.translator(lang[0])
    try:
        site: int | str = int(sent["site"]) if sent["site"].isdigit() else sent["site"]
        body = api_claims.PreassignIn.model_validate({**sent, "site": site})
        api_claims.preassign_node(body, request, who, session, now)
    except (ValidationError, Invalid, Conflict, NotFound) as exc:
        session.rollback()
        errors, problem = _refusal(t, exc, {"site": "", "node": "h_code", "name": ""})
        code = 409 if isinstance(exc, Conflict) else 404 if isinstance(exc, NotFound) else 422
        return _nodes_page(request, lang, who, session, now, status=code, reserve=sent,
                           reserve_errors=errors,
                           reserve_problem=problem or t("registry_fix"))  # fmt: skip
    return RedirectResponse(f"/console/registry/nodes?preassigned={quote(body.node)}",
                            status_code=303)  # fmt: skip


@router.post("/nodes/{node}/push")
def push_one(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    key: CloudKey,
    node: NodePath,
    form: Form,
) -> Response:
    sessions.check_csrf(request, form.get("csrf"))
    _writer(who, FIELD)
    try:
        done = api_config.push_config(node, session, now, key, who)
    except NotFound:
        raise PageError("registry_not_found", 404) from None
    except (Invalid, Quarantined) as refused:
        session.rollback()
        why = _not_pushed(i18n.translator(lang[0]), session, node) or str(refused)
        return _nodes_page(request, lang, who, session, now, status=422, problem=why)
    return RedirectResponse(f"/console/registry/nodes?pushed={quote(f'{node} v{done.version}')}",
                            status_code=303)  # fmt: skip


@router.get("/{kind}")
def listing(  # noqa: PLR0917 (the list's filters)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    kind: KindPath,
    site: RowFilter = None,
    building: RowFilter = None,
    floor: RowFilter = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    deleted: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = None,
) -> Response:
    entity = _resource(kind).entity
    wanted = {"site": site, "building": building, "floor": floor}
    chosen = {name: value for name, value in wanted.items() if name in entity.filters}
    query = rows.list_query(entity, chosen, None)
    total = count(session, query)
    found = session.scalars(query.limit(PAGE_SIZE).offset(offset)).all()
    known, t = places(session), i18n.translator(lang[0])
    if kind in {"meters", "accounts"}:
        shops = select(reg.Shop.id, reg.Shop.number).where(
            reg.Shop.id.in_({row.shop_id for row in found})
        )
        known = replace(known, shops=dict(session.execute(shops).all()))
    if kind == "accounts":
        merchants = select(reg.Merchant.id, reg.Merchant.name).where(
            reg.Merchant.id.in_({row.merchant_id for row in found})
        )
        known = replace(known, merchants=dict(session.execute(merchants).all()))
    columns = COLUMNS[kind]
    table = [(str(getattr(row, entity.key)), [cell(row, known, t) for _, cell in columns])
             for row in found]  # fmt: skip
    filters = {k: v for k, v in chosen.items() if v is not None}

    def link(at: int) -> str:
        return f"/console/registry/{kind}?" + urlencode({**filters, "offset": at})

    return _screen(request, lang, who, "console/registry_list.html", tab=kind, kind=kind,
                   heads=[key for key, _ in columns], table=table, total=total, offset=offset,
                   size=PAGE_SIZE, link=link, write=_may_write(who, kind),
                   editable=kind in FORMS, filters=filters, places=known, deleted=deleted,
                   site_filter="site" in entity.filters)  # fmt: skip


def _form_page(request: Request, lang: tuple[str, bool], who: Principal, session: Session,
               kind: str, *, key: str | None, values: dict[str, str], status: int = 200,
               errors: dict[str, str] | None = None, problem: str | None = None,
               saved: bool = False, chart: str | None = None,
               preview: list[Any] | None = None) -> Response:  # fmt: skip
    known = places(session)
    site = values.get("site_id", "")
    heading = values.get("name") or known.sites.get(int(site) if site.isdigit() else 0) or key
    return _screen(request, lang, who, "console/registry_form.html", tab=kind, status=status,
                   kind=kind, form=FORMS[kind], key=key, values=values, errors=errors or {},
                   problem=problem, saved=saved, chart=chart, write=_may_write(who, kind),
                   choices=choices(session, known), heading=heading, preview=preview,
                   fixed=(_resource(kind).entity.key,) if key else ())  # fmt: skip


def _editable(kind: str) -> None:
    if kind not in FORMS:
        raise PageError("registry_not_found", 404)


@router.get("/{kind}/new")
def new_form(  # noqa: PLR0917 (a new row may be started from its place or from a tariff)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    kind: KindPath,
    site_id: RowFilter = None,
    building_id: RowFilter = None,
    floor_id: RowFilter = None,
    copy: Annotated[str | None, Query(alias="from", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = None,
) -> Response:
    _editable(kind)
    values: dict[str, str] = {"time_zone": "Asia/Shanghai", "category": "general",
                              "issue_day": "1", "issue_at": "00:00", "alarm_at": "09:00",
                              "cut_off": "10:00", "kind": "flat"}  # fmt: skip
    if copy is not None and kind == "tariffs":  # a new version of a tariff: its copy
        values = stored(FORMS[kind], _row(session, kind, copy), lang[0])
        values["code"] = _next_code(session, copy)
    given = {"site_id": site_id, "building_id": building_id, "floor_id": floor_id}
    values.update({k: str(v) for k, v in given.items() if v is not None})
    return _form_page(request, lang, who, session, kind, key=None, values=values)


def _next_code(session: Session, code: str) -> str:
    """`tou` → `tou-v2`, `tou-v2` → `tou-v3`: the first code not taken."""
    stem, _, number = code.rpartition("-v")
    base, n = (stem, int(number)) if stem and number.isdigit() else (code, 1)
    while True:
        n += 1
        candidate = f"{base}-v{n}"[:64]
        if session.get(reg.Tariff, candidate) is None:
            return candidate


def _refusal(
    t: i18n.Translate, exc: Exception, hints: dict[str, str]
) -> tuple[dict[str, str], str | None]:
    """(field → words, words for the whole form) of a body model's or a service's refusal;
    `hints` are the form's fields (name → the catalogue key of its hint, or "")."""
    if isinstance(exc, ValidationError):
        fields: dict[str, str] = {}
        rest = []
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            most = (error.get("ctx") or {}).get("max_length")
            least = (error.get("ctx") or {}).get("min_length")
            if error["type"] == "string_too_long" and most:
                words = t("f_too_long", most=most)
            elif error["type"] == "string_too_short" and least:
                words = t("f_too_short", least=least)
            elif error["type"] == "string_pattern_mismatch" and hints.get(where):
                words = t("f_format", hint=t(hints[where]))
            else:
                words = t("f_refused", detail=error["msg"])
            if where in hints:
                fields.setdefault(where, words)
            else:
                rest.append(f"{where}: {error['msg']}")
        return fields, t("registry_invalid", detail="; ".join(rest)) if rest else None
    said: dict[type[Exception], str] = {Conflict: "registry_conflict", NotFound: "registry_missing"}
    key = said.get(type(exc))
    return {}, t(key or "registry_invalid", detail=str(exc))


def _words(t: i18n.Translate, errors: dict[str, FieldError]) -> dict[str, str]:
    return {name: t(e.key, **e.values) for name, e in errors.items()}


def _save(request: Request, lang: tuple[str, bool], who: Principal, session: Session, *,
          now: Any, kind: str, form: dict[str, str], key: str | None) -> Response:  # fmt: skip
    """Create (`key` None) or change a row from a posted form, as the API does."""
    sessions.check_csrf(request, form.get("csrf"))
    _editable(kind)
    resource = _resource(kind)
    _writer(who, resource.writers)
    entity, layout = resource.entity, FORMS[kind]
    t = i18n.translator(lang[0])
    skip = (entity.key, *entity.immutable) if key is not None else ()
    values, refused = parse(layout, form, skip)
    sent = {f.name: form.get(f.name, "") for f in layout.fields}
    errors, problem = _words(t, refused), None
    if not refused:
        try:
            if key is None:
                body = resource.body.model_validate(values)
                row = rows.create(session, entity, body.model_dump(), who.actor, now)
            else:
                patch = PATCHES[kind].model_validate(values)
                changes = patch.model_dump(exclude_unset=True)
                row = rows.update(session, entity, _key(kind, key), changes, who.actor, now)
        except (ValidationError, Invalid, NotFound, Conflict) as exc:
            session.rollback()
            if isinstance(exc, NotFound) and key is not None:
                _row(session, kind, _key(kind, key))  # the row itself is gone: 404
            errors, problem = _refusal(t, exc, {f.name: f.hint for f in layout.fields})
        else:
            target = quote(str(getattr(row, entity.key)), safe="")
            return RedirectResponse(f"/console/registry/{kind}/{target}?saved=1",
                                    status_code=303)  # fmt: skip
    if key is not None:
        sent[entity.key] = key
    return _form_page(request, lang, who, session, kind, key=key, values=sent, status=422,
                      errors=errors, problem=problem or t("registry_fix"))  # fmt: skip


@router.post("/{kind}/new")
def create(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    kind: KindPath,
    form: LinesForm,
) -> Response:
    return _save(request, lang, who, session, now=now, kind=kind, form=form, key=None)


def day_chart(row: reg.Tariff, t: i18n.Translate) -> str | None:
    """A time-of-use tariff's day as the chart draws it: each period's price and its spans
    in hours (a range past midnight is two spans)."""
    if row.kind != "tou":
        return None
    spans: dict[str, list[list[float]]] = {p: [] for p in row.definition["prices"]}
    for start, end, period in row.definition["ranges"]:
        a, b = (int(x[:2]) * 60 + int(x[3:]) for x in (start, end))
        pieces = [(a, b)] if b > a else [(a, DAY_MINUTES), (0, b)]
        spans[period] += [[s / 60, e / 60] for s, e in pieces if e > s]
    periods = [{"name": t(f"period_{p}"), "price": price_yuan(v), "colour": COLOURS[p],
                "spans": sorted(spans[p])}
               for p in PERIODS if (v := row.definition["prices"].get(p)) is not None]  # fmt: skip
    return json.dumps({"periods": periods, "unit": t("yuan_per_kwh"), "hour": t("hour")},
                      ensure_ascii=False)  # fmt: skip


def subsidy_preview(session: Session, site: int) -> list[tuple[str, str, str, str, int]]:
    """(account, shop, category, m², monthly Wh) of each account of the site: the `by_account`
    amounts its nodes' documents carry (`site_config.build`), so what the rule decides."""
    amounts: dict[str, int] = {}
    for node in sorted(entities.nodes_of_sites(session, [site])):
        for rule in site_config.build(session, node).documents.get("rules", []):
            if rule.get("id") == "subsidy":
                amounts.update(rule["by_account"])
    shops = session.execute(
        select(reg.Account.id, reg.Shop.number, reg.Shop.category, reg.Shop.area_m2)
        .join(reg.Shop, reg.Shop.id == reg.Account.shop_id)
        .where(reg.Account.id.in_(amounts))
        .order_by(reg.Shop.number)
    ).all()
    return [(a, number, category, area or "—", amounts[a]) for a, number, category, area in shops]


@router.get("/{kind}/{key}")
def edit_form(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    kind: KindPath,
    key: KeyPath,
    saved: Annotated[int | None, Query(ge=1, le=1)] = None,
) -> Response:
    _editable(kind)
    row = _row(session, kind, _key(kind, key))
    values = stored(FORMS[kind], row, lang[0])
    values[_resource(kind).entity.key] = key
    chart = day_chart(row, i18n.translator(lang[0])) if kind == "tariffs" else None
    preview = subsidy_preview(session, row.site_id) if kind == "subsidy-policies" else None
    return _form_page(request, lang, who, session, kind, key=key, values=values,
                      saved=bool(saved), chart=chart, preview=preview)  # fmt: skip


@router.post("/{kind}/{key}")
def change(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    kind: KindPath,
    key: KeyPath,
    form: LinesForm,
) -> Response:
    return _save(request, lang, who, session, now=now, kind=kind, form=form, key=key)


def _delete_page(request: Request, lang: tuple[str, bool], who: Principal, session: Session, *,
                 kind: str, key: str, status: int = 200,
                 problem: str | None = None) -> Response:  # fmt: skip
    _editable(kind)
    row = _row(session, kind, _key(kind, key))
    values = stored(FORMS[kind], row, lang[0])
    t = i18n.translator(lang[0])
    named = choices(session, places(session))  # a row a select names, by its name

    def said(f: Any) -> str:
        if f.widget == "check":
            return t("yes") if values[f.name] == "on" else t("no")
        return dict(named.get(f.rows, [])).get(values[f.name], values[f.name])

    shown = [(t(f.label), said(f)) for f in FORMS[kind].fields
             if f.widget != "lines" and (values.get(f.name) or f.widget == "check")]  # fmt: skip
    return _screen(request, lang, who, "console/registry_delete.html", tab=kind, status=status,
                   kind=kind, key=key, shown=shown, problem=problem,
                   write=_may_write(who, kind))  # fmt: skip


@router.get("/{kind}/{key}/delete")
def delete_form(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, kind: KindPath, key: KeyPath
) -> Response:
    return _delete_page(request, lang, who, session, kind=kind, key=key)


@router.post("/{kind}/{key}/delete")
def delete(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request,
    lang: Lang,
    who: Staff,
    session: DbSession,
    now: Now,
    kind: KindPath,
    key: KeyPath,
    form: Form,
) -> Response:
    """The API's delete (`rows.delete`: its check that nothing refers to the row, its log)."""
    sessions.check_csrf(request, form.get("csrf"))
    _editable(kind)
    resource = _resource(kind)
    _writer(who, resource.writers)
    try:
        rows.delete(session, resource.entity, _key(kind, key), who.actor, now)
    except NotFound:
        raise PageError("registry_not_found", 404) from None
    except Conflict as exc:
        session.rollback()
        t = i18n.translator(lang[0])
        word = "registry_kept" if isinstance(exc, rows.Kept) else "registry_in_use"
        return _delete_page(request, lang, who, session, kind=kind, key=key, status=409,
                            problem=t(word, detail=str(exc)))  # fmt: skip
    return RedirectResponse(f"/console/registry/{kind}?deleted={quote(key, safe='')}",
                            status_code=303)  # fmt: skip
