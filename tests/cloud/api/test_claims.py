"""`POST /claims` and `POST /provision` (`cloud.api.claims`, `cloud.ingest.claims`) on a real
migrated database (SQLite and PostgreSQL), with real keys, CSRs and a real CA made here.

A claimed box gets a certificate of its own key that chains to the CA with CN = its node id;
a token is spent once (ten concurrent redeemers: one wins), and an unknown, used, expired or
foreign token gets one answer, is logged and changes nothing else; a CSR that does not verify,
of a key we do not take, or asking for extensions is refused and leaves the token usable.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from cloud.app import create_app
from cloud.db.claims import Claim
from cloud.db.engine import session_factory
from cloud.db.models import Alarm, Concentrator
from cloud.db.registry import Site
from cloud.errors import Invalid
from cloud.ingest import claims
from cloud.ingest.handler import Ingest
from cloud.people import oplog
from cloud.people.auth import Role
from cloud.registry import entities
from cloud.services.pki import CaFiles, create_ca
from ledger.chain import NodeKey
from ledger.wire import AckStatus
from tests.cloud.api.conftest import add_user, bearer, issue_token
from tests.cloud.conftest import Clock
from tests.cloud.fake_edge import T0, FakeEdge
from tests.cloud.helpers import open_ack
from tests.cloud.registry_world import add, make_registry

BROKER = ("mqtt.example.cn", 8883)


@pytest.fixture
def ca(tmp_path: Path) -> CaFiles:
    return create_ca(tmp_path / "pki")


@pytest.fixture
def sites(engine: Engine) -> dict[str, int]:
    with session_factory(engine).begin() as session:
        rows = [Site(name="East Gate Market"), Site(name="东门市场")]
        session.add_all(rows)
        session.flush()
        return {row.name: row.id for row in rows}


@pytest.fixture
def api(
    engine: Engine, cloud_key: NodeKey, clock: Clock, tokens: dict[Role, str], ca: CaFiles
) -> Iterator[TestClient]:
    """The API with a device CA, logged in as the installer."""
    enrolment = claims.Enrolment(ca, *BROKER)
    with TestClient(create_app(engine, cloud_key, clock, enrolment=enrolment)) as client:
        client.headers.update(bearer(tokens[Role.INSTALLER]))
        yield client


class Box:
    """What a concentrator makes for itself: its node key and a TLS key with a CSR."""

    def __init__(self, tls_key: Any = None) -> None:
        self.node_key = NodeKey.generate()
        self.tls_key = tls_key or ec.generate_private_key(ec.SECP256R1())
        self.csr = csr_of(self.tls_key)

    def body(self, token: str, **more: Any) -> dict[str, Any]:
        raw = self.node_key.public_key.public_bytes_raw().hex()
        return {"token": token, "node_public_key": raw, "csr": self.csr, **more}


def csr_of(key: Any, *, extension: x509.ExtensionType | None = None) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anything")])
    )
    if extension is not None:
        builder = builder.add_extension(extension, critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def claim(api: TestClient, site: int | str, valid_s: int = 7200, **headers: str) -> str:
    answer = api.post("/claims", json={"site": site, "valid_s": valid_s}, headers=headers)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def counts(engine: Engine) -> dict[str, int]:
    with session_factory(engine)() as session:
        return {
            "concentrators": session.scalar(select(func.count()).select_from(Concentrator)) or 0,
            "redeemed": session.scalar(
                select(func.count()).select_from(Claim).where(Claim.redeemed.is_not(None))
            )
            or 0,
        }


def refusals(engine: Engine) -> int:
    with session_factory(engine)() as session:
        query = select(func.count()).select_from(Alarm).where(Alarm.kind == "claim_refused")
        return session.scalar(query) or 0


def test_a_claimed_box_gets_its_certificate_and_registration(
    api: TestClient, engine: Engine, sites: dict[str, int], ca: CaFiles, cloud_key: NodeKey
) -> None:
    answer = api.post("/claims", json={"site": "East Gate Market", "valid_s": 7200})
    assert answer.status_code == 201, answer.text
    issued = answer.json()
    token = issued["token"]
    assert issued["site"] == sites["East Gate Market"] and issued["installer"] == "installer-1"
    assert len(token) >= 43  # 32 random bytes, URL-safe
    box = Box()
    done = api.post("/provision", json=box.body(token), headers={"Authorization": ""})
    assert done.status_code == 200, done.text
    got = done.json()
    assert got["node"] == "east-gate-market-1"
    assert got["broker"] == {"host": BROKER[0], "port": BROKER[1]}
    assert got["cloud_public_key"] == cloud_key.public_key.public_bytes_raw().hex()
    assert got["config"] is None  # the registry has nothing on this node yet
    assert got["ca"] == ca.cert.read_text()
    certificate = x509.load_pem_x509_certificate(got["certificate"].encode())
    authority = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    certificate.verify_directly_issued_by(authority)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == got["node"]
    assert certificate.public_key() == box.tls_key.public_key()
    with session_factory(engine)() as session:
        node = session.get(Concentrator, got["node"])
        assert node is not None and node.public_key == box.body("")["node_public_key"]
        row = session.scalars(select(Claim)).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.node == got["node"] and row.redeemed is not None
        assert row.certificate_serial == format(certificate.serial_number, "x")
    log = api.get("/operator-log", headers=bearer_of(api, engine)).json()["items"]
    actions = [item["action"] for item in log]
    assert "claim.issue" in actions and "claim.redeem" in actions
    assert token not in str(log)  # the token is never logged
    # The second box of the site gets the next number.
    second = api.post("/provision", json=Box().body(claim(api, sites["East Gate Market"])))
    assert second.json()["node"] == "east-gate-market-2"
    # A site whose name has no ASCII word is named by its id.
    third = api.post("/provision", json=Box().body(claim(api, "东门市场")))
    assert third.json()["node"] == f"site{sites['东门市场']}-1"


def bearer_of(api: TestClient, engine: Engine) -> dict[str, str]:
    """The admin's token (the operator log is staff's to read)."""
    return bearer(issue_token(engine, "admin-1"))


def test_used_unknown_expired_and_foreign_tokens_get_one_answer_and_are_logged(
    api: TestClient, engine: Engine, sites: dict[str, int], clock: Clock
) -> None:
    east, other = sites["East Gate Market"], sites["东门市场"]
    used = claim(api, east)
    assert api.post("/provision", json=Box().body(used)).status_code == 200
    foreign = claim(api, east)
    expiring = claim(api, east, valid_s=60)
    before = counts(engine)
    answers = []
    answers.append(api.post("/provision", json=Box().body(used)))
    answers.append(api.post("/provision", json=Box().body("no-such-token-" + "x" * 30)))
    answers.append(api.post("/provision", json=Box().body(foreign, site=other)))
    clock.advance(seconds=61)
    answers.append(api.post("/provision", json=Box().body(expiring)))
    assert {a.status_code for a in answers} == {401}
    assert len({a.text for a in answers}) == 1  # which of them it was cannot be told
    assert answers[0].json()["error"] == "unauthorized"
    assert "voltbook-fw claim" in answers[0].json()["detail"]
    assert counts(engine) == before  # nothing changed
    assert refusals(engine) == 4
    log = api.get("/operator-log", headers=bearer_of(api, engine)).json()["items"]
    reasons = [i["after"]["reason"] for i in log if i["action"] == "claim.refused"]
    assert len(reasons) == 4
    assert any(r.startswith("already used") for r in reasons)
    assert "unknown token" in reasons
    assert any(r.startswith("expired") for r in reasons)
    assert any(r.startswith("a token of site") for r in reasons)
    # The foreign attempt did not spend the token: its own site still takes it.
    done = api.post("/provision", json=Box().body(foreign, site="East Gate Market"))
    assert done.status_code == 200, done.text


def test_claims_are_listed_with_their_state_and_a_revoked_one_is_refused(
    api: TestClient, engine: Engine, sites: dict[str, int], clock: Clock, tokens: dict[Role, str]
) -> None:
    east = sites["East Gate Market"]
    used, revoked, _expiring, kept = (claim(api, east, valid_s=v) for v in (7200, 7200, 60, 7200))
    assert api.post("/provision", json=Box().body(used)).status_code == 200
    listed = api.get("/claims", params={"state": "open"}).json()
    ids = [item["claim"] for item in listed["items"]]
    assert listed["total"] == 3 and ids == sorted(ids, reverse=True)  # newest first
    revoke_id = ids[2]  # the second claimed: `revoked`
    answer = api.post(f"/claims/{revoke_id}/revoke")
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "revoked" and answer.json()["revoked_by"] == "installer-1"
    clock.advance(seconds=61)
    states = {item["claim"]: item["state"] for item in api.get("/claims").json()["items"]}
    assert sorted(states.values()) == ["expired", "open", "revoked", "used"]
    for state in ("open", "used", "expired", "revoked"):
        page = api.get("/claims", params={"state": state, "site": east}).json()
        assert [i["claim"] for i in page["items"]] == [c for c, s in states.items() if s == state]
    assert "token" not in str(api.get("/claims").json())  # a listing never shows a token
    # The revoked token is refused like a used one, and stays refused.
    before = counts(engine)
    refused = api.post("/provision", json=Box().body(revoked))
    assert refused.status_code == 401 and counts(engine) == before
    log = api.get("/operator-log", headers=bearer_of(api, engine)).json()["items"]
    assert [i["after"]["reason"] for i in log if i["action"] == "claim.refused"] == [
        "revoked by installer-1"
    ]
    assert [i["target"] for i in log if i["action"] == "claim.revoke"] == [f"claim:{revoke_id}"]
    # Nothing to revoke: used, revoked, unknown; another installer's claim is not one's own.
    used_id = next(c for c, s in states.items() if s == "used")
    assert api.post(f"/claims/{used_id}/revoke").status_code == 409
    assert api.post(f"/claims/{revoke_id}/revoke").status_code == 409
    assert api.post("/claims/999999/revoke").status_code == 404
    other = add_user(engine, "installer-2", Role.INSTALLER)
    kept_id = next(c for c, s in states.items() if s == "open")
    assert api.post(f"/claims/{kept_id}/revoke", headers=bearer(other)).status_code == 403
    assert api.get("/claims", headers=bearer(tokens[Role.FINANCE])).status_code == 403
    assert api.post("/provision", json=Box().body(kept)).status_code == 200  # still usable
    assert api.get("/claims", params={"state": "sold"}).status_code == 422


def test_a_flood_of_bad_tokens_is_slowed_and_stops_filling_the_log(
    api: TestClient, engine: Engine, sites: dict[str, int], clock: Clock
) -> None:
    box = Box()
    for number in range(claims.REFUSALS_PER_ADDRESS):
        assert api.post("/provision", json=box.body(f"guess-{number}")).status_code == 401
    slowed = api.post("/provision", json=box.body("guess-more"))
    assert slowed.status_code == 429 and "wait a minute" in slowed.json()["detail"]
    assert refusals(engine) == claims.REFUSALS_PER_ADDRESS  # the 429 logged nothing
    token = claim(api, sites["East Gate Market"])
    assert api.post("/provision", json=box.body(token)).status_code == 429  # even a good one
    clock.advance(seconds=61)
    assert api.post("/provision", json=box.body(token)).status_code == 200


def forged_signature(pem: str) -> str:
    """The CSR with one bit of its signature flipped (the last bytes of the DER)."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    csr = x509.load_der_x509_csr(bytes(der))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("make_csr", "words"),
    [
        (lambda: forged_signature(csr_of(ec.generate_private_key(ec.SECP256R1()))), "signature"),
        (lambda: csr_of(ec.generate_private_key(ec.SECP384R1())), "secp384r1"),
        (lambda: csr_of(rsa.generate_private_key(65537, 1024)), "RSA 1024"),
        (
            lambda: csr_of(
                ec.generate_private_key(ec.SECP256R1()),
                extension=x509.BasicConstraints(ca=True, path_length=None),
            ),
            "extensions",
        ),
        (lambda: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "PEM"),
    ],
    ids=["forged", "p384", "rsa1024", "extensions", "garbage"],
)
def test_a_csr_we_do_not_take_is_refused_and_the_token_stays_usable(
    api: TestClient, engine: Engine, sites: dict[str, int], make_csr: Any, words: str
) -> None:
    token = claim(api, sites["East Gate Market"])
    box = Box()
    before = counts(engine)
    answer = api.post("/provision", json={**box.body(token), "csr": make_csr()})
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["detail"]
    assert counts(engine) == before
    assert api.post("/provision", json=box.body(token)).status_code == 200


