"""The demo's online payments: merchants pay on their phones in the provider sandbox, and the
notices they are sent.

`start_stand_ins` starts what plays the outside world on loopback before the cloud starts —
the provider sandbox (`cloud.payments.sandbox`: WeChat Pay API v3 and Alipay, keys of its own)
and the WeChat Official Account stand-in (`cloud.notices.wechat_oa_standin`) — and writes the
`cloud.toml` that points the cloud at them: the sandbox's `[payments]` snippet and a
`[notices]` table (the Official Account, and an SMS file the demo reads as the merchants'
phones). The providers notify the cloud at its own URL, so the cloud's port is chosen first.

`register_merchants` declares who the merchants are (`/registry/…`: an openid, a phone) so
notices reach them; `pay_on_phone` is one merchant paying: an order (`POST /payments/orders`),
the pay page opened and its button pressed over HTTP as the phone's browser would, the
provider's signed notification reaching the cloud, the order's transitions with their causes;
`show_notices` prints a merchant's notices (`GET /notices`) with their delivery states.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import re
import secrets
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from cloud.config import NOTICE_KINDS
from cloud.notices.wechat_oa_standin import OaStandin
from cloud.payments.sandbox.app import LOOPBACK, Sandbox, create_sandbox, serve_in_thread

Wait = Callable[[str, Callable[[], bool]], None]
ZONE = ZoneInfo("Asia/Shanghai")
OA_APPID = "wxdemo0000000001"
PROVIDER_NAME = {"wechat": "WeChat Pay", "alipay": "Alipay"}
NOTIFY_PATH = {"wechat": "/payments/wechat/notify", "alipay": "/payments/alipay/notify"}
BUTTON = re.compile(r'<form method="post" action="([^"]*/confirm[^"]*)">')


@dataclass(frozen=True, slots=True)
class StandIns:
    """The outside world on loopback, and the cloud configuration that points at it."""

    sandbox: Sandbox
    oa: OaStandin
    sms_file: Path
    cloud_toml: Path


def _free_port() -> int:
    """A port free now on loopback, for the cloud's API: the providers must be told the cloud's
    URL before it starts (`[payments] notify_base`). Chosen last, just before the cloud starts;
    what binds in between (the broker's listeners) takes random ephemeral ports, so a clash is
    unlikely, and would stop the demo with the API's "cannot listen" error, not mislead it."""
    with socket.create_server((LOOPBACK, 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def _notices_toml(secret_file: Path, oa_url: str, sms_file: Path) -> str:
    templates = "\n".join(f'{kind} = "DEMO-{kind.upper().replace("_", "-")}"'
                          for kind in NOTICE_KINDS)  # fmt: skip
    return (
        "\n[notices]\n"
        "every = 1                    # the demo's rounds: a second (default 60)\n"
        "\n[notices.wechat_oa]\n"
        f'api_base = "{oa_url}"\n'
        f'appid = "{OA_APPID}"\n'
        f'secret_file = "{secret_file}"\n'
        "\n[notices.wechat_oa.templates]\n"
        f"{templates}\n"
        "\n[notices.sms]\n"
        f'file = "{sms_file}"\n'
    )


def start_stand_ins(directory: Path, stack: contextlib.ExitStack) -> StandIns:
    """Start the sandbox and the Official Account on loopback (stopped by `stack`) and write
    `directory/cloud.toml`: the API's port, the demo's broker listener, `[payments]`,
    `[notices]`."""
    directory.mkdir(parents=True, exist_ok=True)
    sandbox = create_sandbox()
    running = stack.enter_context(serve_in_thread(sandbox))
    oa = stack.enter_context(OaStandin(appid=OA_APPID, secret=secrets.token_urlsafe(24)))
    cloud_url = f"http://{LOOPBACK}:{_free_port()}"
    snippet = sandbox.keys.write(directory / "pay", api_base=running.url, notify_base=cloud_url)
    secret_file = directory / "wechat-oa-secret"
    secret_file.write_text(oa.secret + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    sms_file = directory / "sms-outbox.jsonl"
    port = urllib.parse.urlsplit(cloud_url).port
    toml = directory / "cloud.toml"
    toml.write_text(
        "# The demo's cloud: written by demo.payments_act.\n"
        f'[api]\nhost = "{LOOPBACK}"\nport = {port}\n'
        "\n[broker]\nplain_port = 0               # the demo's listener, loopback only\n\n"
        + snippet.read_text(encoding="utf-8")
        + _notices_toml(secret_file, oa.url, sms_file),
        encoding="utf-8",
    )
    print(f"provider sandbox {running.url} (WeChat Pay API v3, Alipay gateway; keys of its own), "
          f"WeChat Official Account stand-in {oa.url}")  # fmt: skip
    print(f"  {toml.name}: [payments] from the sandbox's snippet, notified at {cloud_url}; "
          f"[notices] WeChat OA + SMS file {sms_file.name}")  # fmt: skip
    return StandIns(sandbox, oa, sms_file, toml)


def _json(answer: httpx.Response) -> Any:
    if answer.is_error:
        raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: "
                           f"{answer.status_code} {answer.text}")  # fmt: skip
    return answer.json()


@dataclass(frozen=True, slots=True)
class MerchantPerson:
    """A tenant's merchant as the registry knows it: how notices reach them."""

    account: str
    name: str
    phone: str
    openid: str  # the merchant as a follower of the Official Account


def register_merchants(api: httpx.Client, people: list[MerchantPerson]) -> None:
    """Declare the merchants and their accounts (`/registry/…`, no shop: nothing is sent to the
    concentrator), so the cloud knows whom a notice about an account reaches."""
    _json(api.post("/registry/account-types", json={"code": "merchant", "name": "商户"}))
    for person in people:
        body = {"name": person.name, "phone": person.phone, "wechat_openid": person.openid}
        merchant = _json(api.post("/registry/merchants", json=body))
        _json(api.post("/registry/accounts", json={"id": person.account, "account_type": "merchant",
                                                   "merchant_id": merchant["id"]}))  # fmt: skip
    shown = ", ".join(f"{p.account} ({p.name})" for p in people)
    print(f"  registry: the merchants of {shown}, each with a phone and a WeChat openid "
          "(POST /registry/merchants, /registry/accounts)")  # fmt: skip


def unfollow(stand_ins: StandIns, person: MerchantPerson) -> None:
    """The merchant stops following the Official Account: WeChat answers 43101 and the notice
    falls back to SMS."""
    stand_ins.oa.unsubscribed.add(person.openid)
    print(
        f"  ({person.name} has unfollowed the Official Account: WeChat will answer 43101, "
        "so notices fall back to SMS)"
    )


def _local(stamp: str) -> str:
    return f"{dt.datetime.fromisoformat(stamp).astimezone(ZONE):%H:%M:%S}"


def _press_pay(phone: httpx.Client, link: str) -> str:
    """Open the pay page the order's link leads to and press its 确认支付 button, as a phone's
    browser does; what the page says about the order, and what the result page says."""
    page = phone.get(link, follow_redirects=True)
    page.raise_for_status()
    button = BUTTON.search(page.text)
    amount = re.search(r'id="amount">([^<]*)<', page.text)
    state = re.search(r'id="state">([^<]*)<', page.text)
    if button is None or amount is None or state is None:
        raise RuntimeError(f"the pay page {page.url} has no pay button: {page.text[:200]}")
    target = urllib.parse.urljoin(str(page.url), html.unescape(button.group(1)))
    paid = phone.post(target, follow_redirects=True)
    paid.raise_for_status()
    result = re.search(r'id="result">([^<]*)<', paid.text)
    return (f"{amount.group(1)} {state.group(1)}; 确认支付 → "
            f"{result.group(1) if result else paid.url}")  # fmt: skip


def pay_on_phone(
    merchant: httpx.Client, *, account: str, provider: str, channel: str, fen: int, wait: Wait
) -> dict[str, Any]:
    """The merchant tops `account` up by `fen` with `provider`: the order, the payment on the
    sandbox's page, the notification, the credit. The recharge the credit made."""
    body = {"account": account, "fen": fen, "provider": provider, "channel": channel}
    order = _json(merchant.post("/payments/orders", json=body))
    no = order["out_trade_no"]
    link_key, link = next((k, v) for k, v in order["pay"].items()
                          if k in ("h5_url", "page_url", "code_url", "qr_code"))  # fmt: skip
    print(f"  POST /payments/orders {account} {fen / 100:.2f} yuan, {PROVIDER_NAME[provider]} "
          f"{channel} → order {no} {order['state']}; {link_key} {link[:60]}…")  # fmt: skip
    with httpx.Client(timeout=10) as phone:
        said = _press_pay(phone, link)
    print(f"  the phone opens it: {PROVIDER_NAME[provider]}'s page shows {said}")
    path = f"/payments/orders/{no}"
    wait(f"order {no} to be credited", lambda: _json(merchant.get(path))["state"] == "credited")
    shown = _json(merchant.get(path))
    print(f"  {PROVIDER_NAME[provider]}'s signed notification reached POST "
          f"{NOTIFY_PATH[provider]}; order {no}:")  # fmt: skip
    for step in shown["transitions"]:
        facts = {k: v for k, v in step["facts"].items() if k in ("by", "channel", "transaction_id")}
        print(f"    {_local(step['at'])} {step['from_state'] or '·'} → {step['to_state']:8} "
              f"cause: {step['cause']}{'  ' + json.dumps(facts) if facts else ''}")  # fmt: skip
    recharge: dict[str, Any] = _json(merchant.get(f"/recharges/{no}"))
    print(f"  cloud: recharge {no} {recharge['status']} ({recharge['method']}, by "
          f"{recharge['operator']}), signed command {recharge['command_id'][:8]}… to the "
          "concentrator")  # fmt: skip
    return recharge


def _settled(merchant: httpx.Client, kinds: tuple[str, ...]) -> Callable[[], bool]:
    def done() -> bool:
        notices = _json(merchant.get("/notices"))["items"]
        states = {n["kind"]: n["state"] for n in notices}
        return all(states.get(kind) in ("sent", "failed", "unreachable") for kind in kinds)

    return done


def show_notices(
    merchant: httpx.Client, person: MerchantPerson, stand_ins: StandIns, wait: Wait
) -> None:
    """Wait until the cut-off and the credited recharge were told, then print every notice the
    merchant can see with its deliveries, and what reached the phone."""
    kinds = ("cut_off", "recharge_credited")
    wait(f"{person.account}'s notices to be sent", _settled(merchant, kinds))
    notices = _json(merchant.get("/notices"))["items"]
    print(f"  notices to {person.name} ({person.account}), GET /notices:")
    for notice in notices:
        print(f"    #{notice['id']} {notice['kind']:17} {notice['state']}")
        for d in notice["deliveries"]:
            said = f"msgid {d['provider_id']}" if d["provider_id"] else d["last_error"]
            print(f"        {d['channel']:6} → {d['recipient']:18} {d['state']:8} after "
                  f"{d['attempts']} attempt(s){f' ({said})' if said else ''}")  # fmt: skip
    got = [m for m in stand_ins.oa.messages if m.touser == person.openid]
    if got:
        print(f"  the Official Account took {len(got)} template message(s) for {person.openid}: "
              f"{', '.join(m.template_id for m in got)}")  # fmt: skip
    sms_file = stand_ins.sms_file
    lines = sms_file.read_text(encoding="utf-8").splitlines() if sms_file.exists() else []
    for sms in (json.loads(line) for line in lines):
        if sms["phone"] == person.phone:
            print(f"  SMS to {sms['phone']}: {sms['text']}")
