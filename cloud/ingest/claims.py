"""Provisioning by claim: an installer's one-time token lets one concentrator join one site.

    issued = issue(session, site, valid, actor, now)              # POST /claims (logged in)
    print(issued.token)                                           # shown once, never stored
    done = redeem(session, token, node_key=…, csr_key=…, …)       # POST /provision (the box)

The box makes its own keys (the node's Ed25519 key, a TLS key and a CSR) and sends only the
public halves with the token; the cloud answers with the node id it assigns, the client
certificate its broker CA signs over the box's TLS key (CN = node id), the broker's address,
the cloud's public key and, when the registry has a usable one, the node's configuration
(pushed as the signed `config` command at the same time). The private keys never leave the box.

A token is 32 random bytes (URL-safe base64); only its SHA-256 is stored. It is redeemed by one
conditional update (`redeemed IS NULL AND expires > now`, and the site when the box names one),
so of any number of concurrent redeemers exactly one matches; the others, and anyone with an
unknown, used, expired or foreign token, get the same `ClaimRefused` (401: a token cannot be
probed for which of these it is), which the router logs (operator log `claim.refused` and a
`claim_refused` alarm, naming the reason) after rolling back, so nothing else changes. An
address with `REFUSALS_PER_ADDRESS` refusals in the last `REFUSAL_WINDOW` is answered 429
(`check_pace`) before anything is looked at, and logged no more.

What is checked before a token is spent: the node key (64 hex digits of a raw Ed25519 key, as
`POST /concentrators` takes it), the CSR (`check_csr`: PEM, a signature that verifies with the
key it carries, an EC P-256, Ed25519 or RSA ≥ 2048 key, no extensions: the cloud decides them),
and that this cloud has a CA to sign with (the embedded broker's; an external broker's
certificates come from `voltbook-cloud device-cert`). A refused request leaves the token usable.

Node ids are `<site-slug>-<n>`: the site's name in lower-case ASCII words joined by `-` (or
`site<id>` for a name with none, such as a Chinese one), and the lowest n not yet taken; the
site's row is locked while one is chosen, so two boxes of one site never pick the same.

A node can be pre-assigned (`preassign`): an operator names it for a site before its box is
provisioned (a `reserved` concentrator with no key: `concentrators.reserve`) and writes its
shops and meters into the registry. A claim bound to it (`issue(…, node=N)`, `voltbook-fw claim
--site S --node N`) gives the box that redeems it that node id, and so that node's registry
configuration (its meters) in the answer. Binding is checked when the claim is issued (the node
is reserved, and for the claim's site) and again when it is redeemed: a node already provisioned
— by another claim bound to it — is a `ClaimRefused`, logged, with nothing changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from cloud.chains.alarms import raise_alarm
from cloud.db.auth import OperatorLogEntry
from cloud.db.claims import Claim
from cloud.db.models import Concentrator, NodeStatus
from cloud.db.registry import Site
from cloud.errors import Conflict, Forbidden, Invalid, NotFound, TooManyAttempts, Unauthorized
from cloud.ingest import concentrators
from cloud.people import oplog
from cloud.registry import site_config
from cloud.services.pki import CaFiles, DeviceKey, sign_client_key
from ledger.chain import NodeKey, key_id

TOKEN_BYTES = 32
MIN_VALID = dt.timedelta(seconds=60)
MAX_VALID = dt.timedelta(days=7)
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
SLUG_CHARS = 40
REFUSED_ALARM = "claim_refused"
REFUSED_ACTION = "claim.refused"
# One address gets this many refused redemptions per window, then 429 (and no more log rows):
# guessing a token is hopeless anyway (256 bits), but a flood must not fill the operator log.
REFUSALS_PER_ADDRESS = 10
REFUSAL_WINDOW = dt.timedelta(minutes=1)
DEVICE_ROLE = "device"  # who the operator log names for a box redeeming (it has no login)
REFUSED_TEXT = (
    "this claim token cannot be used (it is unknown, already used or expired): ask the "
    "installer for a new one (voltbook-fw claim --site …) and run provision again"
)


class ClaimRefused(Unauthorized):
    """The token is unknown, used, expired or of another site. Every caller sees the same
    sentence; `reason` (and the claim and site, when known) are for the log only."""

    def __init__(self, reason: str, claim: int | None = None, site: int | None = None) -> None:
        super().__init__(REFUSED_TEXT)
        self.reason, self.claim, self.site = reason, claim, site


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the server knows for provisioning: the CA device certificates chain to (None: an
    external broker whose CA is not here), the broker address boxes connect to, and the CA
    certificates a box is told to trust (None: `ca`'s; during a CA rotation both CAs,
    `cloud.services.ca_rotation`)."""

    ca: CaFiles | None
    broker_host: str
    broker_port: int
    trust: Path | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    token: str  # shown once to the installer; only its hash is stored
    claim: Claim
    site: Site


