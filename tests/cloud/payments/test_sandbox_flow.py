"""Paying in the sandbox end to end: the cloud opens the order at the (played) provider, a
person pays on the sandbox's page, the provider's notification reaches the cloud over HTTP,
and the order becomes exactly one recharge — for every channel of both providers."""

from __future__ import annotations

import dataclasses

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


def test_alipay_wap_in_gbk_returns_the_browser_and_credits(world: World) -> None:
    world.knobs.alipay_charset = "gbk"
    back = f"{world.cloud_url}/health"
    order = world.order("alipay", "wap", fen=2000, return_url=back)
    no = str(order["out_trade_no"])
    with httpx.Client() as browser:
        page = browser.get(order["pay"]["page_url"], follow_redirects=True)  # type: ignore[index]
        assert page.status_code == 200 and "支付宝" in page.text and "20.00" in page.text
        paid = browser.post(f"{world.sandbox.pay_url(no)}/confirm")
    assert paid.status_code == 303 and paid.headers["location"] == back
    world.wait_state(no, "credited")
    world.wait_for(lambda: world.sandbox.state.accepted(no))
    [attempt] = world.sandbox.state.accepted(no)
    assert attempt.answer == "success"
    [recharge] = world.recharges(no)
    assert (recharge.method, recharge.operator, recharge.fen) == ("alipay", "alipay", 2000)
    world.books_sound()


def test_alipay_precreate_qr_code_is_the_pay_page(world: World) -> None:
    order = world.order("alipay", "precreate", fen=1)
    no = str(order["out_trade_no"])
    assert order["pay"]["qr_code"] == world.sandbox.pay_url(no)  # type: ignore[index]
    world.sandbox.pay(no)
    world.wait_state(no, "credited")
    world.books_sound()


def test_wechat_jsapi_parameters_are_signed_by_the_merchant(world: World) -> None:
    order = world.order("wechat", "jsapi", payer="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    jsapi = order["pay"]["jsapi"]  # type: ignore[index]
    assert jsapi["appId"] == world.sandbox.keys.appid and jsapi["package"].startswith("prepay_id=")
    assert wechat_scheme.verify_jsapi(world.sandbox.keys.merchant.public_key(), jsapi)
    no = str(order["out_trade_no"])
    world.sandbox.pay(no)
    world.wait_state(no, "credited")
    world.books_sound()


def test_wechat_h5_and_a_jsapi_order_without_payer(world: World) -> None:
    order = world.order("wechat", "h5", return_url="https://shop.example/back")
    assert "redirect_url=https%3A%2F%2Fshop.example%2Fback" in order["pay"]["h5_url"]  # type: ignore[index]
    body = {"account": ACCOUNT, "fen": 100, "provider": "wechat", "channel": "jsapi"}
    assert world.client.post("/payments/orders", json=body).status_code == 422
    body = {"account": ACCOUNT, "fen": 100, "provider": "alipay", "channel": "native"}
    assert world.client.post("/payments/orders", json=body).status_code == 422


def test_duplicate_notices_from_the_provider_credit_once(world: World) -> None:
    world.knobs.duplicates = 4
    no = str(world.order()["out_trade_no"])
    world.sandbox.pay(no)
    world.wait_state(no, "credited")
    world.wait_for(lambda: len(world.verdicts(no)) == 5)
    assert sorted(v for v, _ in world.verdicts(no)) == ["accepted"] + ["duplicate"] * 4
    assert len(world.recharges(no)) == 1
    world.books_sound()


def test_a_notice_that_overtakes_the_create_answer(world: World) -> None:
    world.knobs.notify_before_answer = True
    order = world.order("wechat", "native")
    no = str(order["out_trade_no"])
    # the notice was taken while the create call waited for the provider's answer
    assert order["state"] == "credited" and order["pay"]["code_url"]  # type: ignore[index]
    assert [c[1] for c in world.causes(no)] == ["created", "paid", "credited"]
    assert len(world.recharges(no)) == 1
    world.books_sound()


def test_wechat_h5_pays_and_returns_to_the_redirect_url(world: World) -> None:
    back = f"{world.cloud_url}/health"
    order = world.order("wechat", "h5", fen=300, return_url=back)
    no = str(order["out_trade_no"])
    with httpx.Client() as browser:
        page = browser.get(order["pay"]["h5_url"])  # type: ignore[index]
        assert page.status_code == 200 and "微信支付" in page.text
        paid = browser.post(f"{world.sandbox.pay_url(no)}/confirm", params={"redirect_url": back})
    assert paid.status_code == 303 and paid.headers["location"] == back
    world.wait_state(no, "credited")


def test_the_sandbox_will_not_take_an_expired_order(world: World) -> None:
    no = str(world.order("alipay", "precreate")["out_trade_no"])
    world.clock.advance(seconds=1801)
    assert httpx.post(f"{world.sandbox.pay_url(no)}/confirm").status_code == 409
    assert world.row(no).state == "created" and world.recharges(no) == []


def test_a_provider_that_does_not_answer_is_502_and_the_order_waits(world: World) -> None:
    wechat = world.providers.wechat
    assert wechat is not None
    wechat.settings = dataclasses.replace(wechat.settings, api_base="http://127.0.0.1:9")
    body = {"account": ACCOUNT, "fen": 100, "provider": "wechat", "channel": "native"}
    answer = world.client.post("/payments/orders", json=body)
    assert answer.status_code == 502 and answer.json()["error"] == "provider_unavailable"
    [listed] = world.client.get("/payments/orders").json()["items"]
    assert listed["state"] == "created"  # the sweeper asks about it, and closes it at expiry


def test_a_provider_that_refuses_the_order_fails_it(world: World) -> None:
    wechat = world.providers.wechat
    assert wechat is not None
    wechat.settings = dataclasses.replace(wechat.settings, appid="wx-not-this-merchant")
    body = {"account": ACCOUNT, "fen": 100, "provider": "wechat", "channel": "native"}
    answer = world.client.post("/payments/orders", json=body)
    assert answer.status_code == 409 and "APPID_MCHID_NOT_MATCH" in answer.json()["detail"]
    [listed] = world.client.get("/payments/orders").json()["items"]
    assert listed["state"] == "failed"
    shown = world.client.get(f"/payments/orders/{listed['out_trade_no']}").json()
    assert shown["transitions"][-1]["cause"] == "provider_refused"
    assert shown["transitions"][-1]["facts"]["code"] == "APPID_MCHID_NOT_MATCH"
