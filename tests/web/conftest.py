"""Fixtures for the pages' tests.

- `world`: the market of `tests/web/world.py` in a migrated database on every backend (the
  `engine` fixture of `tests/cloud`: SQLite and PostgreSQL), for the TestClient tests.
- `server`: the real cloud app served by uvicorn on a free loopback port over a SQLite file with
  that market, once per module, its WeChat login pointed at the Official Account stand-in
  (`cloud.notices.wechat_oa_standin`) and its payments at the provider sandbox
  (`cloud.payments.sandbox`, keys made for the run), each on another loopback port.
- `browser`, `phone`: Debian's headless Chromium (`/usr/bin/chromium`) driven by Playwright's
  Python client (never a browser Playwright downloads), one per module; `phone` is a fresh
  context per test with a phone's viewport (390×844), touch, zh-CN and the Asia/Shanghai zone.
  Without Chromium or Playwright the browser tests are SKIPPED with how to install them
  (`apt-get install chromium`; `pip install -e '.[dev]'`), except under REQUIRE_REAL_SERVICES=1
  (CI), where they FAIL.
- `shots`: the folder screenshots go to (`VOLTBOOK_SCREENSHOTS`, else a temporary one), to be
  looked at.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine

from cloud.app import create_app
from cloud.config import load_config
from cloud.db.engine import make_engine, upgrade
from cloud.notices.wechat_oa_standin import OaStandin
from cloud.payments.providers import Providers
from cloud.payments.sandbox.app import RunningSandbox, create_sandbox, serve_in_thread
from cloud.payments.sandbox.keys import SandboxKeys
from cloud.payments.sandbox.state import Knobs, SandboxState
from cloud.web.wechat_login import WechatOAuth
from ledger.chain import NodeKey
from tests.cloud.conftest import (  # noqa: F401 (the database fixtures, on every backend)
    cloud_key,
    engine,
    pg_databases,
    sqlite_template,
)
from tests.conftest import service_missing
from tests.web.world import NOW, World, build_world

CHROMIUM = os.environ.get("VOLTBOOK_CHROMIUM", "/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}
WECHAT_USER = "oWECHAT-user-0001"  # the openid the OA stand-in logs in
HOW_TO_INSTALL = (
    "install Debian's browser with `apt-get install chromium` (the Makefile's setup does it "
    "as root) and Playwright's client with `pip install -e '.[dev]'`"
)


@pytest.fixture
def world(engine: Engine, cloud_key: NodeKey) -> World:  # noqa: F811 (the imported fixtures)
    return build_world(engine, cloud_key)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """The cloud app on loopback, in a thread of the test process."""

    def __init__(self, world: World, oa: OaStandin, sandbox: RunningSandbox, folder: Path) -> None:
        self.world, self.oa, self.sandbox = world, oa, sandbox
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        oauth = WechatOAuth(oa.appid, oa.secret, authorize_base=oa.url, api_base=oa.url)
        snippet = sandbox.sandbox.keys.write(folder, api_base=sandbox.url, notify_base=self.url)
        settings = load_config(snippet, folder / "data").payments
        assert settings is not None
        self.providers = Providers.load(settings, lambda: NOW)
        app = create_app(world.engine, world.key, lambda: NOW, wechat_oauth=oauth,
                         providers=self.providers)  # fmt: skip
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                proxy_headers=False, lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web-test-uvicorn")

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.providers.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("web-db") / "cloud.db"
    database = make_engine(f"sqlite:///{path}")
    upgrade(database)
    world = build_world(database, NodeKey.from_seed(bytes(range(32))))
    state = SandboxState(knobs=Knobs(time_scale=0.001))  # retries a thousand times sooner
    sandbox = serve_in_thread(create_sandbox(SandboxKeys(), state=state, now=lambda: NOW))
    folder = tmp_path_factory.mktemp("web-pay")
    try:
        with OaStandin(browser_openid=WECHAT_USER) as oa, Served(world, oa, sandbox, folder) as s:
            yield s
    finally:
        sandbox.stop()
    database.dispose()


@pytest.fixture(scope="module")  # its event loop runs in this thread while open: closed with
def browser() -> Iterator[Any]:  # the module, so a later module's own `asyncio.run` works
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        service_missing("playwright", f"the Python client is not installed: {HOW_TO_INSTALL}")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        service_missing("chromium", f"{CHROMIUM} is missing: {HOW_TO_INSTALL}")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=["--no-sandbox"])  # fmt: skip
        except Error as exc:
            service_missing("chromium", f"{CHROMIUM} does not start ({exc}): {HOW_TO_INSTALL}")
        yield launched
        launched.close()


ANDROID = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36"
)
WECHAT = f"{ANDROID} XWEB/1160065 MMWEBSDK/20231202 MicroMessenger/8.0.47.2560(0x28002F30)"


def _phone(browser: Any, server: Served, user_agent: str) -> Iterator[Any]:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
        locale="zh-CN", timezone_id="Asia/Shanghai", base_url=server.url,
        user_agent=user_agent, accept_downloads=True,
    )  # fmt: skip
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def phone(browser: Any, server: Served) -> Iterator[Any]:
    """A phone's browser (Chrome on Android)."""
    yield from _phone(browser, server, ANDROID)


@pytest.fixture
def wechat_phone(browser: Any, server: Served) -> Iterator[Any]:
    """WeChat's in-app browser on the same phone (its User-Agent says MicroMessenger)."""
    yield from _phone(browser, server, WECHAT)


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("VOLTBOOK_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