@dataclass(frozen=True, slots=True)
class Provisioned:
    node: str
    certificate: str  # PEM
    ca: str  # PEM
    broker_host: str
    broker_port: int
    cloud_public_key: str  # raw Ed25519, hex
    config: dict[str, Any] | None  # {"version", "documents"} as the signed `config` carries it


def _new_token() -> str:
    """A claim token the installer passes as `--token T`: never one starting with "-", which a
    command line takes for an option (1 in 64 did)."""
    while (token := secrets.token_urlsafe(TOKEN_BYTES)).startswith("-"):
        pass
    return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def find_site(session: Session, site: int | str) -> Site:
    """The registry site by id or by its (unique) name."""
    found = (
        session.get(Site, site)
        if isinstance(site, int)
        else session.scalars(select(Site).where(Site.name == site)).one_or_none()
    )
    if found is None:
        raise NotFound(f"site {site!r} is not in the registry")
    return found


def issue(
    session: Session,
    site: int | str,
    valid: dt.timedelta,
    actor: oplog.Actor,
    now: dt.datetime,
    *,
    node: str | None = None,
) -> Issued:
    """A new claim token for `site`, valid for `valid` (60 s … 7 days), logged without it;
    bound to `node` when given, a node pre-assigned to that site and not yet provisioned."""
    if not MIN_VALID <= valid <= MAX_VALID:
        raise Invalid("valid_s must be from 60 seconds to 7 days")
    row = find_site(session, site)
    if node is not None:
        check_reserved(session, node, row)
    token = _new_token()
    claim = Claim(
        token_hash=token_hash(token),
        site_id=row.id,
        installer=actor.user,
        created=now,
        expires=now + valid,
        for_node=node,
    )
    session.add(claim)
    session.flush()
    after = {"claim": claim.id, "site": row.id, "installer": actor.user, "node": node,
             "expires": claim.expires.isoformat()}  # fmt: skip
    oplog.record(session, actor, "claim.issue", f"site:{row.id}", None, after, now)
    return Issued(token, claim, row)


def check_reserved(session: Session, node: str, site: Site) -> Concentrator:
    """The node pre-assigned to `site` and waiting for its box: `NotFound` if `node` is not a
    node, `Conflict` if it is provisioned already or pre-assigned to another site."""
    found = session.get(Concentrator, node)
    if found is None:
        raise NotFound(f"node {node!r} is not in the registry: pre-assign it to the site first")
    if found.status != NodeStatus.RESERVED.value:
        raise Conflict(f"node {node} is already provisioned: it cannot be claimed again")
    if found.site_id != site.id:
        raise Conflict(f"node {node} is pre-assigned to site {found.site_id}, not {site.id}")
    return found


def preassign(
    session: Session, site: int | str, node: str, *, name: str, actor: oplog.Actor,
    now: dt.datetime,
) -> Concentrator:  # fmt: skip
    """Pre-assign `node` to `site` before its box is provisioned (logged): its registry shops
    and meters can be written now, and a claim bound to it gives the box this node id."""
    row = find_site(session, site)
    node_row = concentrators.reserve(session, node, row.id, name or row.name[:200], now)
    after = {"node": node, "site": row.id, "name": node_row.name}
    oplog.record(session, actor, "concentrator.preassign", f"node:{node}", None, after, now)
    return node_row


# A claim's state, as `GET /claims` shows and filters it.
CLAIM_STATES = ("open", "used", "expired", "revoked")


def state_of(claim: Claim, now: dt.datetime) -> str:
    if claim.redeemed is not None:
        return "used"
    if claim.revoked is not None:
        return "revoked"
    return "expired" if claim.expires <= now else "open"


def state_condition(state: str, now: dt.datetime) -> Any:
    """The SQL condition of `state_of(claim, now) == state`."""
    unused = [Claim.redeemed.is_(None), Claim.revoked.is_(None)]
    return {
        "used": Claim.redeemed.is_not(None),
        "revoked": Claim.redeemed.is_(None) & Claim.revoked.is_not(None),
        "expired": and_(*unused, Claim.expires <= now),
        "open": and_(*unused, Claim.expires > now),
    }[state]


