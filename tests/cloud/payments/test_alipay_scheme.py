"""Alipay's RSA2 scheme, both directions, keys made here: UTF-8 and GBK notifications, answers
verified over their exact text, yuan never through a float."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from cloud.errors import Invalid, PaymentRefused
from cloud.payments import alipay_scheme as scheme
from cloud.payments.money import fen_of, yuan

ALIPAY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
APP = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _notice(charset: str, **changes: str) -> dict[str, str]:
    params = {
        "notify_id": "ac05099524730693a8b330c5ecf72da9786", "notify_type": "trade_status_sync",
        "app_id": "2021000000000001", "charset": charset, "version": "1.0", "sign_type": "RSA2",
        "trade_no": "2026120622001", "out_trade_no": "VB1", "total_amount": "19.90",
        "seller_id": "2088000000000001", "trade_status": "TRADE_SUCCESS",
        "subject": "电费充值 一楼101", "gmt_payment": "2026-12-06 10:00:00", "buyer_logon_id": "",
        **changes,
    }  # fmt: skip
    params["sign"] = scheme.sign(ALIPAY, params, notification=True)
    return params


@pytest.mark.parametrize("charset", ["utf-8", "GBK"])
def test_a_notification_posted_in_its_charset_verifies(charset: str) -> None:
    body = scheme.encode_form(_notice(charset))
    params = scheme.parse_form(body)
    assert params["subject"] == "电费充值 一楼101"
    scheme.verify(ALIPAY.public_key(), params, notification=True)


def test_a_gbk_notification_read_as_utf8_fails() -> None:
    body = scheme.encode_form(_notice("GBK")).replace(b"charset=GBK", b"charset=utf-8")
    with pytest.raises(PaymentRefused):
        scheme.verify(ALIPAY.public_key(), scheme.parse_form(body), notification=True)


@pytest.mark.parametrize(
    "change",
    [{"total_amount": "199.00"}, {"trade_status": "WAIT_BUYER_PAY"}, {"out_trade_no": "VB2"}],
)
def test_tampered_and_forged_notifications_fail(change: dict[str, str]) -> None:
    with pytest.raises(PaymentRefused):
        scheme.verify(ALIPAY.public_key(), {**_notice("utf-8"), **change}, notification=True)
    forged = {**_notice("utf-8"), **change}
    forged["sign"] = scheme.sign(APP, forged, notification=True)  # someone else's key
    with pytest.raises(PaymentRefused):
        scheme.verify(ALIPAY.public_key(), forged, notification=True)


def test_a_request_is_signed_with_sign_type_and_verifies_at_the_provider() -> None:
    params = scheme.request_params(
        APP, app_id="2021", method="alipay.trade.precreate",
        biz_content={"out_trade_no": "VB1", "total_amount": "0.01", "subject": "电费"},
        now=dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.UTC), notify_url="https://x/notify",
    )  # fmt: skip
    assert params["timestamp"] == "2026-12-06 10:00:00"  # Beijing time, seconds
    scheme.verify(APP.public_key(), params, notification=False)
    with pytest.raises(PaymentRefused):
        scheme.verify(APP.public_key(), {**params, "sign_type": "RSA"}, notification=False)


def test_an_answer_verifies_over_its_exact_text() -> None:
    body = scheme.signed_answer(ALIPAY, "alipay.trade.query", {"code": "10000", "msg": "成功"})
    assert scheme.verify_answer(ALIPAY.public_key(), "alipay.trade.query", body)["msg"] == "成功"
    spaced = body.replace(b'"code":"10000"', b'"code": "10000"')
    with pytest.raises(PaymentRefused):
        scheme.verify_answer(ALIPAY.public_key(), "alipay.trade.query", spaced)
    with pytest.raises(PaymentRefused):
        scheme.verify_answer(ALIPAY.public_key(), "alipay.trade.refund", body)


@given(st.binary(max_size=400))
def test_any_form_parses_or_is_our_error(body: bytes) -> None:
    try:
        params = scheme.parse_form(body)
    except PaymentRefused:
        return
    with pytest.raises(PaymentRefused):
        scheme.verify(ALIPAY.public_key(), params, notification=True)


@given(st.binary(max_size=400))
def test_any_answer_is_our_error_unless_signed(body: bytes) -> None:
    with pytest.raises(PaymentRefused):
        scheme.verify_answer(ALIPAY.public_key(), "alipay.trade.query", body)


@given(st.integers(min_value=0, max_value=10**12))
def test_yuan_round_trips(fen: int) -> None:
    assert fen_of(yuan(fen)) == fen


@pytest.mark.parametrize("text", ["19.9", "19.90", "0.01", "100"])
def test_yuan_strings(text: str) -> None:
    assert fen_of(text) == {"19.9": 1990, "19.90": 1990, "0.01": 1, "100": 10000}[text]


@pytest.mark.parametrize("text", ["-1.00", "1e3", "1.001", " 1.00", "01.00", "", "NaN", 19.9])
def test_what_is_not_a_yuan_amount(text: object) -> None:
    with pytest.raises(Invalid):
        fen_of(text)


def test_json_of_a_signed_answer_is_untouched() -> None:
    body = scheme.signed_answer(ALIPAY, "alipay.trade.precreate", {"qr_code": "https://q/1"})
    assert json.loads(body)["alipay_trade_precreate_response"] == {"qr_code": "https://q/1"}
