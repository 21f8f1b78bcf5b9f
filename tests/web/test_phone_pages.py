"""The phone page's rules through FastAPI's TestClient on every backend (SQLite, PostgreSQL):
who sees what, the session cookie and CSRF, logins refused and throttled, documents of the
account only, the language choice; and its pure parts (forms, amounts, prices, the catalogue
and the font) with adversarial input."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from cloud.app import create_app
from cloud.errors import Invalid
from cloud.operations.recharges import MAX_RECHARGE_FEN
from cloud.people import auth
from cloud.registry.prices import price_of, wh_for
from cloud.web import catalogue, i18n, webfont, wechat_login
from cloud.web.forms import AmountError, fen_of_yuan, parse_form
from cloud.web.render import TEMPLATES
from cloud.web.static import FILES
from ledger.chain import NodeKey
from tests.web.html import csrf_of as _csrf
from tests.web.world import MERCHANT, NOW, OPERATOR, PASSWORD, World

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.engine, world.key, lambda: NOW)) as test_client:
        yield test_client


def log_in(client: TestClient, user: str = MERCHANT, password: str = PASSWORD) -> str:
    """Log in through the form; the page's CSRF token for later posts."""
    token = _csrf(client.get("/m/login").text)
    answer = client.post("/m/login", data={"csrf": token, "user": user, "password": password},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return _csrf(client.get("/m/").text)


def test_the_session_cookie_is_httponly_lax_and_the_token_a_real_one(
    client: TestClient, world: World
) -> None:
    token = _csrf(client.get("/m/login").text)
    answer = client.post("/m/login", data={"csrf": token, "user": MERCHANT, "password": PASSWORD},
                         follow_redirects=False)  # fmt: skip
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("vb_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    value = cookie.split(";")[0].split("=", 1)[1]
    with world.engine.connect() as connection:
        from sqlalchemy.orm import Session

        who = auth.authenticate(Session(connection), value, "127.0.0.1", NOW)
    assert (who.user, who.account) == (MERCHANT, "A0001")
    home = client.get("/m/")
    assert home.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in home.headers["content-security-policy"]


def test_login_needs_its_form_token_and_wrong_passwords_are_told_plainly(
    client: TestClient,
) -> None:
    refused = client.post("/m/login", data={"user": MERCHANT, "password": PASSWORD})
    assert refused.status_code == 403
    token = _csrf(client.get("/m/login").text)
    wrong = client.post("/m/login", data={"csrf": token, "user": MERCHANT, "password": "nope"})
    assert wrong.status_code == 401
    assert "用户名或密码不对" in wrong.text
    unknown = client.post("/m/login", data={"csrf": token, "user": "nobody", "password": "x"})
    assert unknown.status_code == 401 and "用户名或密码不对" in unknown.text  # same words


def test_too_many_attempts_from_one_address_are_throttled_in_words(client: TestClient) -> None:
    token = _csrf(client.get("/m/login").text)
    codes = [
        client.post("/m/login", data={"csrf": token, "user": f"u{n}", "password": "x"}).status_code
        for n in range(auth.ADDRESS_ATTEMPTS + 1)
    ]
    assert codes[-1] == 429
    last = client.post("/m/login", data={"csrf": token, "user": MERCHANT, "password": PASSWORD})
    assert last.status_code == 429 and "尝试次数太多" in last.text


def test_a_merchant_sees_only_its_own_account_receipts_and_statement(
    client: TestClient, world: World
) -> None:
    log_in(client)
    home = client.get("/m/").text
    assert "A0001" in home and "A0002" not in home and "S102" not in home
    mine = client.get(f"/m/receipts/{world.receipts['A0001']}.pdf")
    assert mine.status_code == 200 and mine.content.startswith(b"%PDF")
    other = client.get(f"/m/receipts/{world.receipts['A0002']}.pdf")
    missing = client.get("/m/receipts/2026-999999.pdf")
    assert other.status_code == missing.status_code == 404
    assert "找不到这张收据" in other.text
    # Another's receipt is not told apart from none at all (the page differs only in its path).
    assert other.text.replace(world.receipts["A0002"], "N") == missing.text.replace(
        "2026-999999", "N"
    )
    assert client.get("/m/statement.pdf", params={"month": "2026-11"}).content.startswith(b"%PDF")
    bad = client.get("/m/statement.pdf", params={"month": "2026-13"})
    assert bad.status_code == 422 and "月份格式不对" in bad.text
    assert client.get("/m/statement.pdf", params={"account": "A0002"}).status_code == 422


def test_staff_are_told_to_use_the_console(client: TestClient) -> None:
    log_in_staff = _csrf(client.get("/m/login").text)
    client.post("/m/login", data={"csrf": log_in_staff, "user": OPERATOR, "password": PASSWORD})
    page = client.get("/m/")
    assert page.status_code == 403 and "请使用管理后台" in page.text
    assert client.get("/m/statement.pdf", params={"month": "2026-11"}).status_code == 403


def test_without_a_session_pages_go_to_the_login_and_posts_are_refused(client: TestClient) -> None:
    assert client.get("/m/", follow_redirects=False).headers["location"] == "/m/login"
    client.cookies.set("vb_session", "forged-token")
    assert client.get("/m/", follow_redirects=False).status_code == 303
    answer = client.post("/m/topup", data={"csrf": "x", "amount": "100", "provider": "wechat"})
    assert answer.status_code == 401 and "登录已过期" in answer.text


def test_csrf_is_tied_to_the_session(client: TestClient, world: World) -> None:
    mine = log_in(client)
    other = TestClient(create_app(world.engine, world.key, lambda: NOW))
    theirs = log_in(other, "shop-a2")
    assert mine != theirs
    stolen = client.post("/m/topup", data={"csrf": theirs, "amount": "100", "provider": "wechat"})
    assert stolen.status_code == 403
    good = client.post("/m/topup", data={"csrf": mine, "amount": "100", "provider": "wechat"})
    assert good.status_code == 503 and "在线支付暂未开通" in good.text


def test_top_up_amounts_are_checked_in_words(client: TestClient) -> None:
    token = log_in(client)
    for amount, words, code in (
        ("", "请选择或填写充值金额", 422),
        ("1e3", "金额格式不对", 422),
        ("0.50", "至少 1.00 元", 422),
        ("100000.01", "最多 100000.00 元", 422),
    ):
        answer = client.post("/m/topup", data={"csrf": token, "amount_other": amount,
                                               "provider": "alipay"})  # fmt: skip
        assert answer.status_code == code, (amount, answer.text)
        assert words in answer.text, amount
    bad = client.post("/m/topup", data={"csrf": token, "amount": "100", "provider": "paypal"})
    assert bad.status_code == 422 and "请选择支付方式" in bad.text
    twice = client.post("/m/topup", content=f"csrf={token}&amount=1&amount=2",
                        headers={"content-type": FORM})  # fmt: skip
    assert twice.status_code == 422  # a field sent twice


def test_language_by_query_then_cookie_then_accept_language(client: TestClient) -> None:
    assert "商户登录" in client.get("/m/login").text
    assert "Merchant login" in client.get("/m/login", headers={"accept-language": "en-US"}).text
    zh_first = {"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"}
    assert "商户登录" in client.get("/m/login", headers=zh_first).text
    english = client.get("/m/login", params={"lang": "en"})
    assert "Merchant login" in english.text and client.cookies.get("vb_lang") == "en"
    assert "Merchant login" in client.get("/m/login", headers=zh_first).text  # remembered
    assert "商户登录" in client.get("/m/login", params={"lang": "zh"}).text
    assert "商户登录" in client.get("/m/login", params={"lang": "xx"}).text  # ignored


def test_static_files_are_ours_only(client: TestClient) -> None:
    assert {"phone.css", "wxpay.js", "fonts/voltbook-sc.woff"} <= set(FILES)
    css = client.get("/static/phone.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/templates/base.html"):
        assert client.get(path).status_code == 404, path


# -- the pure parts ---------------------------------------------------------------------------


@given(st.binary(max_size=300), st.sampled_from([FORM, f"{FORM}; charset=utf-8", "text/plain"]))
def test_any_form_body_is_fields_or_our_error(body: bytes, content_type: str) -> None:
    try:
        fields = parse_form(body, content_type)
    except Invalid:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@given(st.text(max_size=20))
def test_any_typed_amount_is_fen_in_range_or_a_message(text: str) -> None:
    try:
        fen = fen_of_yuan(text, min_fen=100, max_fen=MAX_RECHARGE_FEN)
    except AmountError as exc:
        assert exc.key in catalogue.MESSAGES
        return
    assert isinstance(fen, int) and 100 <= fen <= MAX_RECHARGE_FEN


@pytest.mark.parametrize(
    ("typed", "fen"),
    [("88", 8800), ("88.5", 8850), ("88.50", 8850), (" ¥ 0.01 ".replace("0.01", "1.01"), 101),
     ("100000", 10_000_000)],
)  # fmt: skip
def test_yuan_are_parsed_exactly(typed: str, fen: int) -> None:
    assert fen_of_yuan(typed, min_fen=100, max_fen=MAX_RECHARGE_FEN) == fen


def test_prices_now_by_tariff_kind() -> None:
    sh = dt.timezone(dt.timedelta(hours=8))
    tou = {"prices": {"peak": 11000, "flat": 8365, "valley": 4000},
           "ranges": [["08:00", "11:00", "peak"], ["11:00", "23:00", "flat"],
                      ["23:00", "08:00", "valley"]]}  # fmt: skip
    assert price_of("tou", tou, dt.datetime(2026, 11, 24, 9, tzinfo=sh), 0) == (11000, "peak")
    assert price_of("tou", tou, dt.datetime(2026, 11, 24, 23, 30, tzinfo=sh), 0)[1] == "valley"
    assert price_of("tou", tou, dt.datetime(2026, 11, 24, 0, 0, tzinfo=sh), 0)[1] == "valley"
    tiers = {"tiers": [[100_000, 6000], [None, 9000]]}
    assert price_of("tiered", tiers, dt.datetime(2026, 11, 24, tzinfo=sh), 99_999)[0] == 6000
    assert price_of("tiered", tiers, dt.datetime(2026, 11, 24, tzinfo=sh), 100_000)[0] == 9000
    assert wh_for(8365, 8365) == 100_000  # ¥83.65 at ¥0.8365/kWh is 100 kWh
    assert wh_for(-5, 8365) == 0


def test_every_word_is_in_the_catalogue_in_both_languages_and_in_the_font() -> None:
    used: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):  # the console's in templates/console/ too
        source = template.read_text()
        assert not re.search(r"[\u4e00-\u9fff]", source), (
            f"{template.name}: words belong in the catalogue"
        )
        used |= set(re.findall(r"\bt\('([a-z_0-9]+)'", source))
    assert used - set(catalogue.MESSAGES) == set()
    for key, (zh, en) in catalogue.MESSAGES.items():
        assert zh and en, key
        assert re.findall(r"{(\w+)}", zh) == re.findall(r"{(\w+)}", en) or key == "month_label"
    missing = set(webfont.characters()) - webfont.covered()
    assert missing == set(), "regenerate the web font: python -m cloud.web.webfont"
    # The phone page's words are all in the small file; fonts.css says which file has what.
    assert set(webfont.phone_characters()) <= webfont.covered(webfont.TARGET)
    assert webfont.FONTS_CSS.read_text(encoding="utf-8") == webfont.font_css(), (
        "regenerate the web font: python -m cloud.web.webfont"
    )


def test_unicode_range_joins_runs() -> None:
    assert webfont.unicode_range("cab") == "U+61-63"
    assert webfont.unicode_range("a电c") == "U+61, U+63, U+7535"
    assert set(webfont.console_characters()) & set(webfont.phone_characters()) == set()


def test_accept_language_ranks() -> None:
    assert i18n.from_accept_language("en-GB,en;q=0.9,zh-CN;q=0.8") == "en"
    assert i18n.from_accept_language("fr,zh-TW;q=0.5,en;q=0.4") == "zh"
    assert i18n.from_accept_language("en;q=0,zh;q=0.1") == "zh"
    assert i18n.from_accept_language("de, fr;q=nan") is None


@given(st.binary(max_size=400))
def test_any_oauth_answer_is_an_openid_or_our_error(body: bytes) -> None:
    try:
        openid = wechat_login.openid_of_answer(body)
    except wechat_login.WechatLoginFailed:
        return
    assert wechat_login.OPENID.fullmatch(openid)


def test_oauth_answers_with_an_errcode_are_refusals() -> None:
    assert wechat_login.openid_of_answer(b'{"openid": "oAbc_1", "scope": "snsapi_base"}') == (
        "oAbc_1"
    )
    for body in (b'{"errcode": 40029, "errmsg": "invalid code", "openid": "oAbc"}',
                 b'{"openid": "../etc"}', b'{"openid": 5}', b"[]",
                 b'{"openid": "a", "openid": "b"}'):  # fmt: skip
        with pytest.raises(wechat_login.WechatLoginFailed):
            wechat_login.openid_of_answer(body)


def test_a_pending_openid_cookie_is_ours_unaltered_and_fresh() -> None:
    key, other = NodeKey.generate(), NodeKey.generate()
    cookie = wechat_login.pending_cookie(key, "oUser_1", NOW)
    assert wechat_login.pending_openid(key, cookie, NOW) == "oUser_1"
    assert wechat_login.pending_openid(other, cookie, NOW) is None  # another key's
    forged = cookie.replace("oUser_1", "oUser_2", 1)
    assert wechat_login.pending_openid(key, forged, NOW) is None
    later = NOW + dt.timedelta(seconds=wechat_login.PENDING_S + 1)
    assert wechat_login.pending_openid(key, cookie, later) is None
    for junk in ("", "a|b|c", "oUser_1|9999999999|!!", "x" * 500):
        assert wechat_login.pending_openid(key, junk, NOW) is None


def test_the_page_is_light_for_a_slow_connection(client: TestClient) -> None:
    log_in(client)
    home = client.get("/m/")
    assert len(home.content) < 24_000  # the whole account, chart included, as HTML
    assert "<script" not in home.text  # no script to fetch or run before it shows
    css = client.get("/static/phone.css")
    font = client.get("/static/fonts/voltbook-sc.woff")  # only where no CJK font is installed
    assert len(css.content) < 8_000 and len(font.content) < 64_000
