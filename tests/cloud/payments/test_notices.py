"""Notifications signed here, with the sandbox's keys and the providers' schemes, posted to a
real cloud: what credits (once), and every way a notice must not — each checked against the
books afterwards. The concurrent twins run against PostgreSQL, where the row lock decides."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cloud.payments import alipay_scheme, money, wechat_scheme
from cloud.payments.sandbox.keys import SandboxKeys, new_key
from cloud.payments.sandbox.state import Knobs
from tests.cloud.payments.conftest import MakeWorld, World

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


# -- WeChat Pay ---------------------------------------------------------------------------------
def transaction(world: World, no: str, fen: int, **changes: Any) -> dict[str, Any]:
    keys = world.sandbox.keys
    content: dict[str, Any] = {
        "appid": keys.appid, "mchid": keys.mchid, "out_trade_no": no,
        "transaction_id": changes.pop("transaction_id", f"4200{secrets.randbelow(10**24):024d}"),
        "trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
        "bank_type": "OTHERS", "success_time": world.clock().astimezone(SHANGHAI).isoformat(),
        "payer": {"openid": "o-test"}, "amount": {"total": fen, "payer_total": fen,
                                                  "currency": "CNY", "payer_currency": "CNY"},
    }  # fmt: skip
    content.update(changes)
    return content


def wechat_body(world: World, content: dict[str, Any], event_id: str = "EV-1") -> bytes:
    resource = wechat_scheme.encrypt_resource(
        world.sandbox.keys.apiv3_key, json.dumps(content, ensure_ascii=False).encode(),
        nonce=secrets.token_hex(6), associated_data="transaction", original_type="transaction",
    )  # fmt: skip
    return json.dumps({"id": event_id, "create_time": "2026-12-01T10:00:00+08:00",
                       "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
                       "summary": "支付成功", "resource": resource}).encode()  # fmt: skip


def wechat_headers(world: World, body: bytes, *, key: rsa.RSAPrivateKey | None = None,
                   serial: str | None = None, skew_s: int = 0) -> dict[str, str]:  # fmt: skip
    signing_serial, signing_key = world.sandbox.keys.signing_platform
    headers = wechat_scheme.signed_headers(
        key or signing_key, serial or signing_serial, body,
        timestamp=int(world.clock().timestamp()) + skew_s, nonce=secrets.token_hex(16),
    )  # fmt: skip
    return {**headers, "Content-Type": "application/json"}


def post_wechat(world: World, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{world.cloud_url}/payments/wechat/notify", content=body, headers=headers)


def open_order(world: World, provider: str = "wechat", fen: int = 1990) -> str:
    channel = "native" if provider == "wechat" else "precreate"
    return str(world.order(provider, channel, fen=fen)["out_trade_no"])


def test_a_valid_notice_credits_and_its_duplicates_nothing_more(world: World) -> None:
    no = open_order(world)
    content = transaction(world, no, 1990)
    body = wechat_body(world, content)
    first = post_wechat(world, body, wechat_headers(world, body))
    assert first.status_code == 204 and first.content == b""
    assert world.row(no).state == "credited"  # stored before the answer
    again = post_wechat(world, body, wechat_headers(world, body))
    assert again.status_code == 204
    world.clock.advance(days=1)  # the last retry, a day later, signed anew
    late = wechat_body(world, content, event_id="EV-1")
    assert post_wechat(world, late, wechat_headers(world, late)).status_code == 204
    assert [v for v, _ in world.verdicts(no)] == ["accepted", "duplicate", "duplicate"]
    assert len(world.recharges(no)) == 1
    world.books_sound()


def _forged(world: World, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, wechat_headers(world, body, key=new_key())


def _tampered(world: World, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = wechat_headers(world, body)
    return body.replace(b'"EV-1"', b'"EV-2"'), headers


def _reserialised(world: World, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = wechat_headers(world, body)
    return json.dumps(json.loads(body), indent=2).encode(), headers


def _stale(world: World, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, wechat_headers(world, body, skew_s=-301)


def _signtest(world: World, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = wechat_headers(world, body)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    return body, headers


def _unknown_serial(world: World, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, wechat_headers(world, body, serial="PUB_KEY_ID_0000000000000000000000000099")


@pytest.mark.parametrize(
    ("make", "reason"),
    [(_forged, "bad_signature"), (_tampered, "bad_signature"), (_reserialised, "bad_signature"),
     (_stale, "stale"), (_signtest, "signtest"), (_unknown_serial, "unknown_serial")],
    ids=["forged", "tampered", "reserialised", "stale", "signtest", "unknown_serial"],
)  # fmt: skip
def test_a_notice_that_fails_verification_changes_nothing(
    world: World, make: Any, reason: str
) -> None:
    no = open_order(world)
    body, headers = make(world, wechat_body(world, transaction(world, no, 1990)))
    answer = post_wechat(world, body, headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == "FAIL" and reason in answer.json()["message"]
    assert world.row(no).state == "created" and world.recharges(no) == []
    [(verdict, why)] = world.verdicts()
    assert verdict == "refused" and why.startswith(reason)
    assert world.alarms("payment_mismatch") == 0
    world.books_sound()


@pytest.mark.parametrize(
    ("changes", "what"),
    [({"amount": {"total": 1, "currency": "CNY"}}, "fen"),
     ({"amount": {"total": 1990, "currency": "USD"}}, "CNY"),
     ({"mchid": "1900000999"}, "merchant"), ({"appid": "wx-someone-else"}, "merchant")],
    ids=["amount", "currency", "mchid", "appid"],
)  # fmt: skip
def test_a_verified_notice_that_does_not_match_raises_an_alarm(
    world: World, changes: dict[str, Any], what: str
) -> None:
    no = open_order(world)
    body = wechat_body(world, transaction(world, no, 1990, **changes))
    answer = post_wechat(world, body, wechat_headers(world, body))
    assert answer.status_code == 401 and what in answer.json()["message"]
    assert world.row(no).state == "created" and world.recharges(no) == []
    assert world.alarms("payment_mismatch") == 1
    world.books_sound()


def test_a_notice_for_an_order_not_ours_is_refused(world: World) -> None:
    body = wechat_body(world, transaction(world, "VB-NOT-OURS-0001", 1990))
    assert post_wechat(world, body, wechat_headers(world, body)).status_code == 401
    assert world.verdicts()[0][1].startswith("unknown_order")


def test_rotation_two_platform_keys_live(make_world: MakeWorld) -> None:
    keys = SandboxKeys()
    old_serial, old_key = keys.signing_platform
    keys.rotate()  # the cloud is configured with both
    world = make_world(keys=keys)
    for key, serial in ((old_key, old_serial), (None, None)):
        no = open_order(world)
        body = wechat_body(world, transaction(world, no, 1990))
        answer = post_wechat(world, body, wechat_headers(world, body, key=key, serial=serial))
        assert answer.status_code == 204, answer.text
        assert world.row(no).state == "credited"
    world.books_sound()


@pytest.mark.postgres
def test_twenty_concurrent_twins_credit_once(make_world: MakeWorld, engine: Any) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's (SQLite serialises the whole database)")
    world = make_world()
    no = open_order(world)
    body = wechat_body(world, transaction(world, no, 1990))
    answers: list[int] = []
    start = threading.Barrier(20)

    def send() -> None:
        start.wait()
        answers.append(post_wechat(world, body, wechat_headers(world, body)).status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [204] * 20
    assert sorted(v for v, _ in world.verdicts(no)) == ["accepted"] + ["duplicate"] * 19
    assert len(world.recharges(no)) == 1 and world.row(no).state == "credited"
    world.books_sound()


# -- Alipay -------------------------------------------------------------------------------------
def alipay_form(
    world: World, no: str, fen: int, *, charset: str = "utf-8",
    key: rsa.RSAPrivateKey | None = None, changes: dict[str, str] | None = None,
) -> dict[str, str]:  # fmt: skip
    keys = world.sandbox.keys
    params = {
        "notify_time": alipay_scheme.timestamp(world.clock()), "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(16), "charset": charset, "version": "1.0",
        "sign_type": "RSA2", "app_id": keys.app_id, "trade_no": "2026120122001400001",
        "out_trade_no": no, "buyer_id": "2088102177846880", "seller_id": keys.seller_id,
        "trade_status": "TRADE_SUCCESS", "total_amount": money.yuan(fen),
        "subject": "电费充值 A0001 商铺", "gmt_payment": alipay_scheme.timestamp(world.clock()),
    }  # fmt: skip
    params.update(changes or {})
    params["sign"] = alipay_scheme.sign(key or keys.alipay, params, notification=True)
    return params


def post_alipay(world: World, body: bytes) -> httpx.Response:
    return httpx.post(f"{world.cloud_url}/payments/alipay/notify", content=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip


def test_a_gbk_alipay_notice_credits_once(world: World) -> None:
    no = open_order(world, "alipay", 1999)
    form = alipay_form(world, no, 1999, charset="GBK")
    body = alipay_scheme.encode_form(form)
    assert b"%B5%E7%B7%D1" in body  # 电费 in GBK, not UTF-8
    for _ in range(2):
        answer = post_alipay(world, body)
        assert (answer.status_code, answer.text) == (200, "success")
    assert [v for v, _ in world.verdicts(no)] == ["accepted", "duplicate"]
    assert len(world.recharges(no)) == 1
    world.books_sound()


def test_a_gbk_notice_verified_as_utf8_fails(world: World) -> None:
    no = open_order(world, "alipay")
    form = alipay_form(world, no, 1990, charset="GBK")
    body = alipay_scheme.encode_form({**form, "charset": "utf-8"})  # says utf-8, signed in GBK
    assert post_alipay(world, body).text == "fail"
    assert world.row(no).state == "created"


@pytest.mark.parametrize(
    ("changes", "alarm"),
    [({"total_amount": "19.89"}, True), ({"seller_id": "2088999999999999"}, True),
     ({"app_id": "2021000000009999"}, True), ({"total_amount": "1e3"}, True)],
    ids=["amount", "seller", "app_id", "exponent"],
)  # fmt: skip
def test_an_alipay_notice_that_does_not_match(world: World, changes: dict[str, str],
                                              alarm: bool) -> None:  # fmt: skip
    no = open_order(world, "alipay")
    body = alipay_scheme.encode_form(alipay_form(world, no, 1990, changes=changes))
    assert post_alipay(world, body).text == "fail"
    assert world.row(no).state == "created" and world.recharges(no) == []
    assert world.alarms("payment_mismatch") == int(alarm)


def test_alipay_forged_tampered_and_unpaid(world: World) -> None:
    no = open_order(world, "alipay")
    forged = alipay_scheme.encode_form(alipay_form(world, no, 1990, key=new_key()))
    assert post_alipay(world, forged).text == "fail"
    tampered = alipay_form(world, no, 1990)
    tampered["buyer_id"] = "2088000000000666"
    assert post_alipay(world, alipay_scheme.encode_form(tampered)).text == "fail"
    waiting = alipay_form(world, no, 1990, changes={"trade_status": "WAIT_BUYER_PAY"})
    assert post_alipay(world, alipay_scheme.encode_form(waiting)).text == "success"
    assert world.row(no).state == "created" and world.recharges(no) == []
    assert [v for v, _ in world.verdicts(no)] == ["refused", "refused", "accepted"]
    assert world.alarms("payment_mismatch") == 0


def test_knobs_default_is_real_time() -> None:
    assert Knobs().time_scale == 1.0


def test_json_we_would_refuse_elsewhere_is_still_a_recorded_wechat_refusal(world: World) -> None:
    body = b'{"id": "EV-1", "id": "EV-2", "n": NaN}'  # a duplicate key, a NaN
    answer = post_wechat(world, body, wechat_headers(world, body))
    assert answer.status_code == 401 and answer.json()["code"] == "FAIL"
    [(verdict, reason)] = world.verdicts()
    assert verdict == "refused" and reason.startswith("malformed")
