"""`/concentrators/{node}/commissioning`: the signed reports of a building's check before
handover (`voltbook-edge commission`, uploaded by `voltbook-fw commission --upload`).

    POST /concentrators/{node}/commissioning          the signed report (field roles: admin,
                                                      operator, installer); taken only if the
                                                      node's registered key signed it; 201 with
                                                      `new` false when it was taken before;
                                                      operator-logged `commissioning.upload`
    GET  /concentrators/{node}/commissioning/latest   the newest by its time (staff and
                                                      installers); `format=pdf` the page the
                                                      building manager signs, `lang` zh | en

See `cloud.ingest.commissioning` (checks, registry comparison) and
`cloud.reports.commissioning` (the PDF).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import Field, StrictStr

from cloud.api.auth import allow
from cloud.api.common import DbSession, Now, Out, StoredTime, StrictBody, answers
from cloud.api.guards import client_address
from cloud.db.commissioning import CommissioningReport
from cloud.ingest import commissioning
from cloud.people import oplog
from cloud.people.auth import FIELD, READ_ALL, Principal
from cloud.reports import commissioning as commissioning_pdf
from cloud.reports import pdf

router = APIRouter(prefix="/concentrators", tags=["concentrators"])
NodePath = Annotated[str, Path(max_length=64, description="node id, e.g. market-1")]
Format = Annotated[Literal["json", "pdf"], Query(alias="format")]
Lang = Annotated[Literal["zh", "en"], Query(description="the PDF's language: zh or en")]


class SignedReportIn(StrictBody):
    report: dict[str, Any] = Field(description="the report (ledger.commissioning), as signed")
    key_id: Annotated[StrictStr, Field(max_length=16)]
    signature: Annotated[StrictStr, Field(max_length=128, description="Ed25519, 128 hex")]


class CommissioningOut(Out):
    id: int
    node: str
    new: bool = Field(description="false: this very report was uploaded before")
    taken_at: StoredTime
    uploaded: StoredTime
    uploaded_by: str
    key_id: str
    digest: str = Field(description="SHA-256 of the report's canonical JSON, hex")
    clean: bool = Field(description="nothing to fix: every meter found, read, relay obeyed")
    registry: dict[str, Any] = Field(description="{registered, missing, unknown} at upload")
    report: dict[str, Any]


def _out(row: CommissioningReport, *, new: bool) -> CommissioningOut:
    return CommissioningOut(
        id=row.id,
        node=row.node,
        new=new,
        taken_at=row.taken_at,
        uploaded=row.uploaded,
        uploaded_by=row.uploaded_by,
        key_id=row.key_id,
        digest=row.digest,
        clean=row.clean,
        registry=row.against_registry,
        report=commissioning.report_of(row),
    )


@router.post(
    "/{node}/commissioning",
    response_model=CommissioningOut,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a commissioning report the node signed",
    responses=answers(
        e401="no valid token",
        e403="not a field role",
        e404="no such concentrator",
        e422="not signed by this node's key, altered, or not a commissioning report",
    ),
)
def upload(
    node: NodePath,
    body: SignedReportIn,
    *,
    request: Request,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
) -> CommissioningOut:
    signed = {"report": body.report, "key_id": body.key_id, "signature": body.signature}
    row, new = commissioning.accept(session, node, signed, uploaded_by=who.user, now=now)
    if new:
        actor = oplog.Actor(who.user, who.role.value, client_address(request))
        after = {"digest": row.digest, "taken_at": row.taken_at.isoformat(), "clean": row.clean}
        oplog.record(session, actor, "commissioning.upload", node, None, after, now)
    return _out(row, new=new)


@router.get(
    "/{node}/commissioning/latest",
    response_model=CommissioningOut,
    summary="The node's newest commissioning report (JSON or the PDF to sign)",
    responses={
        **answers(e404="no such concentrator, or no report yet"),
        200: {"content": {pdf.MEDIA_TYPE: {}}},
    },
)
def latest(
    node: NodePath,
    *,
    who: Annotated[Principal, allow(*READ_ALL)],
    session: DbSession,
    now: Now,
    form: Format = "json",
    lang: Lang = "zh",
) -> Any:
    row = commissioning.latest(session, node)
    if form == "pdf":
        document = commissioning_pdf.document(
            commissioning.report_of(row),
            key_id=row.key_id,
            registry=row.against_registry,
            clean=row.clean,
            generated=now,
            lang=lang,
        )
        name = f"commissioning-{node}-{row.taken_at:%Y%m%d}"
        return Response(
            document,
            media_type=pdf.MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    return _out(row, new=False)