def revoke(session: Session, claim_id: int, actor: oplog.Actor, now: dt.datetime) -> Claim:
    """Revoke a claim nobody has used yet (an installer only its own), logged; a used or
    already revoked one cannot be."""
    claim = session.get(Claim, claim_id)
    if claim is None:
        raise NotFound(f"no claim {claim_id}")
    if actor.role == "installer" and claim.installer != actor.user:
        raise Forbidden(f"claim {claim_id} is {claim.installer}'s: an installer revokes its own")
    done = session.execute(
        update(Claim)
        .where(Claim.id == claim_id, Claim.redeemed.is_(None), Claim.revoked.is_(None))
        .values(revoked=now, revoked_by=actor.user)
    )
    session.refresh(claim)
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict(f"claim {claim_id} is {state_of(claim, now)}: there is nothing to revoke")
    after = {"claim": claim.id, "site": claim.site_id, "installer": claim.installer}
    oplog.record(session, actor, "claim.revoke", f"claim:{claim.id}", None, after, now)
    return claim


def parse_node_key(text: str) -> ed25519.Ed25519PublicKey:
    """The box's node key: 64 hex digits of a raw Ed25519 public key."""
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise Invalid("node_public_key must be 64 hex digits (a raw Ed25519 public key)")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:  # not every 32 bytes are a point
        raise Invalid("node_public_key is not a valid Ed25519 public key") from None