@pytest.mark.parametrize(
    "key",
    [ed25519.Ed25519PrivateKey.generate, lambda: rsa.generate_private_key(65537, 2048)],
    ids=["ed25519", "rsa2048"],
)
def test_ed25519_and_rsa_boxes_are_taken(
    api: TestClient, sites: dict[str, int], ca: CaFiles, key: Any
) -> None:
    box = Box(key())
    done = api.post("/provision", json=box.body(claim(api, sites["East Gate Market"])))
    assert done.status_code == 200, done.text
    certificate = x509.load_pem_x509_certificate(done.json()["certificate"].encode())
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert.read_bytes()))


def test_ten_concurrent_redeemers_one_wins(
    engine: Engine, sites: dict[str, int], cloud_key: NodeKey, clock: Clock, ca: CaFiles
) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as session:
        token = claims.issue(
            session, sites["East Gate Market"], dt.timedelta(hours=1), oplog.SYSTEM, clock()
        ).token
    enrolment = claims.Enrolment(ca, *BROKER)
    boxes = [Box() for _ in range(10)]
    start = threading.Barrier(len(boxes))
    won: list[str] = []
    refused: list[str] = []

    def redeem(box: Box) -> None:
        start.wait()
        with sessions() as session:
            try:
                done = claims.redeem(
                    session,
                    token,
                    node_key=box.node_key.public_key,
                    csr_key=claims.check_csr(box.csr),
                    site=None,
                    enrolment=enrolment,
                    cloud_key=cloud_key,
                    now=clock(),
                )
                session.commit()
                won.append(done.node)
            except claims.ClaimRefused as exc:
                session.rollback()
                refused.append(exc.reason)

    threads = [threading.Thread(target=redeem, args=(box,)) for box in boxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert won == ["east-gate-market-1"]
    assert len(refused) == 9 and all(r.startswith("already used") for r in refused)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Concentrator)) == 1


