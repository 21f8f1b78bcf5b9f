"""A refund notice's body is untrusted even when its signature verifies: any bytes, and any JSON
under a valid signature (with an encrypted resource of any JSON), are a `RefundNotice` or our
`PaymentRefused`, never another exception."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.errors import PaymentRefused
from cloud.payments import refund_notices, wechat_scheme
from cloud.payments.providers import WechatPay
from cloud.payments.sandbox.app import Sandbox, create_sandbox
from tests.cloud.payments.refund_world import providers_for

NOW = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)
REFUNDISH = st.fixed_dictionaries(
    {},
    optional={
        "mchid": st.sampled_from(["1900000109", "x", ""]) | st.integers(),
        "out_refund_no": st.text(max_size=70) | st.integers(),
        "out_trade_no": st.text(max_size=40),
        "refund_id": st.text(max_size=10) | st.none(),
        "refund_status": st.sampled_from(["SUCCESS", "CLOSED", "ABNORMAL", "PROCESSING", ""]),
        "amount": st.fixed_dictionaries(
            {},
            optional={
                "refund": st.integers(-5, 10**12) | st.text(max_size=4) | st.none(),
                "total": st.integers(-5, 10**12) | st.booleans(),
            },
        )
        | JSON,
    },
)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, WechatPay]]:
    sandbox = create_sandbox(now=lambda: NOW)
    providers = providers_for(
        sandbox,
        tmp_path_factory.mktemp("pay") / "keys",
        api_base="http://127.0.0.1:9",
        notify_base="http://127.0.0.1:9",
        clock=lambda: NOW,
    )
    assert providers.wechat is not None
    yield sandbox, providers.wechat
    providers.close()
    sandbox.stop()


def signed(sandbox: Sandbox, body: bytes) -> dict[str, str]:
    serial, key = sandbox.keys.signing_platform
    return wechat_scheme.signed_headers(
        key, serial, body, timestamp=int(NOW.timestamp()), nonce="n0nce"
    )


def read_or_refused(wechat: WechatPay, headers: dict[str, str], body: bytes) -> None:
    try:
        notice = refund_notices.read(wechat, headers, body, NOW)
    except PaymentRefused:
        return
    assert notice.refund_fen >= 0 and notice.outcome.value in {"success", "closed", "abnormal"}


@settings(max_examples=200, suppress_health_check=list(HealthCheck), deadline=None)
@given(body=st.binary(max_size=512))
def test_any_signed_bytes(keyed: tuple[Sandbox, WechatPay], body: bytes) -> None:
    sandbox, wechat = keyed
    read_or_refused(wechat, signed(sandbox, body), body)


@settings(max_examples=200, suppress_health_check=list(HealthCheck), deadline=None)
@given(
    envelope=JSON,
    event=st.sampled_from(["REFUND.SUCCESS", "REFUND.CLOSED", "X"]),
    plain=REFUNDISH | JSON,
    original=st.sampled_from(["refund", "transaction", 3]),
)
def test_any_json_under_a_valid_signature_and_key(
    keyed: tuple[Sandbox, WechatPay], envelope: Any, event: str, plain: Any, original: Any
) -> None:
    sandbox, wechat = keyed
    resource = wechat_scheme.encrypt_resource(
        sandbox.keys.apiv3_key,
        json.dumps(plain).encode(),
        nonce="abcdefghijkl",
        associated_data="refund",
        original_type="refund",
    )
    resource["original_type"] = original
    whole = {"id": "EV-1", "event_type": event, "resource": resource}
    if isinstance(envelope, dict):
        whole |= {k: v for k, v in envelope.items() if k not in whole}
    body = json.dumps(whole).encode()
    read_or_refused(wechat, signed(sandbox, body), body)


def test_the_sandboxs_own_notice_reads(keyed: tuple[Sandbox, WechatPay]) -> None:
    sandbox, wechat = keyed
    plain = {
        "mchid": "1900000109",
        "out_trade_no": "VB1",
        "out_refund_no": "RF1",
        "refund_id": "503",
        "refund_status": "SUCCESS",
        "amount": {"total": 100, "refund": 40},
    }
    resource = wechat_scheme.encrypt_resource(
        sandbox.keys.apiv3_key,
        json.dumps(plain).encode(),
        nonce="abcdefghijkl",
        associated_data="refund",
        original_type="refund",
    )
    body = json.dumps({"id": "EV-1", "event_type": "REFUND.SUCCESS", "resource": resource})
    notice = refund_notices.read(wechat, signed(sandbox, body.encode()), body.encode(), NOW)
    assert (notice.out_refund_no, notice.refund_fen, notice.outcome.value) == ("RF1", 40, "success")
