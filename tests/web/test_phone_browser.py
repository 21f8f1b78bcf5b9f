"""The merchant's phone page in real headless Chromium (Debian's, driven by Playwright), against
the real cloud app served by uvicorn over the market of `tests/web/world.py`: log in, read the
balance, what it buys, the subsidy, the chart, the payments and their receipts, download the
statement, switch to English, and try what a curious or hostile merchant would try. Each test
saves a screenshot (`shots`), looked at by a person."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.db.auth import OperatorLogEntry
from cloud.db.models import Balance
from cloud.db.payments import PaymentOrder
from cloud.db.registry import Account, Merchant
from cloud.payments.wechat_scheme import verify_jsapi
from ledger.accounts import Pocket, pocket_id
from ledger.wire import AckStatus
from tests.cloud.api.conftest import NODE
from tests.cloud.fake_edge import edge_recharge
from tests.web.conftest import WECHAT_USER, Served
from tests.web.world import MERCHANT, OPERATOR, OTHER_MERCHANT, PASSWORD, USE_WH

pytestmark = pytest.mark.slow

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, in CI, fails) saying how to install it
    expect = None


def log_in(page: Any, user: str, password: str = PASSWORD) -> None:
    page.goto("/m/")
    assert page.url.endswith("/m/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _available(served: Served, account: str, pocket: Pocket) -> int:
    with Session(served.world.engine) as session:
        row = session.get(Balance, pocket_id(account, pocket))
        assert row is not None
        return row.credits_posted - row.debits_posted - row.debits_pending


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def test_login_then_the_balance_what_it_buys_and_the_subsidy_are_the_ledgers(
    phone: Any, server: Served, shots: Path
) -> None:
    log_in(phone, MERCHANT, "not the password")
    assert phone.locator(".error").inner_text().startswith("用户名或密码不对")
    phone.screenshot(path=shots / "01-login-refused.png", full_page=True)

    phone.fill("input[name=password]", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_url("**/m/")
    prepaid = _available(server, "A0001", Pocket.PREPAID)
    # Independently: the opening (10 000 − 837 − 1 000 held by a pending refund), June's
    # 50 000, and the months' use at 0.8365 ¥/kWh.
    assert prepaid == 10_000 - 837 - 1_000 + 50_000 - sum(
        wh * 8365 // 100_000 for wh in USE_WH.values()
    )
    assert phone.locator("#balance-yuan").inner_text() == f"¥{_yuan(prepaid)}"
    buys_wh = prepaid * 100 * 1000 // 8365
    assert (
        phone.locator("#kwh-left").inner_text() == f"{buys_wh // 1000}.{buys_wh % 1000 // 10:02d}"
    )
    assert "0.8365" in phone.locator("#price").inner_text()
    subsidy = _available(server, "A0001", Pocket.SUBSIDY)
    assert subsidy == 50_000 - 1_200
    assert phone.locator("#subsidy-left").inner_text() == "48.80"
    assert phone.locator("#recharging").inner_text() == "¥200.00"  # the desk's, not yet booked
    assert phone.locator("#shop").inner_text() == "S101"

    bars = phone.locator("svg.bars rect.bar")
    assert bars.count() == 6
    assert phone.locator("svg.bars rect.bar.now").count() == 1
    values = phone.locator("svg.bars text.value").all_text_contents()
    assert values[-1] == "22.5"  # November: 21 300 Wh metered + 1 200 Wh of subsidy
    assert values[0] == "42.0"

    alerts = phone.locator("#alarms").inner_text()
    assert "余额不足" in alerts  # the concentrator's low-balance alarm
    assert "停电通知" in alerts and "更换配电柜" in alerts  # the operator's power-off notice
    assert "违规" not in alerts  # A0002's alarm and its power-off notice
    history = phone.locator("#history")
    assert "¥200.00" in history.inner_text()
    assert history.locator("a.receipt").get_attribute("href") == (
        f"/m/receipts/{server.world.receipts['A0001']}.pdf"
    )
    phone.screenshot(path=shots / "02-home-zh.png", full_page=True)


def test_receipt_and_statement_pdfs(phone: Any, server: Served, tmp_path: Path) -> None:
    log_in(phone, MERCHANT)
    href = phone.locator("#history a.receipt").get_attribute("href")
    receipt = phone.request.get(href)
    assert receipt.status == 200
    assert receipt.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(_file(tmp_path, receipt.body())).pages)
    assert "200.00" in text and "A0001" in text

    with phone.expect_download() as info:
        phone.locator("a.statement").first.click()
    saved = tmp_path / "statement.pdf"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "statement-A0001-2026-11.pdf"
    statement = "".join(p.extract_text() for p in PdfReader(saved).pages)
    assert "月结单" in statement and "A0001" in statement


def _file(folder: Path, body: bytes) -> Path:
    path = folder / "receipt.pdf"
    path.write_bytes(body)
    return path


def test_english_is_one_tap_away_and_remembered(phone: Any, shots: Path) -> None:
    log_in(phone, MERCHANT)
    phone.click("a.lang")
    assert phone.locator("#balance .label").inner_text() == "Balance"
    assert phone.locator("html").get_attribute("lang") == "en"
    phone.goto("/m/")  # the cookie keeps the choice
    assert "Top up" in phone.locator("#topup h2").inner_text()
    assert "This month" in (phone.locator("svg.bars").text_content() or "")
    phone.screenshot(path=shots / "03-home-en.png", full_page=True)


def test_another_merchants_data_is_never_shown(phone: Any, server: Served, shots: Path) -> None:
    log_in(phone, MERCHANT)
    page_text = phone.locator("main").inner_text()
    assert "A0002" not in page_text and "S102" not in page_text
    other = server.world.receipts["A0002"]
    answer = phone.goto(f"/m/receipts/{other}.pdf")
    assert answer.status == 404
    assert "找不到这张收据" in phone.locator(".error").inner_text()
    phone.screenshot(path=shots / "04-other-receipt.png", full_page=True)
    assert phone.goto("/m/?account=A0002").status == 422  # no route takes an account
    assert phone.goto("/m/accounts/A0002").status == 404
    assert phone.request.get("/accounts/A0002").status == 401  # the API wants its bearer token

    phone.goto("/m/")  # the other merchant sees only its own
    phone.context.clear_cookies()
    log_in(phone, OTHER_MERCHANT)
    assert phone.locator("#account").inner_text() == "A0002"
    assert "A0001" not in phone.locator("main").inner_text()


def test_forms_without_the_sessions_csrf_token_are_refused(phone: Any) -> None:
    log_in(phone, MERCHANT)
    token = phone.locator("#topup input[name=csrf]").get_attribute("value")
    assert token and re.fullmatch(r"[0-9a-f]{64}", token)
    for sent in ({}, {"csrf": "0" * 64}):
        answer = phone.request.post("/m/topup", form={"amount": "100", "provider": "wechat",
                                                      **sent})  # fmt: skip
        assert answer.status == 403
        assert "页面已过期" in answer.text()
    answer = phone.request.post("/m/logout", form={"csrf": "forged"})
    assert answer.status == 403
    phone.goto("/m/")
    assert phone.locator("#balance-yuan").is_visible()  # still logged in


def test_top_up_amounts_are_checked_and_the_answer_is_in_words(phone: Any) -> None:
    log_in(phone, MERCHANT)
    phone.fill("input[name=amount_other]", "12.345")
    phone.click("#topup button[type=submit]")
    assert "金额格式不对" in phone.locator("#topup .error").inner_text()
    phone.fill("input[name=amount_other]", "200000")
    phone.click("#topup button[type=submit]")
    assert "最多 100000.00 元" in phone.locator("#topup .error").inner_text()


@pytest.mark.parametrize(("provider", "label", "yuan"), [("wechat", "微信支付", 50),
                                                         ("alipay", "支付宝", 200)])  # fmt: skip
def test_a_top_up_paid_in_the_sandbox_is_credited_and_the_balance_rises(  # noqa: PLR0917
    phone: Any, server: Served, shots: Path, provider: str, label: str, yuan: int
) -> None:
    log_in(phone, MERCHANT)
    before = _available(server, "A0001", Pocket.PREPAID)
    phone.locator("#topup label.chip", has_text=re.compile(f"^¥{yuan}$")).click()
    phone.locator("#topup label.chip", has_text=label).click()
    phone.click("#topup button[type=submit]")
    phone.wait_for_url(f"{server.sandbox.url}/pay/**")  # the provider's page (the sandbox's)
    assert phone.locator("#amount").inner_text() == f"¥{yuan}.00"
    phone.screenshot(path=shots / f"08-{provider}-pay-page.png", full_page=True)
    phone.click("#pay")
    phone.wait_for_url(re.compile(r".*/m/orders/VB\w+$"))  # back, to the order's own page
    out_trade_no = phone.url.rsplit("/", 1)[1]
    # The page refreshes itself until the provider's notification has credited the order.
    expect(phone.locator("#order-state")).to_have_text("支付成功", timeout=20_000)
    assert phone.locator("#order-recharge").inner_text() == "到账中"  # sent to the concentrator
    phone.screenshot(path=shots / f"09-{provider}-order-credited.png", full_page=True)

    # The concentrator books the recharge the credit sent it (as edge.runtime.cycle does).
    ack = server.world.site.upload(NODE, [edge_recharge("A0001", yuan * 100, out_trade_no,
                                                        provider)])  # fmt: skip
    assert ack.status is AckStatus.OK
    expect(phone.locator("#order-recharge")).to_have_text("已到账", timeout=10_000)  # refreshed
    phone.goto("/m/")
    after = _available(server, "A0001", Pocket.PREPAID)
    assert after == before + yuan * 100
    assert phone.locator("#balance-yuan").inner_text() == f"¥{_yuan(after)}"
    method = {"wechat": "微信", "alipay": "支付宝"}[provider]  # (the clock stands still: rows tie)
    payment = phone.locator("#history li.payment", has_text=method).inner_text()
    assert f"¥{yuan}.00" in payment and "已到账" in payment
    links = [a.get_attribute("href") for a in phone.locator("#orders a.order").all()]
    assert f"/m/orders/{out_trade_no}" in links  # (orders made at one fixed instant tie)


def test_staff_are_sent_to_the_console_and_logging_out_ends_the_session(
    phone: Any, shots: Path
) -> None:
    log_in(phone, OPERATOR)
    assert phone.locator("h1").inner_text() == "请使用管理后台"
    phone.screenshot(path=shots / "06-staff.png", full_page=True)
    phone.click("button[type=submit]")  # log out
    phone.wait_for_url("**/m/login")
    assert phone.goto("/m/").url.endswith("/m/login")


def test_wechat_login_binds_the_openid_once_then_logs_in_without_a_password(
    wechat_phone: Any, server: Served, shots: Path
) -> None:
    page = wechat_phone
    page.goto("/m/login")
    page.click("#wechat-login")  # → the OA's authorize → back with a code: not bound yet
    # (the browser keeps WeChat's `#wechat_redirect` through the redirects, as WeChat's does)
    page.wait_for_url(re.compile(r".*/m/login\?bind=1(#.*)?$"))
    assert "还没有绑定" in page.locator("#bind-hint").inner_text()
    page.screenshot(path=shots / "07-wechat-bind.png", full_page=True)
    page.fill("input[name=user]", MERCHANT)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url("**/m/")
    with Session(server.world.engine) as session:
        bound = session.scalar(
            select(Merchant.wechat_openid).join(Account).where(Account.id == "A0001")
        )
        logged = session.scalar(
            select(func.count()).select_from(OperatorLogEntry)
            .where(OperatorLogEntry.action == "merchant.update")
        )  # fmt: skip
    assert bound == WECHAT_USER and logged == 1

    page.click("form.out button")  # log out, then WeChat alone logs the merchant in
    page.wait_for_url("**/m/login")
    page.click("#wechat-login")
    page.wait_for_url(re.compile(r".*/m/(#.*)?$"))
    assert page.locator("#account").inner_text() == "A0001"

    page.context.clear_cookies()  # a forged state (no cookie) is refused, nothing logged in
    answer = page.goto("/m/wechat/back?code=abc&state=forged")
    assert answer.status == 403
    assert page.goto("/m/").url.endswith("/m/login")


BRIDGE = """
window.WeixinJSBridge = {invoke: function (name, params, done) {
  sessionStorage.setItem("wxpay", JSON.stringify({name: name, params: params}));
  done({err_msg: "get_brand_wcpay_request:ok"});
}};
"""  # WeChat's in-app browser provides this object; Chromium does not: it records the call


def test_inside_wechat_the_top_up_pays_by_jsapi_with_signed_parameters(
    wechat_phone: Any, server: Served, shots: Path
) -> None:
    page = wechat_phone
    page.add_init_script(BRIDGE)
    page.goto("/m/login")
    page.click("#wechat-login")
    page.wait_for_load_state()
    if "bind=1" in page.url:  # not bound yet in this module's run: bind it with the password
        page.fill("input[name=user]", MERCHANT)
        page.fill("input[name=password]", PASSWORD)
        page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r".*/m/(#.*)?$"))
    page.locator("#topup label.chip", has_text=re.compile("^¥100$")).click()
    page.locator("#topup label.chip", has_text="微信支付").click()
    page.click("#topup button[type=submit]")
    # wxpay.js hands the order's parameters to the bridge, then opens the order's page.
    page.wait_for_url(re.compile(r".*/m/orders/VB\w+$"))
    called = json.loads(page.evaluate("sessionStorage.getItem('wxpay')"))
    out_trade_no = page.url.rsplit("/", 1)[1]
    with Session(server.world.engine) as session:
        order = session.get(PaymentOrder, out_trade_no)
        assert order is not None
        assert (order.channel, order.payer, order.fen) == ("jsapi", WECHAT_USER, 10_000)
        parameters = order.pay["jsapi"]
    merchant_key = server.sandbox.sandbox.keys.merchant.public_key()
    assert verify_jsapi(merchant_key, parameters)  # signed with the merchant's key
    assert parameters["package"].startswith("prepay_id=")
    assert called == {"name": "getBrandWCPayRequest", "params": parameters}
    assert page.locator("#order-state").inner_text() == "等待支付"
    page.screenshot(path=shots / "10-wechat-jsapi-order.png", full_page=True)
