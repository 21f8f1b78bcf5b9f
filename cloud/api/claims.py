"""`/claims` and `/provision`: an installer asks for a one-time claim token; the box redeems it.

- `POST /claims {site, valid_s[, node]}` (admin, operator, installer): a token bound to the
  site and the caller (and to a node pre-assigned to the site, when `node` is given: the box
  takes that node id and its configuration), valid 60 s … 7 days, shown once (only its SHA-256
  is stored); logged without it.
- `POST /claims/nodes {site, node[, name]}` (admin, operator): pre-assign a node id to a site
  before its box exists, so its registry shops and meters can be written (`reserved`, no key).
- `GET /claims` (admin, operator, installer): the claims, newest first, with their state (open,
  used, expired, revoked), by site and state; never a token. `POST /claims/{id}/revoke`: a claim
  nobody used yet is refused from then on (an installer revokes only its own); logged.
- `POST /provision {token, node_public_key, csr[, site]}` needs no login: the token is the
  permission. The box sends only public keys; the answer is its node id, its client
  certificate (CN = node id) and the CA, the broker's address, the cloud's public key and its
  configuration (or null). An unusable token — unknown, used, expired, another site's — gets
  one 401 with one sentence whichever it is, and is logged (`claim.refused`, a `claim_refused`
  alarm) with nothing else changed. See `cloud.ingest.claims`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import select

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Limit,
    NodeId,
    Now,
    Offset,
    Out,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.api.guards import client_address
from cloud.db.claims import Claim
from cloud.ingest import claims
from cloud.people import oplog
from cloud.people.auth import FIELD, OPERATIONS, Principal
from ledger.chain import NodeKey

router = APIRouter(tags=["provisioning"])

SiteRef = Annotated[
    StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=200)],
    Field(description="the registry site: its id, or its name"),
]


class ClaimIn(StrictBody):
    site: SiteRef
    node: NodeId | None = Field(None, description="a node pre-assigned to the site: the box "
                                "redeeming the token takes it")  # fmt: skip
    valid_s: Annotated[
        StrictInt,
        Field(
            ge=int(claims.MIN_VALID.total_seconds()),
            le=int(claims.MAX_VALID.total_seconds()),
            description="how long the token may be redeemed, in seconds (60 … 604800)",
        ),
    ]


class ClaimOut(Out):
    token: str = Field(description="the one-time claim token: shown this once, never again")
    claim: int
    site: int
    site_name: str
    installer: str
    expires: StoredTime
    node: str | None = Field(None, description="the pre-assigned node the token is bound to")


class PreassignIn(StrictBody):
    site: SiteRef
    node: NodeId
    name: Annotated[StrictStr, Field(max_length=200)] = ""


class PreassignOut(Out):
    node: str
    site: int
    name: str
    status: str = Field(description="reserved: waiting for its box (a claim bound to it)")


class ProvisionIn(StrictBody):
    token: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    node_public_key: Annotated[
        StrictStr, Field(min_length=64, max_length=64, description="raw Ed25519 key, 64 hex")
    ]
    csr: Annotated[
        StrictStr,
        Field(min_length=1, max_length=16_000, description="PEM CSR of the box's TLS key"),
    ]
    site: SiteRef | None = None


class BrokerOut(Out):
    host: str
    port: int


class ProvisionOut(Out):
    node: str = Field(description="the node id given to the box (its certificate's CN)")
    certificate: str = Field(description="the box's client certificate, PEM")
    ca: str = Field(description="the CA the broker's and the box's certificates chain to, PEM")
    broker: BrokerOut
    cloud_public_key: str = Field(description="the cloud's Ed25519 public key, 64 hex")
    config: dict[str, Any] | None = Field(
        description="{version, documents} as the signed config command carries it (sent to the "
        "box when it connects), or null when the registry has none for this node yet"
    )


@router.post(
    "/claims",
    response_model=ClaimOut,
    status_code=status.HTTP_201_CREATED,
    summary="A one-time claim token for a concentrator of a site",
    responses=answers(e401="no valid token", e403="not a field role", e404="no such site"),
)
def create_claim(
    body: ClaimIn,
    request: Request,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
) -> ClaimOut:
    actor = oplog.Actor(who.user, who.role.value, client_address(request))
    issued = claims.issue(session, body.site, dt.timedelta(seconds=body.valid_s), actor, now,
                          node=body.node)  # fmt: skip
    return ClaimOut(
        token=issued.token,
        claim=issued.claim.id,
        site=issued.site.id,
        site_name=issued.site.name,
        installer=issued.claim.installer,
        expires=issued.claim.expires,
        node=issued.claim.for_node,
    )


@router.post(
    "/claims/nodes",
    response_model=PreassignOut,
    status_code=status.HTTP_201_CREATED,
    summary="Pre-assign a node id to a site before its box is provisioned",
    responses=answers(e403="not an operator", e404="no such site", e409="the node id exists"),
)
def preassign_node(
    body: PreassignIn,
    request: Request,
    who: Annotated[Principal, allow(*OPERATIONS)],
    session: DbSession,
    now: Now,
) -> PreassignOut:
    actor = oplog.Actor(who.user, who.role.value, client_address(request))
    row = claims.preassign(session, body.site, body.node, name=body.name, actor=actor, now=now)
    assert row.site_id is not None
    return PreassignOut(node=row.node, site=row.site_id, name=row.name, status=row.status)


class ClaimRowOut(Out):
    claim: int
    site: int
    installer: str
    created: StoredTime
    expires: StoredTime
    state: str = Field(description="open, used, expired or revoked")
    node: str | None = Field(description="the node id it gave, once used")
    for_node: str | None = Field(None, description="the pre-assigned node it is bound to")
    redeemed: StoredTime | None
    revoked: StoredTime | None
    revoked_by: str | None


def _row(claim: Claim, now: dt.datetime) -> ClaimRowOut:
    return ClaimRowOut(
        claim=claim.id, site=claim.site_id, installer=claim.installer, created=claim.created,
        expires=claim.expires, state=claims.state_of(claim, now), node=claim.node,
        redeemed=claim.redeemed, revoked=claim.revoked, revoked_by=claim.revoked_by,
        for_node=claim.for_node,
    )  # fmt: skip


@router.get("/claims", response_model=Page[ClaimRowOut], summary="Claims, newest first (no token)")
def list_claims(
    *,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
    site: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="registry site id")] = None,
    state: Annotated[
        str | None, Query(pattern="^(open|used|expired|revoked)$", description="the state")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    query = select(Claim).order_by(Claim.id.desc())
    if site is not None:
        query = query.where(Claim.site_id == site)
    if state is not None:
        query = query.where(claims.state_condition(state, now))
    return page(session, query, limit, offset, lambda rows: [_row(c, now) for c in rows])


@router.post(
    "/claims/{claim}/revoke",
    response_model=ClaimRowOut,
    summary="Revoke a claim nobody has used yet (an installer only its own)",
    responses=answers(
        e403="another installer's claim", e404="no such claim", e409="already used or revoked"
    ),
)
def revoke_claim(
    claim: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    who: Annotated[Principal, allow(*FIELD)],
    session: DbSession,
    now: Now,
) -> ClaimRowOut:
    actor = oplog.Actor(who.user, who.role.value, client_address(request))
    return _row(claims.revoke(session, claim, actor, now), now)


@router.post(
    "/provision",
    response_model=ProvisionOut,
    summary="A box redeems a claim token: its node id, certificate and where to connect",
    responses=answers(
        e401="the claim token is unknown, used, expired or another site's (one answer for all)",
        e409="this cloud has no device CA (an external broker): use voltbook-cloud device-cert",
        e422="the node key or the CSR is not acceptable (the token is still usable)",
        e429="too many refused tokens from this address: wait a minute",
    ),
)
def provision(body: ProvisionIn, request: Request, session: DbSession, now: Now) -> ProvisionOut:
    address = client_address(request)
    claims.check_pace(session, address, now)
    node_key = claims.parse_node_key(body.node_public_key)
    csr_key = claims.check_csr(body.csr)
    enrolment: claims.Enrolment | None = request.app.state.enrolment
    cloud_key: NodeKey = request.app.state.key
    try:
        done = claims.redeem(
            session,
            body.token,
            node_key=node_key,
            csr_key=csr_key,
            site=body.site,
            enrolment=enrolment or claims.Enrolment(None, "", 0),
            cloud_key=cloud_key,
            now=now,
            address=address,
        )
    except claims.ClaimRefused as refused:
        session.rollback()  # nothing of the attempt stays but its log row and alarm
        claims.log_refusal(session, refused, now, address)
        session.commit()
        raise
    return ProvisionOut(
        node=done.node,
        certificate=done.certificate,
        ca=done.ca,
        broker=BrokerOut(host=done.broker_host, port=done.broker_port),
        cloud_public_key=done.cloud_public_key,
        config=done.config,
    )
