"""WeChat Pay API v3's scheme, both directions, with keys made here: what verifies, and every
way a notification must not (payments.md)."""

from __future__ import annotations

import json
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from cloud.errors import PaymentRefused
from cloud.payments import wechat_scheme as scheme

NOW = 1_765_000_000
APIV3 = b"0123456789abcdef0123456789abcdef"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PLATFORM, OTHER, MERCHANT = _key(), _key(), _key()
KEYS = {"PUB_KEY_ID_01": PLATFORM.public_key()}


def _notice(body: bytes, key: rsa.RSAPrivateKey = PLATFORM, serial: str = "PUB_KEY_ID_01",
            timestamp: int = NOW) -> dict[str, str]:  # fmt: skip
    return scheme.signed_headers(key, serial, body, timestamp=timestamp, nonce="n0nce")


BODY = json.dumps({"id": "EV-1", "event_type": "TRANSACTION.SUCCESS"}).encode()


def test_a_signed_notification_verifies() -> None:
    scheme.verify_signed(_notice(BODY), BODY, KEYS, NOW)


def test_header_names_are_matched_without_case() -> None:
    headers = {name.lower(): value for name, value in _notice(BODY).items()}
    scheme.verify_signed(headers, BODY, KEYS, NOW)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (_notice(BODY, key=OTHER), BODY, "bad_signature"),  # forged: another key
        (_notice(BODY), BODY.replace(b"EV-1", b"EV-2"), "bad_signature"),  # tampered
        (_notice(BODY), json.dumps(json.loads(BODY), indent=1).encode(), "bad_signature"),
        (_notice(BODY, timestamp=NOW - 301), BODY, "stale"),
        (_notice(BODY, timestamp=NOW + 301), BODY, "stale"),
        (_notice(BODY, timestamp=NOW * 1000), BODY, "bad_signature"),  # milliseconds
        (_notice(BODY, serial="PUB_KEY_ID_99"), BODY, "unknown_serial"),
        ({**_notice(BODY), "Wechatpay-Signature": "WECHATPAY/SIGNTEST/abc"}, BODY, "signtest"),
        ({"Wechatpay-Timestamp": str(NOW)}, BODY, "unsigned"),
    ],
    ids=["forged", "tampered", "reserialised", "stale", "future", "millis", "serial",
         "signtest", "unsigned"],
)  # fmt: skip
def test_what_must_not_verify(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(PaymentRefused) as refused:
        scheme.verify_signed(headers, body, KEYS, NOW)
    assert refused.value.reason == reason


def test_during_a_rotation_both_keys_verify_by_serial() -> None:
    keys = {**KEYS, "5157F09EFDC096DE": OTHER.public_key()}
    scheme.verify_signed(_notice(BODY), BODY, keys, NOW)
    scheme.verify_signed(_notice(BODY, key=OTHER, serial="5157F09EFDC096DE"), BODY, keys, NOW)
    with pytest.raises(PaymentRefused):  # the serial chooses the key: no trying every key
        scheme.verify_signed(_notice(BODY, key=OTHER), BODY, keys, NOW)


def test_resource_round_trip_and_tampering() -> None:
    plain = json.dumps({"out_trade_no": "VB1", "amount": {"total": 1990}}).encode()
    resource = scheme.encrypt_resource(
        APIV3, plain, nonce="abcdefghijkl", associated_data="transaction", original_type="x"
    )
    assert scheme.decrypt_resource(APIV3, resource)["amount"] == {"total": 1990}
    for change in ({"associated_data": "other"}, {"nonce": "abcdefghijkm"},
                   {"ciphertext": resource["ciphertext"][:-4] + "AAAA"}):  # fmt: skip
        with pytest.raises(PaymentRefused) as refused:
            scheme.decrypt_resource(APIV3, {**resource, **change})
        assert refused.value.reason == "undecryptable"
    with pytest.raises(PaymentRefused):
        scheme.decrypt_resource(b"f" * 32, resource)


def test_a_request_signed_by_the_merchant_verifies_at_the_provider() -> None:
    body = b'{"appid":"wx1","amount":{"total":100}}'
    header = scheme.authorization(
        mchid="190", serial="M1", key=MERCHANT, method="POST",
        path_query="/v3/pay/transactions/native", body=body, timestamp=NOW, nonce="abc",
    )  # fmt: skip
    keys = {"M1": MERCHANT.public_key()}
    auth = scheme.verify_request(header, method="POST", path_query="/v3/pay/transactions/native",
                                 body=body, keys=keys, now=NOW)  # fmt: skip
    assert (auth.mchid, auth.serial) == ("190", "M1")
    with pytest.raises(PaymentRefused):
        scheme.verify_request(header, method="POST", path_query="/v3/pay/transactions/h5",
                              body=body, keys=keys, now=NOW)  # fmt: skip


def test_jsapi_parameters_are_signed_for_getbrandwcpayrequest() -> None:
    params = scheme.jsapi_parameters(
        MERCHANT, appid="wx1", prepay_id="wx201410272009395522657a690389285100",
        timestamp=NOW, nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )  # fmt: skip
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert scheme.verify_jsapi(MERCHANT.public_key(), params)
    assert not scheme.verify_jsapi(MERCHANT.public_key(), {**params, "timeStamp": "1"})


@given(st.binary(max_size=300), st.dictionaries(st.text(max_size=30), st.text(max_size=80)))
def test_any_bytes_and_headers_are_refused(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(PaymentRefused):
        scheme.verify_signed(headers, body, KEYS, NOW)


@given(st.binary(max_size=300))
def test_any_body_is_json_or_our_error(body: bytes) -> None:
    try:
        value = scheme.json_body(body)
    except PaymentRefused:
        return
    assert isinstance(value, dict)


@given(st.dictionaries(st.sampled_from(["algorithm", "ciphertext", "nonce", "associated_data"]),
                       st.one_of(st.text(max_size=40), st.integers(), st.none())))  # fmt: skip
def test_any_resource_decrypts_or_is_our_error(resource: dict[str, object]) -> None:
    with pytest.raises(PaymentRefused):
        scheme.decrypt_resource(APIV3, {"algorithm": "AEAD_AES_256_GCM", **resource})


@given(st.text(max_size=200))
def test_any_authorization_header_parses_or_is_our_error(header: str) -> None:
    with pytest.raises(PaymentRefused):
        scheme.verify_request(header, method="GET", path_query="/", body=b"",
                              keys={}, now=NOW)  # fmt: skip


def test_the_apiv3_key_is_32_ascii_characters() -> None:
    assert scheme.apiv3_key(APIV3 + b"\n") == APIV3
    with pytest.raises(ValueError):
        scheme.apiv3_key(secrets.token_bytes(32) + b"x")
