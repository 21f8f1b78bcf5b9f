"""`/console/batches`: batch control from the monitoring screen (`cloud.web.batches`).

    POST /console/batches/confirm         what a batch would do: how many meters, which shops,
                                          and (a trip) the power-off notice's reason and end
    POST /console/batches                 send it: relay commands (then 303 to its progress),
                                          or keep-power written on the accounts (a result page)
    GET  /console/batches/{id}            a relay batch's progress, each meter's outcome
    GET  /console/batches/{id}/panel      the progress panel alone: htmx asks for it every
                                          second while a meter is still on its way
    POST /console/batches/{id}/retry      the failed and timed-out meters again, a new batch
    GET  /console/batches/keep-power      a keep-power batch's progress (`keep_progress`): each
         ?accounts=…&after=…              meter's concentrator: the change waiting for a push,
                                          pushed as version N, acknowledged by the node
    GET  /console/batches/keep-power/panel   that panel alone, polled by htmx until settled
    POST /console/batches/keep-power/push    push the waiting concentrators (as
                                          `POST /concentrators/{node}/config`), for `FIELD`

Sending is for `OPERATIONS` (admin, operator), as `POST /relays`, `POST /notices/power-off`
and the registry's account writes are; the progress is for every staff role, as `/commands`.

Live updates are htmx polling of the panel, not a Server-Sent Events stream: an outcome
arrives in the database by the ingest of another request (no in-process event to wait on),
so a stream would poll the database anyway, holding a connection and a worker per open page;
a poll a second is one indexed read and a few kilobytes, stops by itself once every meter
is settled (the last panel comes without its trigger), and needs no script of ours.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from cloud.api import site_config as api_config
from cloud.api.common import CloudKey, DbSession, HeardSince, Now
from cloud.chains.rollups import SITE_ZONE
from cloud.db.models import NodeStatus
from cloud.errors import CloudError, NotFound
from cloud.ingest import concentrators
from cloud.notices import power_off
from cloud.notices.power_off import PowerOff, Reason
from cloud.operations import relays
from cloud.people.auth import FIELD, OPERATIONS, Principal
from cloud.registry import entities, site_config
from cloud.registry import rows as registry
from cloud.web import batches, keep_progress, monitoring, sessions
from cloud.web.batches import BatchRefused, Chosen
from cloud.web.console import Staff, allowed, frame
from cloud.web.forms import parse_form_lists, read_form
from cloud.web.i18n import Lang
from cloud.web.monitoring import MeterFilters
from cloud.web.page_errors import PageError
from cloud.web.render import page

router = APIRouter(prefix="/console", include_in_schema=False)

SHOWN_SHOPS = 40  # the confirm step lists this many shops, then says how many more
BatchPath = Annotated[str, Path(max_length=33 * batches.MAX_NODES)]


class BatchForm:
    """A batch form's fields, checked: the CSRF token, the ticked meters, the filter."""

    def __init__(self, fields: dict[str, str], ticked: list[str], heard_since: dt.datetime) -> None:
        self.fields, self.ticked = fields, ticked
        self.heard_since = heard_since  # the `state` filter's, as the monitoring page's

    def get(self, name: str) -> str:
        return self.fields.get(name, "").strip()

    def filters(self) -> MeterFilters:
        site = self.get("site")
        state = self.get("state")
        texts = [self.get(n) for n in ("q", "building", "floor", "shop")]
        if (site and not (site.isdigit() and 1 <= int(site) < 2**31)) or (
            state and state not in monitoring.STATES
        ) or any(len(t) > monitoring.MAX_Q for t in texts):  # fmt: skip
            raise BatchRefused("batch_bad_filter")
        q, building, floor, shop = texts
        site_id = int(site) if site else None
        return MeterFilters(q, site_id, building, floor, shop, state, self.heard_since)


async def _form(request: Request, heard_since: HeardSince) -> BatchForm:
    fields, ticked = parse_form_lists(await request.body(), request.headers.get("content-type", ""),
                                      repeated="meter", most=monitoring.MAX_SIZE)  # fmt: skip
    sessions.check_csrf(request, fields.get("csrf"))
    return BatchForm(fields, ticked, heard_since)


Form = Annotated[BatchForm, Depends(_form)]
PlainForm = Annotated[dict[str, str], Depends(read_form)]


Operator = Annotated[Principal, allowed(*OPERATIONS)]


def _chosen(session: Session, form: BatchForm) -> tuple[str, Chosen]:
    action = form.get("action")
    if action not in batches.ACTIONS:
        raise BatchRefused("batch_bad_action")
    return action, batches.choose(session, form.get("scope"), form.filters(), form.ticked)


def _other_lang(lang: tuple[str, bool]) -> str:
    """A page answering a POST switches language on the monitoring screen (a GET of the form's
    address would be refused)."""
    return "/console/monitoring?lang=" + ("en" if lang[0] == "zh" else "zh")


