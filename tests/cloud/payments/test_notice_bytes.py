"""Whatever arrives at a notify endpoint — any bytes, any headers — is answered with the
provider's refusal and a `payment_notices` row, never an exception; and without `[payments]`
the order endpoints say payments are not configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.config import load_config
from cloud.db.payments import PaymentNotice
from cloud.payments import notices
from cloud.payments.providers import Providers
from cloud.payments.sandbox.keys import SandboxKeys
from ledger.chain import NodeKey
from tests.cloud.conftest import Clock

HEADER_NAMES = ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature",
                "Wechatpay-Serial", "Wechatpay-Signature-Type"]  # fmt: skip
AGAIN = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture
def providers(sandbox_keys: SandboxKeys, tmp_path: Path, clock: Clock) -> Providers:
    snippet = sandbox_keys.write(tmp_path, api_base="http://127.0.0.1:9",
                                 notify_base="http://127.0.0.1:8080")  # fmt: skip
    config = load_config(snippet, tmp_path / "data")
    assert config.payments is not None
    return Providers.load(config.payments, clock)


def _rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(PaymentNotice)) or 0


@AGAIN
@given(body=st.binary(max_size=2048),
       headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(max_size=80)))  # fmt: skip
def test_any_wechat_notice_is_refused_cleanly(  # noqa: PLR0917 (fixtures and examples)
    sessions: sessionmaker[Session], providers: Providers, cloud_key: NodeKey, clock: Clock,
    body: bytes, headers: dict[str, str],
) -> None:  # fmt: skip
    before = _rows(sessions)
    with sessions() as session:
        answer = notices.wechat_notice(
            session, providers, headers=headers, body=body, address="203.0.113.9",
            key=cloud_key, now=clock(),
        )  # fmt: skip
    assert answer.verdict == "refused" and answer.status == 401
    assert _rows(sessions) == before + 1


FIELDS = ["sign", "charset", "trade_status", "out_trade_no", "sign_type", "app_id"]
FORMS = st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=40)).map(
    lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode()
)


@AGAIN
@given(body=st.one_of(st.binary(max_size=2048), st.text(max_size=500).map(str.encode), FORMS))
def test_any_alipay_notice_is_refused_cleanly(
    sessions: sessionmaker[Session], providers: Providers, cloud_key: NodeKey, clock: Clock,
    body: bytes,
) -> None:  # fmt: skip
    with sessions() as session:
        answer = notices.alipay_notice(session, providers, body=body, address="203.0.113.9",
                                       key=cloud_key, now=clock())  # fmt: skip
    assert (answer.verdict, answer.body) == ("refused", b"fail")


def test_without_payments_the_endpoints_say_so(
    engine: Engine, cloud_key: NodeKey, clock: Clock
) -> None:
    from cloud.people.auth import Role
    from tests.cloud.api.conftest import add_user, bearer

    token = add_user(engine, "desk-1", Role.OPERATOR)
    with TestClient(create_app(engine, cloud_key, clock)) as client:
        client.headers.update(bearer(token))
        body = {"account": "A0001", "fen": 100, "provider": "wechat", "channel": "native"}
        answer = client.post("/payments/orders", json=body)
        assert answer.status_code == 409 and "not configured" in answer.json()["detail"]
        refused = client.post("/payments/wechat/notify", content=b"{}")
        assert refused.status_code == 401 and refused.json()["code"] == "FAIL"
        assert client.post("/payments/alipay/notify", content=b"a=b").text == "fail"
