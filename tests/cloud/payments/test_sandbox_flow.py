"""Paying in the sandbox end to end: the cloud opens the order at the (played) provider, a
person pays on the sandbox's page, the provider's notification reaches the cloud over HTTP,
and the order becomes exactly one recharge — for every channel of both providers."""

from __future__ import annotations

import httpx

from cloud.payments import wechat_scheme
from tests.cloud.payments.conftest import ACCOUNT, World


def test_wechat_native_paid_on_the_page_is_credited_once(world: World) -> None:
    order = world.order("wechat", "native", fen=1990)
    no = str(order["out_trade_no"])
    assert order["state"] == "created"
    code_url = order["pay"]["code_url"]  # type: ignore[index]
    page = httpx.get(code_url)
    assert page.status_code == 200 and "19.90" in page.text and "确认支付" in page.text
    paid = httpx.post(f"{code_url}/confirm")
    assert paid.status_code == 200 and "支付成功" in paid.text
    row = world.wait_state(no, "credited")
    assert row.paid_fen == 1990 and row.transaction_id and row.transaction_id.startswith("4200")
    assert world.causes(no) == [(None, "created", "created"), ("created", "paid", "notice"),
                                ("paid", "credited", "notice")]  # fmt: skip
    [recharge] = world.recharges(no)
    assert (recharge.account, recharge.fen, recharge.method, recharge.operator) == (
        ACCOUNT, 1990, "wechat", "wechat-pay")  # fmt: skip
    assert world.verdicts(no) == [("accepted", "")]
    shown = world.client.get(f"/payments/orders/{no}").json()
    assert shown["state"] == "credited" and len(shown["transitions"]) == 3
    world.books_sound()