def _confirm(
    request: Request, lang: tuple[str, bool], who: Principal, form: BatchForm, now: dt.datetime,
    *, action: str = "", chosen: Chosen | None = None, error: BatchRefused | None = None,
) -> Response:  # fmt: skip
    until = form.get("until") or (now + dt.timedelta(hours=4)).astimezone(SITE_ZONE).strftime(
        "%Y-%m-%dT%H:00"
    )
    try:
        back = urlencode(form.filters().query())
    except BatchRefused:
        back = ""
    return page(request, "console/batch_confirm.html", lang, **frame(request, who),
                status=200 if error is None else 422, action=action, chosen=chosen,
                error=error, form=form, until=until, reasons=[r.value for r in Reason],
                shown=SHOWN_SHOPS, back=f"/console/monitoring?{back}" if back else
                "/console/monitoring", lang_link=_other_lang(lang))  # fmt: skip


@router.post("/batches/confirm")
def confirm_batch(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Operator, form: Form, session: DbSession, now: Now
) -> Response:
    try:
        action, chosen = _chosen(session, form)
    except BatchRefused as refused:
        return _confirm(request, lang, who, form, now, error=refused)
    return _confirm(request, lang, who, form, now, action=action, chosen=chosen)


def _power_off(
    form: BatchForm, session: Session, chosen: Chosen, now: dt.datetime
) -> list[PowerOff]:
    """The power-off announcements of a trip, one per site of its shops; checked first."""
    if form.get("reason") not in {r.value for r in Reason}:
        raise BatchRefused("batch_reason_missing")
    note = form.get("note")
    if len(note) > power_off.MAX_NOTE:
        raise BatchRefused("batch_note_long", most=power_off.MAX_NOTE)
    try:
        local = dt.datetime.strptime(form.get("until"), "%Y-%m-%dT%H:%M")
    except ValueError:
        raise BatchRefused("batch_until_bad") from None
    end = local.replace(tzinfo=SITE_ZONE).astimezone(dt.UTC)
    if end <= now:
        raise BatchRefused("batch_until_past")
    if end - now > power_off.MAX_SPAN:
        raise BatchRefused("batch_until_far", days=power_off.MAX_SPAN.days)
    orders = []
    for site, shops in batches.shops_by_site(session, chosen.accounts).items():
        if len(shops) > power_off.MAX_SHOPS:
            raise BatchRefused("batch_too_many_shops", most=power_off.MAX_SHOPS)
        orders.append(PowerOff(Reason(form.get("reason")), note, tuple(shops), now, end, site))
    return orders


@router.post("/batches")
def send_batch(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Operator, form: Form, session: DbSession, now: Now,
    key: CloudKey,
) -> Response:  # fmt: skip
    try:
        action, chosen = _chosen(session, form)
    except BatchRefused as refused:
        return _confirm(request, lang, who, form, now, error=refused)
    try:
        if form.get("count") != str(len(chosen.meters)):
            raise BatchRefused("batch_changed", count=len(chosen.meters))
        if action in batches.KEEP_ACTIONS:
            return _keep_power(request, lang, who, session, chosen, action, now)
        notices = _power_off(form, session, chosen, now) if action == "trip" else []
        commands = relays.order_and_log(session, chosen.addresses, action, who.actor, key, now)
        for order in notices:
            power_off.issue(session, order, who.actor, now)
    except BatchRefused as refused:
        session.rollback()
        return _confirm(request, lang, who, form, now, action=action, chosen=chosen,
                        error=refused)  # fmt: skip
    except CloudError as exc:  # a quarantined concentrator, a meter gone since: nothing sent
        session.rollback()
        problem = BatchRefused("batch_refused", why=str(exc))
        return _confirm(request, lang, who, form, now, action=action, chosen=chosen,
                        error=problem)  # fmt: skip
    return RedirectResponse(f"/console/batches/{batches.batch_id(commands)}", status_code=303)


def _keep_power(  # noqa: PLR0917 (the page's parts)
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, chosen: Chosen,
    action: str, now: dt.datetime,
) -> Response:  # fmt: skip
    """Keep-power on the meters' accounts, as `PATCH /registry/accounts/{id}` writes it (its
    operator log, its concentrators marked for the next configuration push)."""
    wanted = batches.KEEP_ACTIONS[action]
    current = batches.keep_power_of(session, chosen.accounts)
    changed = [a for a in chosen.accounts if current.get(a) != wanted]
    # each node's version before the change: a later one carries it (`keep_progress`)
    after = keep_progress.versions(session, keep_progress.nodes_of(session, changed))
    for account in changed:
        registry.update(session, entities.ACCOUNTS, account, {"keep_power": wanted}, who.actor,
                        now)  # fmt: skip
    vacant = sum(1 for m in chosen.meters if not m[2])
    same = len(chosen.accounts) - len(changed)
    kept = keep_progress.KeptBatch(tuple(changed), after) if changed else None
    return page(request, "console/batch_kept.html", lang, **frame(request, who), action=action,
                changed=changed, same=same, vacant=vacant, lang_link=_other_lang(lang),
                **_keep_context(session, who, kept))  # fmt: skip


