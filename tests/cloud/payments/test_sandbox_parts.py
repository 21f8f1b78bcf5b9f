"""The sandbox's own parts: notifications retried on the providers' schedules until taken
(time-scaled), duplicates and dropped notices as knobs, the snippet the cloud loads, and the
sandbox refusing requests the merchant did not sign."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from cloud.config import load_config
from cloud.payments import wechat_scheme
from cloud.payments.providers import Providers
from cloud.payments.sandbox.app import create_sandbox, serve_in_thread
from cloud.payments.sandbox.keys import SandboxKeys
from cloud.payments.sandbox.notifier import (
    ALIPAY_RETRY_S,
    WECHAT_RETRY_S,
    Notice,
    alipay_accepted,
    wechat_accepted,
)
from cloud.payments.sandbox.state import Knobs, SandboxState
from tests.cloud.payments.conftest import bind, serve


def test_the_schedules_are_the_providers() -> None:
    assert WECHAT_RETRY_S == (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600,
                              10800, 10800, 10800, 21600, 21600)  # fmt: skip
    assert sum(WECHAT_RETRY_S) / 3600 == pytest.approx(24.07, abs=0.01)  # about a day
    assert ALIPAY_RETRY_S == (240, 600, 600, 3600, 7200, 21600, 54000)


def test_a_refused_notice_is_retried_on_schedule_until_taken(sandbox_keys: SandboxKeys) -> None:
    answers = iter([500, 401, 204])
    seen: list[float] = []
    receiver = FastAPI()

    @receiver.post("/notify")
    async def notify(request: Request) -> Response:
        await request.body()
        seen.append(time.monotonic())
        return Response(status_code=next(answers))

    served = serve(receiver, bind())
    sandbox = create_sandbox(sandbox_keys, state=SandboxState(knobs=Knobs(time_scale=0.01)))
    try:
        url = f"{served.url}/notify"
        notice = Notice("wechat", "VB1", "transaction", url, lambda: (b"{}", {}),
                        wechat_accepted, WECHAT_RETRY_S)  # fmt: skip
        sandbox.notifier.send(notice)
        deadline = time.monotonic() + 10
        while len(seen) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(seen) == 3  # taken: no more
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        assert gaps[0] == pytest.approx(0.15, abs=0.1) and gaps[1] == pytest.approx(0.15, abs=0.1)
        attempts = sandbox.state.attempts
        assert [(a.number, a.status, a.accepted) for a in attempts] == [
            (0, 500, False), (1, 401, False), (2, 204, True)]  # fmt: skip
    finally:
        sandbox.stop()
        served.stop()


def test_alipay_wants_the_word_success(sandbox_keys: SandboxKeys) -> None:
    assert alipay_accepted(httpx.Response(200, content=b"success"))
    assert not alipay_accepted(httpx.Response(200, content=b"fail"))
    assert not alipay_accepted(httpx.Response(200, content=b"OK"))
    assert wechat_accepted(httpx.Response(204)) and not wechat_accepted(httpx.Response(401))


def test_dropped_notices_are_recorded_not_sent(sandbox_keys: SandboxKeys) -> None:
    sandbox = create_sandbox(sandbox_keys, state=SandboxState(knobs=Knobs(drop=True)))
    try:
        notice = Notice("alipay", "VB2", "transaction", "http://127.0.0.1:9/",
                        lambda: (b"", {}), alipay_accepted, ALIPAY_RETRY_S)  # fmt: skip
        sandbox.notifier.send(notice)
        assert [(a.status, a.answer) for a in sandbox.state.attempts] == [(None, "dropped")]
        assert sandbox.notifier.pending() == 0
    finally:
        sandbox.stop()


def test_the_snippet_configures_a_cloud_and_unsigned_requests_are_refused(
    sandbox_keys: SandboxKeys, tmp_path: Path
) -> None:
    sandbox = create_sandbox(sandbox_keys)
    with serve_in_thread(sandbox) as running:
        snippet = sandbox_keys.write(tmp_path, api_base=running.url,
                                     notify_base="http://127.0.0.1:8080")  # fmt: skip
        config = load_config(snippet, tmp_path / "data")
        assert config.payments is not None and config.payments.wechat is not None
        assert config.payments.wechat.api_base == running.url
        providers = Providers.load(config.payments, sandbox.now)
        try:
            # signed by the merchant: the sandbox answers (an unknown order), signed
            assert providers.wechat is not None
            answer = providers.wechat.call("GET", "/v3/pay/transactions/out-trade-no/VB404",
                                           query={"mchid": sandbox_keys.mchid})  # fmt: skip
            assert (answer.status, answer.code) == (404, "ORDER_NOT_EXIST")
            assert providers.alipay is not None
            found = providers.alipay.call("alipay.trade.query", {"out_trade_no": "VB404"})
            assert found["sub_code"] == "ACQ.TRADE_NOT_EXIST"
        finally:
            providers.close()
        unsigned = httpx.post(f"{running.url}/v3/pay/transactions/native", content=b"{}")
        assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"
        # even its refusal is signed by the platform key
        wechat_scheme.verify_signed(
            unsigned.headers, unsigned.content,
            {s: k.public_key() for s, k in sandbox_keys.platform}, int(time.time()),
        )  # fmt: skip
        gateway = httpx.post(f"{running.url}/gateway.do", content=b"method=alipay.trade.query")
        assert json.loads(gateway.content)["alipay_trade_query_response"]["code"] == "40002"


def test_the_page_of_an_unknown_order(sandbox_keys: SandboxKeys) -> None:
    sandbox = create_sandbox(sandbox_keys)
    with serve_in_thread(sandbox) as running:
        assert httpx.get(f"{running.url}/pay/VB-NONE").status_code == 404
        assert httpx.post(f"{running.url}/pay/VB-NONE/confirm").status_code == 409
    assert not any(t.name == "payment-sandbox" and t.is_alive() for t in threading.enumerate())


def test_the_server_offers_payments_configured_by_the_snippet(
    sandbox_keys: SandboxKeys, tmp_path: Path
) -> None:
    from cloud.config import ApiSettings
    from cloud.server import serve_in_thread as serve_cloud

    sandbox = create_sandbox(sandbox_keys)
    with serve_in_thread(sandbox) as running:
        snippet = sandbox_keys.write(tmp_path / "pay", api_base=running.url,
                                     notify_base="http://127.0.0.1:9")  # fmt: skip
        config = load_config(snippet, tmp_path / "data")
        config = dataclasses.replace(config, api=ApiSettings("127.0.0.1", 0))
        with serve_cloud(config) as cloud:
            assert any(t.name == "voltbook-payment-sweeper" for t in threading.enumerate())
            refused = httpx.post(f"{cloud.url}/payments/wechat/notify", content=b"{}")
            assert refused.status_code == 401 and refused.json()["code"] == "FAIL"
            anonymous = httpx.post(f"{cloud.url}/payments/orders", json={})
            assert anonymous.status_code == 401
    assert not any(t.name == "voltbook-payment-sweeper" for t in threading.enumerate())


def test_the_cli_runs_the_sandbox_and_writes_the_snippet(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "cloud.cli", "payments", "sandbox", "--dir",
               str(tmp_path / "sb"), "--cloud", "http://127.0.0.1:8080", "--gbk",
               "--time-scale", "0.01"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("payment sandbox at http://127.0.0.1:"), first
        url = first.split()[3]
        snippet = tmp_path / "sb" / "payments.toml"
        assert snippet.exists() and f'api_base = "{url}"' in snippet.read_text()
        assert httpx.get(f"{url}/pay/VB-NONE").status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
