"""The notices loop in the running cloud (`cloud.server.serve_in_thread` with `[notices]`): a
posted recharge and an operator's power-off reach the merchants through the WeChat stand-in
and the SMS file, and the loop stops with the server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cloud.config import ApiSettings, NoticesSettings, SmsSettings, WechatOaSettings, load_config
from cloud.db.engine import session_factory
from cloud.notices.wechat_oa_standin import OaStandin
from cloud.people import auth
from cloud.server import serve_in_thread
from tests.cloud.api.conftest import PASSWORD
from tests.cloud.notices.conftest import TEMPLATES, make_world
from tests.cloud.notices.test_service import recharge

pytestmark = pytest.mark.slow  # the whole cloud in threads, started and stopped


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_running_cloud_sends_notices(tmp_path: Path) -> None:
    secret = tmp_path / "oa-secret"
    sms_file = tmp_path / "sms.jsonl"
    with OaStandin(templates=set(TEMPLATES.values())) as oa:
        secret.write_text(oa.secret)
        notices = NoticesSettings(
            every=0.1,
            wechat_oa=WechatOaSettings(oa.url, oa.appid, secret, dict(TEMPLATES)),
            sms=SmsSettings(file=sms_file),
        )
        config = dataclasses.replace(load_config(None, tmp_path / "data"),
                                     api=ApiSettings("127.0.0.1", 0), notices=notices)  # fmt: skip
        config = dataclasses.replace(config, broker=dataclasses.replace(config.broker,
                                                                        plain_port=0))  # fmt: skip
        with serve_in_thread(config) as cloud:
            sessions = session_factory(cloud.engine)
            with sessions.begin() as session:
                make_world(session)
                auth.create_user(session, "op", auth.Role.OPERATOR, PASSWORD,
                                 now=dt.datetime.now(dt.UTC))  # fmt: skip
                recharge(session, "PAY-1", "A1", 5000, dt.datetime.now(dt.UTC))
            assert wait_for(lambda: len(oa.messages) == 1)
            assert oa.messages[0].template_id == TEMPLATES["recharge_credited"]
            login = {"user": "op", "password": PASSWORD}
            token = httpx.post(cloud.url + "/auth/login", json=login, timeout=5).json()["token"]
            start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            answer = httpx.post(
                cloud.url + "/notices/power-off",
                json={"reason": "violation", "shops": ["S2"], "from": start.isoformat(),
                      "to": (start + dt.timedelta(hours=2)).isoformat()},
                headers={"Authorization": f"Bearer {token}"}, timeout=5,
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            assert wait_for(lambda: sms_file.exists() and sms_file.read_text().count("\n") == 1)
            (line,) = [json.loads(x) for x in sms_file.read_text().splitlines()]
            assert line["phone"] == "13900000002" and "违规用电" in line["text"]
            began = time.monotonic()
        assert time.monotonic() - began < 5