def check_csr(pem: str) -> DeviceKey:
    """The public key of a certificate signing request we accept (see the module docstring);
    anything else is `Invalid` with what to do."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise Invalid(
            "csr is not a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)"
        ) from None
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise Invalid("csr cannot be read (an unsupported key or a malformed request)") from None
    if not _acceptable(key):  # before the signature: no work for a key we would not take
        raise Invalid(
            f"csr: its key must be EC P-256, Ed25519 or RSA of {MIN_RSA_BITS} to {MAX_RSA_BITS} "
            f"bits, not {_describe(key)}"
        )
    try:
        signed = csr.is_signature_valid
        asked = len(csr.extensions)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise Invalid("csr cannot be read (a malformed signature or extension)") from None
    if not signed:
        raise Invalid(
            "csr: its signature does not verify with the key it carries (a forged or damaged "
            "request): make a new one on the box"
        )
    if asked:
        raise Invalid("csr asks for extensions; the cloud decides them: send one without")
    return key


def _acceptable(key: object) -> TypeGuard[DeviceKey]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, ec.SECP256R1)
    if isinstance(key, rsa.RSAPublicKey):
        return MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS
    return isinstance(key, ed25519.Ed25519PublicKey)


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    return type(key).__name__.removesuffix("PublicKey").lstrip("_") or "this key"


def redeem(
    session: Session,
    token: str,
    *,
    node_key: ed25519.Ed25519PublicKey,
    csr_key: DeviceKey,
    site: int | str | None,
    enrolment: Enrolment,
    cloud_key: NodeKey,
    now: dt.datetime,
    address: str = "",
) -> Provisioned:
    """Spend `token` once and provision the box: node id, registration, certificate, config.
    `ClaimRefused` (nothing changed) for a token that cannot be used."""
    ca = enrolment.ca
    if ca is None:
        raise Conflict(
            "this cloud has no device CA (its broker is external): issue the box's certificate "
            "with `voltbook-cloud device-cert NODE` and register it with POST /concentrators"
        )
    claim = _spend(session, token, site, now)
    row = session.scalars(select(Site).where(Site.id == claim.site_id).with_for_update()).one()
    if claim.for_node is not None:  # the node pre-assigned to the site, if no box took it
        node = claim.for_node
        try:
            check_reserved(session, node, row)
            concentrators.provision_reserved(session, node, node_key)
        except (Conflict, NotFound) as exc:
            raise ClaimRefused(str(exc), claim.id, claim.site_id) from None
    else:
        node = next_node_id(session, row)
        registered = concentrators.register(session, node, node_key, name=row.name[:200], now=now)
        registered.site_id = row.id
    certificate = sign_client_key(ca, node, csr_key)
    claim.node, claim.certificate_serial = node, format(certificate.serial_number, "x")
    session.flush()
    actor = oplog.Actor(f"claim:{claim.id}", DEVICE_ROLE, address)
    after = {
        "claim": claim.id,
        "site": row.id,
        "node": node,
        "key_id": key_id(node_key),
        "certificate_serial": claim.certificate_serial,
        "installer": claim.installer,
    }
    oplog.record(session, actor, "claim.redeem", f"node:{node}", None, after, now)
    return Provisioned(
        node=node,
        certificate=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        ca=(enrolment.trust or ca.cert).read_text(encoding="ascii"),
        broker_host=enrolment.broker_host,
        broker_port=enrolment.broker_port,
        cloud_public_key=cloud_key.public_key.public_bytes_raw().hex(),
        config=_config(session, node, cloud_key, now, actor),
    )


def _spend(session: Session, token: str, site: int | str | None, now: dt.datetime) -> Claim:
    """Mark the claim redeemed by one conditional update, or say why it cannot be."""
    digest = token_hash(token)
    site_id = None
    if site is not None:
        try:
            site_id = find_site(session, site).id
        except NotFound:
            raise ClaimRefused(f"the box named site {site!r}, which is unknown") from None
    condition = [Claim.token_hash == digest, Claim.redeemed.is_(None), Claim.revoked.is_(None),
                 Claim.expires > now]  # fmt: skip
    if site_id is not None:
        condition.append(Claim.site_id == site_id)
    spent = session.execute(update(Claim).where(*condition).values(redeemed=now))
    claim = session.scalars(
        select(Claim).where(Claim.token_hash == digest).execution_options(populate_existing=True)
    ).one_or_none()
    if getattr(spent, "rowcount", 0) == 1 and claim is not None:
        return claim
    if claim is None:
        raise ClaimRefused("unknown token")
    if claim.redeemed is not None:
        raise ClaimRefused(f"already used (node {claim.node})", claim.id, claim.site_id)
    if claim.revoked is not None:
        raise ClaimRefused(f"revoked by {claim.revoked_by}", claim.id, claim.site_id)
    if claim.expires <= now:
        raise ClaimRefused(f"expired at {claim.expires.isoformat()}", claim.id, claim.site_id)
    raise ClaimRefused(f"a token of site {claim.site_id}, not {site!r}", claim.id, claim.site_id)


def check_pace(session: Session, address: str, now: dt.datetime) -> None:
    """`TooManyAttempts` when `address` had `REFUSALS_PER_ADDRESS` redemptions refused within
    `REFUSAL_WINDOW` (counted from the operator log, where each one is)."""
    if not address:
        return
    recent = session.scalar(
        select(func.count())
        .select_from(OperatorLogEntry)
        .where(
            OperatorLogEntry.action == REFUSED_ACTION,
            OperatorLogEntry.address == address[:64],
            OperatorLogEntry.time > now - REFUSAL_WINDOW,
        )
    )
    if (recent or 0) >= REFUSALS_PER_ADDRESS:
        raise TooManyAttempts(
            f"too many refused claim tokens from {address}; wait a minute and check the token"
        )


def log_refusal(
    session: Session, refused: ClaimRefused, now: dt.datetime, address: str = ""
) -> None:
    """The operator-log row and the alarm of a refused redemption (the token is never kept)."""
    actor = oplog.Actor("anonymous", DEVICE_ROLE, address)
    target = f"claim:{refused.claim}" if refused.claim is not None else "claim:?"
    after = {"reason": refused.reason, "claim": refused.claim, "site": refused.site}
    oplog.record(session, actor, REFUSED_ACTION, target, None, after, now)
    detail = f"a claim token was refused ({refused.reason}) from {address or 'an unknown address'}"
    raise_alarm(session, None, REFUSED_ALARM, now, detail)


def node_prefix(site: Site) -> str:
    words = re.findall(r"[a-z0-9]+", site.name.lower())
    slug = "-".join(words)[:SLUG_CHARS].strip("-")
    return slug or f"site{site.id}"


def next_node_id(session: Session, site: Site) -> str:
    """The lowest `<slug>-<n>` neither registered nor given by a claim (the site row is locked
    by the caller)."""
    prefix = node_prefix(site)
    pattern = f"{prefix}-%"  # a slug holds no LIKE wildcard (only a-z, 0-9 and -)
    taken = set(session.scalars(select(Concentrator.node).where(Concentrator.node.like(pattern))))
    taken |= {n for n in session.scalars(select(Claim.node).where(Claim.node.like(pattern))) if n}
    number = 1
    while f"{prefix}-{number}" in taken:
        number += 1
    return concentrators.check_node_id(f"{prefix}-{number}")


def _config(
    session: Session, node: str, key: NodeKey, now: dt.datetime, actor: oplog.Actor
) -> dict[str, Any] | None:
    """The node's registry configuration, pushed now as its signed `config` command (delivered
    when it connects) and given in the answer; None when the registry has no usable one."""
    built = site_config.build(session, node)
    if built.problems:
        return None
    pushed = site_config.push(session, node, key=key, now=now, actor=actor)
    return {"version": pushed.version, "documents": dict(pushed.documents)}
