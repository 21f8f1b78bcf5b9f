"""Random sequences of money operations (recharges, corrections, refunds paid or cancelled,
moves across concentrators) interleaved with edge uploads and refusals, against the ledger
invariants as the cloud sees them: every unit sums to zero over all chains, every payment and
operation is credited once (one edge entry, one cloud post or void), a refund never touches a
subsidy pocket, and once every command is answered nothing is left in flight (a refused
recharge is voided, not left pending)."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cloud.db.engine import session_factory
from cloud.db.models import LedgerEntry, Recharge
from cloud.db.operations import Correction, Move, Refund
from cloud.keys import CLOUD_NODE
from ledger.accounts import System, system_id
from ledger.ids import derive_id
from tests.cloud.api.conftest import NODE, OTHER, Site
from tests.cloud.api.contract_edge import ContractEdge
from tests.cloud.api.test_operations import assert_books_balance, balances
from tests.cloud.registry_world import vacant_shops

ACCOUNTS = ("A0001", "A0002", "A0101")
_numbers = itertools.count(1)

# Empty registry shops on each concentrator (the registry knows no account, so they stay free).
VACANT = {NODE: ("S910", "S911", "S912"), OTHER: ("S920", "S921", "S922")}
steps = st.one_of(
    st.tuples(st.just("recharge"), st.sampled_from(ACCOUNTS), st.integers(1, 50_000)),
    st.tuples(st.just("correct"), st.sampled_from(ACCOUNTS), st.integers(-5_000, 5_000)),
    st.tuples(st.just("refund"), st.sampled_from(ACCOUNTS), st.sampled_from(["cash", "original"])),
    st.tuples(st.just("pay"), st.integers(0, 5)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("move"), st.sampled_from(ACCOUNTS), st.sampled_from([NODE, OTHER])),
    st.tuples(st.just("sync"), st.sampled_from([NODE, OTHER])),
    st.tuples(st.just("refuse"), st.sampled_from([NODE, OTHER])),
)


def _ids(site: Site, tag: str, ref: str, node: str | None = None) -> int:
    where = [LedgerEntry.transfer_id == f"{derive_id(tag, ref):032x}"]
    if node is not None:
        where.append(LedgerEntry.node == node)
    with session_factory(site.engine)() as session:
        return session.scalar(select(func.count()).where(*where)) or 0


def check_invariants(site: Site) -> None:
    assert_books_balance(site)
    with session_factory(site.engine)() as session:
        total = session.scalar(select(func.count()).select_from(LedgerEntry))
        distinct = session.scalar(
            select(func.count()).select_from(
                select(LedgerEntry.node, LedgerEntry.transfer_id).distinct().subquery()
            )
        )
        assert total == distinct  # no transfer twice in any chain
        recharges = session.scalars(select(Recharge)).all()
        corrections = session.scalars(select(Correction)).all()
        refunds = session.scalars(select(Refund)).all()
    for recharge in recharges:
        booked = _ids(site, "recharge", recharge.payment)
        posted = _ids(site, "recharge-post", recharge.payment, CLOUD_NODE)
        voided = _ids(site, "recharge-void", recharge.payment, CLOUD_NODE)
        expected = {"pending": (0, 0, 0), "posted": (1, 1, 0), "voided": (0, 0, 1)}
        assert (booked, posted, voided) == expected[recharge.status]
    for correction in corrections:
        posts = _ids(site, "correction-post", correction.id, CLOUD_NODE)
        voids = _ids(site, "correction-void", correction.id, CLOUD_NODE)
        expected = {"pending": (0, 0), "posted": (1, 0), "failed": (0, 1)}[correction.status]
        assert (posts, voids) == expected
        assert _ids(site, "correction", correction.id) == (correction.status == "posted")
    for refund in refunds:
        assert _ids(site, "refund-payout", refund.id, CLOUD_NODE) == (refund.status == "paid")


def _original(client: TestClient, account: str) -> str | None:
    items = client.get("/recharges", params={"account": account}).json()["items"]
    return items[-1]["payment"] if items else None


def _do(client: TestClient, edge: ContractEdge, step: tuple[Any, ...]) -> None:
    n = next(_numbers)
    kind = step[0]
    answer = None
    if kind == "recharge":
        body = {"account": step[1], "fen": step[2], "method": "cash", "payment": f"PP{n}"}
        answer = client.post("/recharges", json=body)
    elif kind == "correct":
        original = _original(client, step[1])
        if original is None:
            return
        body = {"account": step[1], "fen": step[2] or 1, "original": original,
                "reason": f"fix {n}"}  # fmt: skip
        answer = client.post("/corrections", json=body)
    elif kind == "refund":
        answer = client.post("/refunds", json={"account": step[1], "method": step[2],
                                               "grace_wh": 500, "grace_hours": 24,
                                               "refund": f"RR{n}"})  # fmt: skip
    elif kind in ("pay", "cancel"):
        open_ = client.get("/refunds", params={"status": "reserved" if kind == "pay" else
                                                         "requested"}).json()["items"]  # fmt: skip
        if open_:
            refund = open_[step[1] % len(open_)]["id"]
            answer = client.post(f"/refunds/{refund}/{kind}")
    elif kind == "move":
        shop = VACANT[step[2]][n % len(VACANT[step[2]])]  # a move needs a shop that exists
        answer = client.post("/moves", json={"account": step[1], "to_shop": shop,
                                             "to_node": step[2], "move": f"MM{n}"})  # fmt: skip
    elif kind == "sync":
        edge.sync(step[1])
    elif kind == "refuse":
        waiting = edge.pending_commands(step[1])
        if waiting:
            edge.refuse.add(waiting[0].id)
    if answer is not None:
        assert answer.status_code in (200, 201, 404, 409, 422), answer.text


def test_random_operations_keep_the_books(client: TestClient, site: Site) -> None:
    edge = ContractEdge(site)
    with session_factory(site.engine).begin() as session:
        vacant_shops(session, {shop: node for node, shops in VACANT.items() for shop in shops})
    examples = 15 if site.engine.dialect.name == "sqlite" else 4

    @given(st.lists(steps, min_size=1, max_size=14))
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(sequence: list[tuple[Any, ...]]) -> None:
        for step in sequence:
            _do(client, edge, step)
            check_invariants(site)
        edge.sync_all()
        check_invariants(site)
        with session_factory(site.engine)() as session:
            moving = session.scalars(select(Move.status).where(Move.status.in_(
                ("requested", "in_transit", "arrived")))).all()  # fmt: skip
            waiting = session.scalars(select(Correction).where(Correction.status == "pending"))
            in_flight = session.scalars(select(Recharge).where(Recharge.status == "pending"))
            assert not moving and not waiting.all() and not in_flight.all()
        assert balances(site).get(system_id(System.MOVES_IN_TRANSIT), (0, 0)) == (0, 0)

    run()
