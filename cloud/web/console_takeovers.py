"""The console's takeovers: a dead concentrator replaced by a new box, each form a client of the
API's own route (`cloud.api.takeovers`: the same service call and operator-log row).

    GET  /console/takeovers?old=…&new=…            "replace this box": the new box chosen, the
                                                   plan shown (balances, meter baselines,
                                                   subsidy periods); waiting and recent
                                                   takeovers with their state
    POST /console/takeovers                        OPERATIONS  → POST /concentrators/{old}/takeover
    POST /console/takeovers/{old}/approve|reject   admin       → POST …/takeover/approve|reject
    POST /console/takeovers/{old}/reissue          OPERATIONS  → POST …/takeover/reissue

A concentrator's row in the registry links here (`?old=`). The plan shown is what the approver
approves: approval is refused if the old node's head moved since it was asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api import takeovers as takeovers_api
from cloud.api.common import CloudKey, DbSession, Now
from cloud.db.models import Concentrator, NodeStatus
from cloud.db.operations import Takeover
from cloud.errors import CloudError
from cloud.keys import CLOUD_NODE
from cloud.operations import takeovers
from cloud.people.auth import OPERATIONS, STAFF, Principal, Role
from cloud.web import desk
from cloud.web.console import Form, Staff, allowed, frame
from cloud.web.console_desk import posted
from cloud.web.desk import Refusal
from cloud.web.i18n import Lang
from cloud.web.page_errors import PageError
from cloud.web.render import page
from ledger.accounts import AccountId, unit_of

router = APIRouter(prefix="/console", include_in_schema=False)

MAY = {"request": OPERATIONS, "decide": (Role.ADMIN,), "reissue": OPERATIONS}  # as the API's
DONE = ("requested", "approved", "rejected", "reissued")
Done = Annotated[str, Query(pattern="^(" + "|".join(DONE) + ")?$")]
NODE = r"^[A-Za-z0-9_.\-]{0,64}$"
NodeQuery = Annotated[str, Query(pattern=NODE)]
RECENT = 50
Reader = Annotated[Principal, allowed(*STAFF)]  # the plan shows balances: not for installers


@dataclass(frozen=True, slots=True)
class Shown:
    """One takeover as the page lists it: its row and its state (`takeovers.state`)."""

    row: Takeover
    state: str


@dataclass(frozen=True, slots=True)
class Balance:
    """One opening of a plan: the account, its pocket, the amount and its unit."""

    account: str
    pocket: str
    amount: int
    unit: str


def balances(plan: dict[str, list[dict[str, Any]]]) -> list[Balance]:
    """The plan's openings (`ledger.takeover.Plan.args`), as the page lists them."""
    out = []
    for opening in plan.get("openings", []):
        pocket = AccountId(str(opening["pocket"]))
        owner, _, name = pocket.partition(":")
        out.append(Balance(owner, name, int(opening["amount"]), unit_of(pocket).value))
    return out


def _nodes(session: Session, old: str) -> list[str]:
    """The boxes that may take over `old`: active, not the cloud, not `old`."""
    return list(
        session.scalars(
            select(Concentrator.node)
            .where(Concentrator.status == NodeStatus.ACTIVE.value,
                   Concentrator.node.not_in((CLOUD_NODE, old)))
            .order_by(Concentrator.node)
        )
    )  # fmt: skip


def _shown(session: Session, rows: list[Takeover]) -> list[Shown]:
    return [Shown(r, takeovers.state(r.status, takeovers.command_status(session, r))) for r in rows]


def _page(  # noqa: PLR0917 (the page's parts)
    request: Request, lang: tuple[str, bool], who: Principal, session: Session, old: str = "",
    new: str = "", *, done: str = "", refused: Refusal | None = None,
) -> Response:  # fmt: skip
    preview, problem = None, None
    if old and session.get(Concentrator, old) is None:
        raise PageError("takeover_no_node", 404)
    if old and new:
        try:
            preview = takeovers.preview(session, old, new)
        except CloudError as exc:
            problem = desk.refusal("plan", exc)
    other = "en" if lang[0] == "zh" else "zh"
    return page(
        request, "console/takeovers.html", lang,
        status=refused.status if refused else 200, **frame(request, who), old=old, new=new,
        candidates=_nodes(session, old) if old else [], preview=preview, problem=problem,
        balances=balances, read_at=dt.datetime.fromisoformat,
        waiting=_shown(session, takeovers.listed(session, waiting=True)),
        recent=_shown(session, takeovers.listed(session, limit=RECENT)), done=done,
        refused=refused, may={f: who.role in r for f, r in MAY.items()},
        lang_link=f"/console/takeovers?old={old}&new={new}&lang={other}",
    )  # fmt: skip


@router.get("/takeovers")
def takeovers_page(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Reader, session: DbSession, old: NodeQuery = "",
    new: NodeQuery = "", done: Done = "",
) -> Response:  # fmt: skip
    return _page(request, lang, who, session, old, new, done=done)


def _post(  # noqa: PLR0917 (the form's context)
    form: str, request: Request, lang: tuple[str, bool], who: Principal, session: Session,
    fields: dict[str, str], send: Callable[[], str], old: str = "",
) -> Response:  # fmt: skip
    """CSRF and role first; then `send` (the page to go to), or the page again with why not."""
    new = fields.get("new_node", "") if old else ""
    return posted(form, request, who.role in MAY[form], session, fields, send,
                  lambda refused: _page(request, lang, who, session, old, new,
                                        refused=refused))  # fmt: skip


@router.post("/takeovers")
def request_takeover(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, now: Now
) -> Response:  # fmt: skip
    old = form.get("old", "")

    def send() -> str:
        body = takeovers_api.TakeoverIn(new_node=form.get("new_node", ""))
        takeovers_api.take_over(node=old, body=body, who=who, response=Response(),
                                session=session, now=now)  # fmt: skip
        return "/console/takeovers?done=requested"

    return _post("request", request, lang, who, session, form, send, old)


@router.post("/takeovers/{old}/{verb}")
def decide_takeover(  # noqa: PLR0917 (FastAPI's dependencies)
    request: Request, lang: Lang, who: Staff, form: Form, session: DbSession, key: CloudKey,
    now: Now, old: Annotated[str, Path(pattern=NODE)],
    verb: Literal["approve", "reject", "reissue"],
) -> Response:  # fmt: skip
    def send() -> str:
        if verb == "approve":
            takeovers_api.approve(node=old, who=who, session=session, key=key, now=now)
        elif verb == "reject":
            takeovers_api.reject(node=old, who=who, session=session, now=now)
        else:
            takeovers_api.reissue(node=old, who=who, session=session, key=key, now=now)
        return f"/console/takeovers?done={verb}d"  # approved, rejected, reissued

    return _post("reissue" if verb == "reissue" else "decide", request, lang, who, session, form,
                 send)  # fmt: skip