def test_without_a_device_ca_provisioning_says_what_to_do(
    engine: Engine, cloud_key: NodeKey, clock: Clock, tokens: dict[Role, str], sites: Any
) -> None:
    with TestClient(create_app(engine, cloud_key, clock)) as api:
        api.headers.update(bearer(tokens[Role.INSTALLER]))
        token = claim(api, sites["East Gate Market"])
        answer = api.post("/provision", json=Box().body(token))
        assert answer.status_code == 409
        assert "voltbook-cloud device-cert" in answer.json()["detail"]
    assert counts(engine)["redeemed"] == 0  # the token was not spent


@pytest.mark.parametrize(
    ("role", "code"),
    [(Role.INSTALLER, 201), (Role.OPERATOR, 201), (Role.ADMIN, 201), (Role.FINANCE, 403),
     (Role.AUDITOR, 403), (Role.MERCHANT, 403)],
)  # fmt: skip
def test_who_may_ask_for_a_claim(
    api: TestClient, sites: dict[str, int], tokens: dict[Role, str], role: Role, code: int
) -> None:
    body = {"site": sites["East Gate Market"], "valid_s": 3600}
    assert api.post("/claims", json=body, headers=bearer(tokens[role])).status_code == code
    assert api.post("/claims", json=body, headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize(
    "body",
    [{"site": 1, "valid_s": 59}, {"site": 1, "valid_s": 7 * 86400 + 1},
     {"site": 1, "valid_s": "60"}, {"site": 99, "valid_s": 3600},
     {"site": "Nowhere", "valid_s": 3600}],
)  # fmt: skip
def test_a_claim_needs_a_known_site_and_a_sane_validity(
    api: TestClient, sites: dict[str, int], body: dict[str, Any]
) -> None:
    answer = api.post("/claims", json=body)
    assert answer.status_code in (404, 422), answer.text


SAMPLE_DER = x509.load_pem_x509_csr(
    csr_of(ec.generate_private_key(ec.SECP256R1())).encode()
).public_bytes(serialization.Encoding.DER)


def pem_of(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@st.composite
def mutated_der(draw: st.DrawFn) -> bytes:
    """A real CSR with a few bytes changed, cut short or extended."""
    der = bytearray(SAMPLE_DER)
    for _ in range(draw(st.integers(1, 4))):
        der[draw(st.integers(0, len(der) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(der)))
    return bytes(der[:cut]) + draw(st.binary(max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=400), mutated_der().map(pem_of), st.binary().map(pem_of)))
def test_check_csr_takes_any_text_to_a_key_or_invalid(text: str) -> None:
    with contextlib.suppress(Invalid):
        claims.check_csr(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_parse_node_key_takes_any_text_to_a_key_or_invalid(text: str) -> None:
    with contextlib.suppress(Invalid):
        claims.parse_node_key(text)


# -- nodes pre-assigned before their box ------------------------------------------------------

PRE = "market-9"


def preassigned(api: TestClient, engine: Engine, tokens: dict[Role, str]) -> dict[str, Any]:
    """The registry world's site "Market", with node `PRE` pre-assigned to it by an operator and
    a shop S301, its account A0301 and meter 000000000931 on that node."""
    with session_factory(engine).begin() as session:
        world = make_registry(session)
    operator = bearer(tokens[Role.OPERATOR])
    body = {"site": "Market", "node": PRE, "name": "Market, hall 3"}
    assert api.post("/claims/nodes", json=body).status_code == 403  # an installer may not
    answer = api.post("/claims/nodes", json=body, headers=operator)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"node": PRE, "site": world["site"], "name": "Market, hall 3",
                             "status": "reserved"}  # fmt: skip
    assert api.post("/claims/nodes", json=body, headers=operator).status_code == 409  # taken
    with session_factory(engine).begin() as session:
        shop = add(session, entities.SHOPS, floor_id=world["floors"][0], number="S301",
                   category="food", area_m2=12, node=PRE)  # fmt: skip
        add(session, entities.ACCOUNTS, id="A0301", merchant_id=world["merchant"],
            shop_id=shop.id, account_type="merchant", tariff=None, credit_limit_fen=0,
            keep_power=False)  # fmt: skip
        add(session, entities.METERS, address="000000000931", protocol="dlt645", bus="rs485-1",
            node=PRE, shop_id=shop.id, multiplier=1)  # fmt: skip
    return world


def claim_node(api: TestClient, site: str, node: str) -> Any:
    return api.post("/claims", json={"site": site, "valid_s": 3600, "node": node})


def test_a_token_bound_to_a_preassigned_node_gives_that_node_and_its_meters(
    api: TestClient, engine: Engine, ca: CaFiles, tokens: dict[Role, str]
) -> None:
    world = preassigned(api, engine, tokens)
    issued = claim_node(api, "Market", PRE)
    assert issued.status_code == 201, issued.text
    assert issued.json()["node"] == PRE
    unbound = claim(api, "Market")  # an unbound token never takes a pre-assigned node id
    box = Box()
    done = api.post("/provision", json=box.body(issued.json()["token"]))
    assert done.status_code == 200, done.text
    got = done.json()
    assert got["node"] == PRE
    assert got["config"] is not None and "000000000931" in json.dumps(got["config"])
    certificate = x509.load_pem_x509_certificate(got["certificate"].encode())
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == PRE
    with session_factory(engine)() as session:
        row = session.get_one(Concentrator, PRE)
        assert (row.status, row.public_key, row.site_id) == (
            "active", box.node_key.public_key.public_bytes_raw().hex(), world["site"])  # fmt: skip
    other = api.post("/provision", json=Box().body(unbound))
    assert other.status_code == 200 and other.json()["node"] == "market-1"
    listed = api.get("/claims").json()["items"]
    assert [(c["for_node"], c["node"]) for c in listed] == [(None, "market-1"), (PRE, PRE)]


def test_a_provisioned_node_cannot_be_claimed_again(
    api: TestClient, engine: Engine, ca: CaFiles, tokens: dict[Role, str]
) -> None:
    preassigned(api, engine, tokens)
    first, second = (claim_node(api, "Market", PRE).json()["token"] for _ in range(2))
    assert api.post("/provision", json=Box().body(first)).status_code == 200
    before, alarms = counts(engine), refusals(engine)
    refused = api.post("/provision", json=Box().body(second))
    assert refused.status_code == 401
    assert counts(engine) == before and refusals(engine) == alarms + 1  # refused and logged
    log = api.get("/operator-log", headers=bearer_of(api, engine)).json()["items"]
    reasons = [i["after"]["reason"] for i in log if i["action"] == "claim.refused"]
    assert reasons == [f"node {PRE} is already provisioned: it cannot be claimed again"]
    again = claim_node(api, "Market", PRE)  # nor is a new token bound to it issued
    assert again.status_code == 409 and "already provisioned" in again.text
    upload = api.post("/concentrators", json={"node": PRE, "public_key": "00" * 32})
    assert upload.status_code in (409, 422)


def test_a_token_for_a_node_of_another_site_or_no_reserved_node_is_refused(
    api: TestClient, engine: Engine, ca: CaFiles, tokens: dict[Role, str], cloud_key: NodeKey
) -> None:
    preassigned(api, engine, tokens)
    with session_factory(engine)() as session:
        before = session.scalar(select(func.count()).select_from(Claim))
    refused = (("Empty", PRE, 409), ("Market", "edge-0001", 409), ("Market", "market-77", 404),
               ("Market", "bad node!", 422))  # fmt: skip
    for site, node, code in refused:
        answer = claim_node(api, site, node)
        assert answer.status_code == code, (site, node, answer.text)
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Claim)) == before
        assert session.get_one(Concentrator, PRE).status == "reserved"
    # Nothing a reserved node would send is taken: it has no key to verify with.
    edge = FakeEdge(PRE)
    ingest = Ingest(engine, cloud_key, lambda: T0)
    ack = open_ack(ingest.handle_batch(PRE, edge.payload(1, 1, [])), cloud_key)
    assert ack.status is AckStatus.REFUSED and "not provisioned" in ack.reason
    assert ingest.handle_status(PRE, edge.status(True)) == []
    with session_factory(engine)() as session:
        row = session.get_one(Concentrator, PRE)
        assert (row.status, row.public_key, row.upto, row.online) == ("reserved", "", 0, False)


def test_a_claim_token_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installer types `--token T`: a token starting with "-" is taken for an option (the
    provisioning test failed on one, 1 in 64), so one is drawn again."""
    drawn = iter(["-leading-dash", "-again", "fine-token"])
    monkeypatch.setattr(claims.secrets, "token_urlsafe", lambda n: next(drawn))
    assert claims._new_token() == "fine-token"
