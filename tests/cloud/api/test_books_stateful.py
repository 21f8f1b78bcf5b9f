"""A Hypothesis state machine over the money operations (issue 13): recharges, corrections
(small, and large ones approved or rejected by a second user), voids (the edge refusing a
command), refunds (`cash` and `original`, paid or cancelled), meter swaps (plausible, or 1 GWh
over and overridden), moves across the two concentrators and each concentrator's monthly
subsidy, through the API and a concentrator that keeps the command contract. After every step
the books hold (`cloud.reports.books.verify`: no transfer twice, one subsidy per account and
period across the chains, every payment credited once, the projection as the ledger posts it,
the deposits report's totals equal to the ledger's), every unit sums to zero, and no `original`
refund sends a payment back more than its net."""

from __future__ import annotations

import itertools
from collections import defaultdict

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, select

from cloud.app import create_app
from cloud.db.engine import session_factory
from cloud.db.operations import Refund
from cloud.operations.refunds import payment_nets
from cloud.people.auth import Role
from cloud.reports import books
from ledger.chain import NodeKey
from tests.cloud.api.conftest import M1, NODE, OTHER, Site, bearer
from tests.cloud.api.contract_edge import ContractEdge
from tests.cloud.api.test_operations import assert_books_balance
from tests.cloud.conftest import Clock

ACCOUNTS = ("A0001", "A0002", "A0101")
APPROVE_ABOVE = 3_000
ANSWERS = (200, 201, 404, 409, 422)
_numbers = itertools.count(1)


def test_the_books_hold_after_every_step(
    site: Site, engine: Engine, cloud_key: NodeKey, clock: Clock, tokens: dict[Role, str]
) -> None:
    examples = 12 if engine.dialect.name == "sqlite" else 4
    app = create_app(engine, cloud_key, clock, approve_above_fen=APPROVE_ABOVE)
    finance, operator = bearer(tokens[Role.FINANCE]), bearer(tokens[Role.OPERATOR])
    edge = ContractEdge(site)
    home = {"A0001": NODE, "A0002": NODE, "A0101": OTHER}
    sessions = session_factory(engine)

    with TestClient(app) as client:
        client.headers.update(bearer(tokens[Role.ADMIN]))

        def answered(answer: object) -> None:
            status = getattr(answer, "status_code", None)
            assert status in ANSWERS, getattr(answer, "text", answer)

        class Books(RuleBasedStateMachine):
            @rule(account=st.sampled_from(ACCOUNTS), fen=st.integers(1, 20_000))
            def recharge(self, account: str, fen: int) -> None:
                answered(client.post("/recharges", json={
                    "account": account, "fen": fen, "method": "cash",
                    "payment": f"BP{next(_numbers)}"}))  # fmt: skip

            @rule(account=st.sampled_from(ACCOUNTS), fen=st.integers(-8_000, 8_000),
                  reason=st.sampled_from(["keyed wrong", "paid twice", "fixed"]),
                  decide=st.sampled_from([None, "approve", "reject"]))  # fmt: skip
            def correct(self, account: str, fen: int, reason: str, decide: str | None) -> None:
                items = client.get("/recharges", params={"account": account}).json()["items"]
                if not items:
                    return
                ref = f"BC{next(_numbers)}"
                answer = client.post("/corrections", json={
                    "account": account, "fen": fen or 1, "original": items[-1]["payment"],
                    "reason": reason, "correction": ref})  # fmt: skip
                answered(answer)
                if decide and answer.status_code == 201 and answer.json()["status"] == "held":
                    assert client.post(f"/corrections/{ref}/{decide}").status_code == 403
                    answered(client.post(f"/corrections/{ref}/{decide}", headers=finance))

            @rule(node=st.sampled_from([NODE, OTHER]))
            def void(self, node: str) -> None:
                waiting = edge.pending_commands(node)
                if waiting:
                    edge.refuse.add(waiting[0].id)

            @rule(account=st.sampled_from(ACCOUNTS), method=st.sampled_from(["cash", "original"]))
            def refund(self, account: str, method: str) -> None:
                answered(client.post("/refunds", json={
                    "account": account, "method": method, "grace_wh": 0, "grace_hours": 0,
                    "refund": f"BR{next(_numbers)}"}))  # fmt: skip

            @rule(verb=st.sampled_from(["pay", "cancel"]), pick=st.integers(0, 3))
            def close_refund(self, verb: str, pick: int) -> None:
                wanted = "reserved" if verb == "pay" else "requested"
                items = client.get("/refunds", params={"status": wanted}).json()["items"]
                if items:
                    refund = items[pick % len(items)]["id"]
                    answered(client.post(f"/refunds/{refund}/{verb}", headers=finance))

            @rule(wild=st.booleans())
            def swap(self, wild: bool) -> None:
                n = next(_numbers)
                final = 101_200 + (1_000_000_000 if wild else n)
                new = {"address": f"{900_000_000 + n:012d}", "protocol": "dlt645"}
                answer = client.post("/meter-swaps", json={
                    "old": M1, "final_wh": final, "initial_wh": 0, "swap": f"BS{n}",
                    "new": new})  # fmt: skip
                answered(answer)
                if answer.status_code == 201 and answer.json()["status"] == "held":
                    answered(client.post(f"/meter-swaps/BS{n}/approve", headers=operator))

            @rule(account=st.sampled_from(ACCOUNTS))
            def move(self, account: str) -> None:
                to_node = OTHER if home[account] == NODE else NODE
                n = next(_numbers)
                answer = client.post("/moves", json={
                    "account": account, "to_shop": f"S{n}", "to_node": to_node,
                    "move": f"BM{n}"})  # fmt: skip
                answered(answer)

            @rule(node=st.sampled_from([NODE, OTHER, "both"]))
            def sync(self, node: str) -> None:
                if node == "both":
                    edge.sync_all()  # every answer in, every command it made due too
                else:
                    edge.sync(node)
                for move in client.get("/moves", params={"status": "settled"}).json()["items"]:
                    if move["fen"]:
                        home[move["account"]] = move["to_node"]

            @rule(period=st.sampled_from(["2026-11", "2026-12"]))
            def subsidy(self, period: str) -> None:
                for account in ACCOUNTS:  # each concentrator's monthly run, for its tenants
                    edge.issue_subsidy(home[account], account, period)

            @invariant()
            def books_hold(self) -> None:
                assert_books_balance(site)
                with sessions() as session:
                    assert books.verify(session) == []
                    sent: dict[tuple[str, str], int] = defaultdict(int)
                    for refund in session.scalars(
                        select(Refund).where(Refund.status.in_(("reserved", "paid")))
                    ):
                        for source in refund.sources:
                            if source["payment"]:
                                sent[(refund.account, source["payment"])] += source["fen"]
                    for account in ACCOUNTS:
                        for recharge, net in payment_nets(session, account):
                            assert sent.get((account, recharge.payment), 0) <= max(net, 0)

        run_state_machine_as_test(
            Books,
            settings=settings(max_examples=examples, stateful_step_count=20, deadline=None,
                              database=None, suppress_health_check=list(HealthCheck)),
        )  # fmt: skip
