"""What comes back from the providers is not trusted: any bytes, any status, as a WeChat token
answer, a template-send answer or an SMS gateway answer, become an outcome, never an
exception (Hypothesis). The providers are played by an httpx transport returning the bytes."""

from __future__ import annotations

import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.notices.channels import HttpSmsSender, Outcome, Sent
from cloud.notices.wechat_oa import OaAccount, TemplateSender

STATUSES = st.sampled_from([200, 201, 400, 404, 429, 500, 502, 503])
JSONISH = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                   max_size=4),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"errcode": st.integers(-(2**40), 2**40) | st.text(max_size=5),
                           "access_token": st.text(max_size=10) | st.integers(),
                           "expires_in": st.integers() | st.text(max_size=5),
                           "msgid": st.integers() | st.none()})
    .map(lambda value: json.dumps(value).encode()),
)  # fmt: skip


def transport(token: tuple[int, bytes], send: tuple[int, bytes]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        status, body = token if request.url.path == "/cgi-bin/token" else send
        return httpx.Response(status, content=body)

    return httpx.MockTransport(answer)


@settings(max_examples=300, deadline=None)
@given(token=st.tuples(STATUSES, JSONISH), send=st.tuples(STATUSES, JSONISH))
def test_any_wechat_answer_is_an_outcome(token: tuple[int, bytes], send: tuple[int, bytes]) -> None:
    client = httpx.Client(transport=transport(token, send))
    sender = TemplateSender(OaAccount("http://oa.invalid", "wx1", lambda: "s"), client)
    sent = sender.send("oWang", "T1", {"thing1": {"value": "x"}})
    assert isinstance(sent, Sent) and isinstance(sent.outcome, Outcome)
    if sent.outcome is Outcome.DELIVERED:
        assert sent.provider_id is None or len(sent.provider_id) <= 64


@settings(max_examples=200, deadline=None)
@given(answer=st.tuples(STATUSES, JSONISH))
def test_any_sms_gateway_answer_is_an_outcome(answer: tuple[int, bytes]) -> None:
    client = httpx.Client(transport=transport(answer, answer))
    sent = HttpSmsSender("http://sms.invalid/sms", client).send("13900000001", "hello")
    assert isinstance(sent.outcome, Outcome)
    assert (sent.outcome is Outcome.DELIVERED) == (200 <= answer[0] < 300)
