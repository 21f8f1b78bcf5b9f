"""WeChat Official Account template messages, with one access token shared by every send.

    GET  {api_base}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…
         → {"access_token", "expires_in": 7200}          (or {"errcode", "errmsg"})
    POST {api_base}/cgi-bin/message/template/send?access_token=…
         {"touser": openid, "template_id", "url", "data": {key: {"value"}}}
         → {"errcode": 0, "errmsg": "ok", "msgid"}

The token is fetched by one `TokenRefresher` per process (WeChat invalidates the previous
token five minutes after a new one is fetched, so two fetchers would spoil each other's): under
its lock, so concurrent sends wait for one fetch, and again `EARLY` before it expires. An
answer saying the token is bad (40001, 40014, 42001) drops that token — only if it is still
the current one, so a burst of such answers makes one new fetch — and the message is sent once
more with the new token.

What an answer means for the notice (`ERRCODES`, a table; an errcode not listed refuses the
message for good, since WeChat will not take it later either):

         0  delivered                     43101  not subscribed: the next channel (SMS)
        -1  busy: retry later             45009  rate limited: retry later
    40001, 40014, 42001  a new token, sent once more; still bad: retry later
    HTTP or network trouble, an answer that is not JSON: retry later
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from cloud.notices.channels import TIMEOUT, Outcome, Sent

EARLY = 300.0  # seconds before expiry that the token is fetched anew
TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, expired
NOT_SUBSCRIBED = 43101
RATE_LIMITED = 45009
ERRCODES: Mapping[int, Outcome] = {
    0: Outcome.DELIVERED,
    -1: Outcome.RETRY,  # system busy
    RATE_LIMITED: Outcome.RETRY,  # the day's quota or the rate: later
    NOT_SUBSCRIBED: Outcome.NOT_SUBSCRIBED,  # the merchant unfollowed: SMS
    **dict.fromkeys(TOKEN_ERRORS, Outcome.RETRY),  # still bad after a new token: later
}


class TokenUnavailable(Exception):
    """No token could be had now (network, WeChat's error): the send is tried again later."""


@dataclass(frozen=True, slots=True)
class OaAccount:
    api_base: str  # https://api.weixin.qq.com, or the stand-in's URL
    appid: str
    secret: Callable[[], str]  # read when a token is fetched (a file, in production)


def _json_object(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError(f"HTTP {answer.status_code}, not a JSON object: {answer.text[:120]!r}")
    return body


def _errcode(body: Mapping[str, Any]) -> int:
    code = body.get("errcode", 0)
    return code if type(code) is int else -1


class TokenRefresher:
    """The one holder of the account's access token in this process."""

    def __init__(
        self,
        account: OaAccount,
        client: httpx.Client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account, self.client, self.clock = account, client, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.fetches = 0  # tokens fetched (for the log and the tests)

    def token(self) -> str:
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._token, expires_in = self._fetch()
                self._renew_at = self.clock() + max(expires_in - EARLY, expires_in / 2)
            return self._token

    def invalidate(self, token: str) -> None:
        """WeChat said `token` is bad: fetch anew next time, unless that happened already."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        params = {"grant_type": "client_credential", "appid": self.account.appid,
                  "secret": self.account.secret()}  # fmt: skip
        try:
            body = _json_object(
                self.client.get(f"{self.account.api_base}/cgi-bin/token", params=params)
            )
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenUnavailable(f"no access token: {type(exc).__name__}: {exc}") from exc
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if _errcode(body) != 0 or not isinstance(token, str) or not token:
            raise TokenUnavailable(
                f"no access token: errcode {body.get('errcode')} {str(body.get('errmsg'))[:120]}"
            )
        if type(expires_in) is not int or not 60 <= expires_in <= 86_400:
            expires_in = 7200
        self.fetches += 1
        return token, float(expires_in)


class TemplateSender:
    """Sends template messages on one account; thread-safe (the refresher is shared)."""

    def __init__(self, account: OaAccount, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(timeout=TIMEOUT)
        self.account = account
        self.tokens = TokenRefresher(account, self.client)

    def send(
        self, openid: str, template_id: str, data: Mapping[str, Any], url: str | None = None
    ) -> Sent:
        message: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            message["url"] = url
        for renewed in (False, True):
            try:
                token = self.tokens.token()
            except TokenUnavailable as exc:
                return Sent(Outcome.RETRY, str(exc))
            try:
                body = _json_object(
                    self.client.post(
                        f"{self.account.api_base}/cgi-bin/message/template/send",
                        params={"access_token": token},
                        json=message,
                    )
                )
            except (httpx.HTTPError, ValueError) as exc:
                return Sent(Outcome.RETRY, f"WeChat unreachable: {type(exc).__name__}: {exc}")
            code = _errcode(body)
            if code in TOKEN_ERRORS and not renewed:
                self.tokens.invalidate(token)
                continue
            outcome = ERRCODES.get(code, Outcome.REFUSED)
            if outcome is Outcome.DELIVERED:
                msgid = body.get("msgid")
                return Sent(outcome, provider_id=None if msgid is None else str(msgid)[:64])
            return Sent(outcome, f"WeChat errcode {code}: {str(body.get('errmsg', ''))[:200]}")
        raise AssertionError("not reached")  # the second round always returns

    def close(self) -> None:
        self.client.close()
