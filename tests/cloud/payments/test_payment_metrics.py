"""Payment orders by state on `/metrics`, after a real payment through the provider sandbox:
the figures equal the database whichever app (process) answers the scrape."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text

from cloud.app import create_app
from cloud.metrics.endpoint import MetricsEndpoint
from cloud.metrics.figures import ORDER_STATES, PROVIDERS
from cloud.payments.states import OrderState
from tests.cloud.api.conftest import bearer
from tests.cloud.metrics_scrape import parse, value
from tests.cloud.payments.conftest import World

TOKEN = "payments-scrape-token-0123456789"


def test_the_order_states_mirrored_below_payments_are_the_real_ones() -> None:
    assert set(ORDER_STATES) == {state.value for state in OrderState}
    assert set(PROVIDERS) == {"wechat", "alipay"}


def test_payment_orders_by_state_equal_the_database(world: World) -> None:
    paid = world.order("wechat", "native", fen=1990)
    code_url = paid["pay"]["code_url"]  # type: ignore[index]
    assert httpx.post(f"{code_url}/confirm").status_code == 200
    world.wait_state(str(paid["out_trade_no"]), "credited")
    world.order("wechat", "native", fen=500)  # left unpaid: created
    world.order("alipay", "precreate", fen=700)
    # Another app on the same database answers the scrape, as another API process would.
    app = create_app(world.engine, world.key, world.clock, metrics=MetricsEndpoint(TOKEN))
    with TestClient(app) as client:
        answer = client.get("/metrics", headers=bearer(TOKEN))
    assert answer.status_code == 200, answer.text
    samples = parse(answer.text)
    with world.engine.connect() as connection:
        stored = {
            (provider, state): count
            for provider, state, count in connection.execute(
                text("SELECT provider, state, count(*) FROM payment_orders GROUP BY 1, 2")
            )
        }
    assert stored == {("wechat", "credited"): 1, ("wechat", "created"): 1,
                      ("alipay", "created"): 1}  # fmt: skip
    for provider in PROVIDERS:
        for state in ORDER_STATES:
            assert value(samples, "voltbook_payment_orders", provider=provider, state=state) == (
                stored.get((provider, state), 0)
            ), (provider, state)
    assert value(samples, "voltbook_payment_paid_uncredited_oldest_seconds") == 0
    assert value(samples, "voltbook_payment_refunds", state="processing") == 0