def _keep_context(session: Session, who: Principal,
                  kept: keep_progress.KeptBatch | None) -> dict[str, Any]:  # fmt: skip
    if kept is None:
        return {"kept": None}
    return {"kept": kept, "kept_query": urlencode(kept.query()), "may_push": who.role in FIELD,
            "keep": keep_progress.progress(session, kept)}  # fmt: skip


KeptAccounts = Annotated[str, Query(max_length=65 * keep_progress.MAX_ACCOUNTS)]
KeptAfter = Annotated[str, Query(max_length=90 * batches.MAX_NODES)]


def _kept(accounts: str, after: str) -> keep_progress.KeptBatch:
    try:
        return keep_progress.parse(accounts, after)
    except NotFound:
        raise PageError("batch_not_found", 404) from None


@router.get("/batches/keep-power")
def keep_power_page(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, accounts: KeptAccounts,
    after: KeptAfter = "",
) -> Response:  # fmt: skip
    kept = _kept(accounts, after)
    return page(request, "console/batch_kept.html", lang, **frame(request, who), action="",
                changed=list(kept.accounts), same=0, vacant=0,
                **_keep_context(session, who, kept))  # fmt: skip


@router.get("/batches/keep-power/panel")
def keep_power_panel(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, session: DbSession, accounts: KeptAccounts,
    after: KeptAfter = "",
) -> Response:  # fmt: skip
    kept = _kept(accounts, after)
    return page(request, "console/_keep_panel.html", lang, **_keep_context(session, who, kept),
                csrf=sessions.csrf_token(sessions.token_of(request)))  # fmt: skip


@router.post("/batches/keep-power/push")
def keep_power_push(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, who: Annotated[Principal, allowed(*FIELD)], form: PlainForm,
    session: DbSession, now: Now, key: CloudKey, accounts: KeptAccounts, after: KeptAfter = "",
) -> Response:  # fmt: skip
    """Each concentrator the change still waits on gets its next version, as
    `POST /concentrators/{node}/config` sends it; one that cannot be sent (its configuration's
    problems, a quarantine) is left, and the page keeps showing it waiting."""
    sessions.check_csrf(request, form.get("csrf"))
    kept = _kept(accounts, after)
    for node in keep_progress.progress(session, kept).unpushed:
        problems = site_config.build(session, node).problems
        if problems or concentrators.get(session, node).status != NodeStatus.ACTIVE.value:
            continue
        api_config.push_config(node, session, now, key, who)
    query = urlencode(kept.query())
    return RedirectResponse(f"/console/batches/keep-power?{query}", status_code=303)


# -- progress ---------------------------------------------------------------------------------


def _progress(session: Session, batch: str) -> batches.Progress:
    try:
        return batches.progress(session, batch)
    except NotFound:
        raise PageError("batch_not_found", 404) from None


def _panel_context(who: Principal, batch: str, found: Any) -> dict[str, Any]:
    return {"batch": batch, "progress": found, "may_retry": who.role in OPERATIONS}


@router.get("/batches/{batch}")
def batch_page(
    request: Request, lang: Lang, who: Staff, session: DbSession, batch: BatchPath
) -> Response:
    found = _progress(session, batch)
    return page(request, "console/batch.html", lang, **frame(request, who),
                **_panel_context(who, batch, found))  # fmt: skip


@router.get("/batches/{batch}/panel")
def batch_panel(
    request: Request, lang: Lang, who: Staff, session: DbSession, batch: BatchPath
) -> Response:
    found = _progress(session, batch)
    return page(request, "console/_batch_panel.html", lang, **_panel_context(who, batch, found),
                csrf=sessions.csrf_token(sessions.token_of(request)))  # fmt: skip


@router.post("/batches/{batch}/retry")
def retry_batch(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, who: Operator, form: Form, session: DbSession, now: Now, key: CloudKey,
    batch: BatchPath,
) -> Response:  # fmt: skip
    found = _progress(session, batch)
    if not found.retryable:
        return RedirectResponse(f"/console/batches/{batch}", status_code=303)
    try:
        commands = relays.order_and_log(session, found.retryable, found.action, who.actor, key,
                                        now)  # fmt: skip
    except CloudError:  # a concentrator quarantined, a meter gone since: nothing is sent
        session.rollback()
        raise PageError("batch_retry_refused", 409) from None
    return RedirectResponse(f"/console/batches/{batches.batch_id(commands)}", status_code=303)
