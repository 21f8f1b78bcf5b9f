"""The template sender and its one token refresher against the Official Account stand-in, over
real HTTP on loopback: one token for concurrent sends, renewal on 40001/42001 (once), 45009
and 503 tried later, 43101 handed to the next channel, refusals, and values cut to fit."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from cloud.notices import messages
from cloud.notices.channels import Outcome
from cloud.notices.outbox import NoticeKind
from cloud.notices.wechat_oa import EARLY, OaAccount, TemplateSender
from cloud.notices.wechat_oa_standin import TOKEN_LIFE, OaStandin

DATA = {"thing1": {"value": "商铺S1（A1）"}, "amount2": {"value": "12.34元"}}


@pytest.fixture
def sender(oa: OaStandin) -> Iterator[TemplateSender]:
    sender = TemplateSender(OaAccount(oa.url, oa.appid, lambda: oa.secret))
    yield sender
    sender.close()


@pytest.fixture
def oa() -> Iterator[OaStandin]:
    with OaStandin() as standin:
        yield standin


def test_a_message_is_delivered_with_one_token(oa: OaStandin, sender: TemplateSender) -> None:
    sent = sender.send("oWang", "T1", DATA, "https://pay.example/m/")
    assert sent.outcome is Outcome.DELIVERED and sent.provider_id
    assert [(m.touser, m.template_id, m.url, m.data) for m in oa.messages] == [
        ("oWang", "T1", "https://pay.example/m/", DATA)
    ]
    assert sender.send("oWang", "T1", DATA).outcome is Outcome.DELIVERED
    assert oa.token_requests == 1


def test_concurrent_sends_fetch_one_token(oa: OaStandin, sender: TemplateSender) -> None:
    start = threading.Barrier(16)
    outcomes: list[Outcome] = []

    def send() -> None:
        start.wait()
        outcomes.append(sender.send("oWang", "T1", DATA).outcome)

    threads = [threading.Thread(target=send) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == [Outcome.DELIVERED] * 16
    assert oa.token_requests == 1
    assert len(oa.messages) == 16


@pytest.mark.parametrize("spoil", ["invalidate_tokens", "expire_tokens"])  # 40001, 42001
def test_a_bad_token_is_renewed_and_the_message_sent_once_more(
    oa: OaStandin, sender: TemplateSender, spoil: str
) -> None:
    assert sender.send("oWang", "T1", DATA).outcome is Outcome.DELIVERED
    getattr(oa, spoil)()
    sent = sender.send("oWang", "T1", DATA)
    assert sent.outcome is Outcome.DELIVERED
    assert oa.token_requests == 2
    assert len(oa.messages) == 2


def test_concurrent_bad_token_answers_renew_once(oa: OaStandin, sender: TemplateSender) -> None:
    sender.send("oWang", "T1", DATA)
    oa.invalidate_tokens()
    threads = [threading.Thread(target=sender.send, args=("oWang", "T1", DATA)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert oa.token_requests == 2
    assert len(oa.messages) == 9


def test_the_token_is_renewed_early(oa: OaStandin) -> None:
    now = [1000.0]
    sender = TemplateSender(OaAccount(oa.url, oa.appid, lambda: oa.secret))
    sender.tokens.clock = lambda: now[0]
    try:
        sender.send("oWang", "T1", DATA)
        now[0] += TOKEN_LIFE - EARLY - 1
        sender.send("oWang", "T1", DATA)
        assert oa.token_requests == 1
        now[0] += 2  # within EARLY of the expiry: a new one before WeChat refuses the old
        sender.send("oWang", "T1", DATA)
        assert oa.token_requests == 2
    finally:
        sender.close()


def test_not_subscribed_is_handed_on(oa: OaStandin, sender: TemplateSender) -> None:
    oa.unsubscribed.add("oGone")
    sent = sender.send("oGone", "T1", DATA)
    assert sent.outcome is Outcome.NOT_SUBSCRIBED
    assert "43101" in sent.detail
    assert oa.messages == []


def test_rate_limited_and_unavailable_are_tried_later(
    oa: OaStandin, sender: TemplateSender
) -> None:
    oa.rate_limit_next(1)
    sent = sender.send("oWang", "T1", DATA)
    assert sent.outcome is Outcome.RETRY and "45009" in sent.detail
    oa.fail_next(1)
    assert sender.send("oWang", "T1", DATA).outcome is Outcome.RETRY
    assert sender.send("oWang", "T1", DATA).outcome is Outcome.DELIVERED


def test_a_wrong_secret_or_no_server_is_tried_later(oa: OaStandin) -> None:
    wrong = TemplateSender(OaAccount(oa.url, oa.appid, lambda: "not-the-secret"))
    sent = wrong.send("oWang", "T1", DATA)
    wrong.close()
    assert sent.outcome is Outcome.RETRY and "40125" in sent.detail
    url = oa.url
    oa.stop()
    gone = TemplateSender(OaAccount(url, oa.appid, lambda: oa.secret))
    assert gone.send("oWang", "T1", DATA).outcome is Outcome.RETRY
    gone.close()


def test_an_unknown_template_is_refused_for_good() -> None:
    with OaStandin(templates={"T1"}) as oa:
        sender = TemplateSender(OaAccount(oa.url, oa.appid, lambda: oa.secret))
        sent = sender.send("oWang", "T-unknown", DATA)
        sender.close()
    assert sent.outcome is Outcome.REFUSED and "40037" in sent.detail


def test_long_values_are_cut_to_what_the_template_takes(
    oa: OaStandin, sender: TemplateSender
) -> None:
    facts = {"shops": [f"S{n:03d}" for n in range(30)], "reason": "maintenance",
             "note": "二号楼变压器检修，请提前关闭冰柜和空调等大功率设备" * 3,
             "from": "2026-12-08T09:00+08:00", "to": "2026-12-08T13:00+08:00"}  # fmt: skip
    data = messages.template_data(NoticeKind.POWER_OFF, facts)
    assert len(data["thing1"]["value"]) == 20 and data["thing1"]["value"].endswith("…")
    assert data["phrase2"]["value"] == "检修"
    assert data["time3"]["value"] == "2026-12-08 09:00"
    too_long = {k: {"value": v["value"] + "x" * 30} for k, v in data.items()}
    assert sender.send("oWang", "T1", too_long).outcome is Outcome.REFUSED  # 47003, uncut
    assert sender.send("oWang", "T1", data).outcome is Outcome.DELIVERED


def test_oauth_gives_the_browser_openid_once(oa: OaStandin) -> None:
    oa.browser_openid = "oWang"
    answer = httpx.get(f"{oa.url}/connect/oauth2/authorize", params={
        "appid": oa.appid, "redirect_uri": "https://pay.example/m/login?x=1",
        "response_type": "code", "scope": "snsapi_base", "state": "s1"})  # fmt: skip
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    assert location.params["state"] == "s1" and location.params["x"] == "1"
    params = {"appid": oa.appid, "secret": oa.secret, "code": location.params["code"],
              "grant_type": "authorization_code"}  # fmt: skip
    first = httpx.get(f"{oa.url}/sns/oauth2/access_token", params=params).json()
    assert first["openid"] == "oWang" and first["expires_in"] == 7200
    assert first["scope"] == "snsapi_base" and first["access_token"]
    again = httpx.get(f"{oa.url}/sns/oauth2/access_token", params=params).json()
    assert again["errcode"] == 40029
    wrong = httpx.get(f"{oa.url}/sns/oauth2/access_token", params={**params, "secret": "x"})
    assert wrong.json()["errcode"] == 40125
