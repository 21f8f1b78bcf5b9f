"""`make demo`'s acts 4 and 5 run as a test too, so it cannot rot: merchants pay by WeChat Pay
and Alipay in the provider sandbox and a cash top-up goes through the desk, each closing a relay
the concentrator tripped; the merchants' notices are delivered; the cloud ends with the
concentrator's chain."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from cloud.notices.sources import LOOKBACK
from cloud.services.broker import find_mosquitto
from demo.cloud_act import ZONE, _start_near_now, act_cloud
from demo.provision_act import NODE

pytestmark = pytest.mark.slow  # `make demo`'s acts 4 and 5: the cloud, its broker, a concentrator


def test_the_cloud_act_closes_a_tripped_relay_after_a_top_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    act_cloud(tmp_path)
    out = capsys.readouterr().out
    assert "is cut off for arrears" in out
    assert "the cloud marks it applied" in out
    assert "closed, confirmed by reading it back" in out
    # act 4: both providers' orders paid on the sandbox's page, notified, credited, relays closed
    assert "WeChat Pay's signed notification reached POST /payments/wechat/notify" in out
    assert "Alipay's signed notification reached POST /payments/alipay/notify" in out
    assert out.count("created → paid     cause: notice") == 2
    assert out.count("paid → credited cause: notice") == 2
    assert "确认支付 → 支付成功" in out
    assert re.search(r"prepaid \d+\.\d\d → \d+\.\d\d yuan \(WeChat Pay credited\)", out)
    assert re.search(r"prepaid \d+\.\d\d → \d+\.\d\d yuan \(Alipay credited\)", out)
    assert out.count("the cloud marks it applied") >= 3  # two online payments, one desk top-up
    assert out.count("closed, confirmed by reading it back") == 3
    # the merchants' notices: the cut-off and the recharge credited, delivered by the Official
    # Account, or by SMS when the merchant has unfollowed it (43101)
    assert out.count("cut_off           sent") == 2
    assert out.count("recharge_credited sent") == 2
    assert "fallback after 1 attempt(s) (WeChat errcode 43101" in out
    assert re.search(r"SMS to 1380000\d{4}: 【Voltbook】.*充值50\.00元已到账", out)
    assert "template message(s) for oDemo" in out
    # act 5: a correction, a meter swap and a refund, each settled through the concentrator
    assert "the cloud posted its pending transfer (posted)" in out
    assert "the concentrator polls 209901000001 now" in out
    assert "finance paid it out in cash" in out and "→ paid" in out
    assert out.count("收据编号: 2026-") == 4  # the top-up, correction, swap and refund receipts
    assert "cloud: recharge posted" in out
    assert "identical head hash" in out
    assert "op-demo logged in" in out
    assert "operator log:" in out and "hash chain intact" in out
    # act 6: pre-assigned node → claim bound to it → bundle, install → provision → commission
    # (PDF) → run
    if find_mosquitto() is None:  # the in-process broker has no TLS listener, no device CA
        assert "skipped: the cloud's broker has no TLS listener" in out
        return
    assert f"operator pre-assigned node {NODE}" in out
    assert f"node {NODE}, valid until" in out  # the claim token is bound to it
    assert f"provisioned as node {NODE}" in out
    assert re.search(rf"uploaded: report [0-9a-f]+ of {NODE}, clean", out)
    pdf = re.search(r"PDF for the building manager to sign: (\S+\.pdf)", out)
    assert pdf is not None and Path(pdf[1]) == tmp_path / "commissioning.pdf"
    assert Path(pdf[1]).read_bytes()[:5] == b"%PDF-"
    # billing and syncing: the installed runtime's own ledger (its subsidies, its readings)
    synced = rf"{NODE} online over TLS, its ledger synced to seq [1-9]\d* in the cloud"
    assert re.search(synced, out)
    assert re.search(r"voltbook-fw bundle → \S+\.tar: bundle version 1 for \w+ \(cp311\)", out)
    assert "with the simulator (rehearsal and test boxes only)" in out  # a simulated site's box
    assert "voltbook-fw install → installed bundle version 1 (voltbook 0.1.0)" in out
    assert "venv/bin/voltbook-edge --version → voltbook-edge 0.1.0 (bundle 1)" in out
    took = re.search(r"act 6 took (\d+\.\d) s, bundle and install (\d+\.\d) s of it", out)
    assert took is not None
    # A demo act: seconds, not minutes — but for the offline virtualenv the install makes.
    assert float(took[1]) - float(took[2]) < 60 and float(took[2]) < 180


@pytest.mark.parametrize("minutes", range(0, 24 * 60, 20))
def test_the_markets_cut_offs_fall_within_the_clouds_last_day_at_any_time_of_day(
    minutes: int,
) -> None:
    """The act's merchants are told of their cut-off only if it is within the cloud's last day
    of events (`LOOKBACK`): whenever the demo runs, the market's cut-offs (08:00, 10:00 and
    12:00 of its second day, as the act prints them) are, with an hour to spare."""
    now = dt.datetime(2026, 12, 7, tzinfo=ZONE) + dt.timedelta(minutes=minutes)
    start = _start_near_now(now)
    for hour in (8, 10, 12):
        cut = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time(hour), ZONE)
        assert now - cut <= LOOKBACK - dt.timedelta(hours=1), (now, cut)
