"""The two providers as the cloud talks to them: keys loaded once from `[payments]`, and one
signed, verified HTTP call each (`WechatPay.call`, `Alipay.call`) that the order, refund and
bill code builds on.

Neither ever trusts an answer it cannot verify: a WeChat Pay answer must carry a platform
key's signature over its raw body, an Alipay answer Alipay's over its `…_response` text.
Anything else — no answer within `TIMEOUT_S`, a signature that fails, a body that is not JSON —
is `ProviderUnavailable` and nothing of ours changes. An answer the provider signed with an
error in it is returned as it came (`WechatAnswer.status` ≥ 400, Alipay `code` ≠ `10000`): what
it means is the caller's business (an order that does not exist is an answer, not an outage).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from cloud.config import AlipaySettings, PaymentSettings, WechatPaySettings
from cloud.errors import PaymentRefused, ProviderUnavailable
from cloud.payments import alipay_scheme, wechat_scheme

TIMEOUT_S = 5.0
ALIPAY_SUCCESS = "10000"


@dataclass(frozen=True, slots=True)
class WechatAnswer:
    status: int
    body: dict[str, Any]  # {} for 204

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def code(self) -> str:
        """WeChat Pay's error code (`ORDER_NOT_EXIST`, …), or "" on success."""
        return "" if self.ok else str(self.body.get("code", ""))


@dataclass(slots=True)
class WechatPay:
    """WeChat Pay API v3 for one merchant account (`[payments.wechat]`)."""

    settings: WechatPaySettings
    merchant_key: rsa.RSAPrivateKey
    apiv3_key: bytes
    platform_keys: dict[str, rsa.RSAPublicKey]  # by serial; all live during a rotation
    clock: Callable[[], dt.datetime]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=TIMEOUT_S))

    @classmethod
    def load(cls, settings: WechatPaySettings, clock: Callable[[], dt.datetime]) -> WechatPay:
        return cls(
            settings=settings,
            merchant_key=wechat_scheme.load_private_key(settings.merchant_key.read_bytes()),
            apiv3_key=wechat_scheme.apiv3_key(settings.apiv3_key_file.read_bytes()),
            platform_keys={
                serial: wechat_scheme.load_public_key(path.read_bytes())
                for serial, path in settings.platform_keys
            },
            clock=clock,
        )

    def now_s(self) -> int:
        return int(self.clock().timestamp())

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> WechatAnswer:
        """One signed request; the answer's signature checked before its body is read."""
        path_query = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        header = wechat_scheme.authorization(
            mchid=self.settings.mchid, serial=self.settings.merchant_serial,
            key=self.merchant_key, method=method, path_query=path_query, body=raw,
            timestamp=self.now_s(), nonce=secrets.token_hex(16),
        )  # fmt: skip
        headers = {"Authorization": header, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = self.http.request(
                method, self.settings.api_base + path_query, content=raw, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"WeChat Pay did not answer {method} {path}: {exc}") from exc
        try:
            wechat_scheme.verify_signed(
                answer.headers, answer.content, self.platform_keys, self.now_s()
            )
            parsed = wechat_scheme.json_body(answer.content) if answer.content else {}
        except PaymentRefused as exc:
            raise ProviderUnavailable(
                f"WeChat Pay's answer to {method} {path} ({answer.status_code}) is not one we "
                f"can trust: {exc}"
            ) from exc
        return WechatAnswer(answer.status_code, parsed)

    def close(self) -> None:
        self.http.close()


@dataclass(slots=True)
class Alipay:
    """Alipay's open API for one app (`[payments.alipay]`)."""

    settings: AlipaySettings
    app_key: rsa.RSAPrivateKey
    alipay_key: rsa.RSAPublicKey
    clock: Callable[[], dt.datetime]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=TIMEOUT_S))

    @classmethod
    def load(cls, settings: AlipaySettings, clock: Callable[[], dt.datetime]) -> Alipay:
        return cls(
            settings=settings,
            app_key=alipay_scheme.load_private_key(settings.app_private_key.read_bytes()),
            alipay_key=alipay_scheme.load_public_key(settings.alipay_public_key.read_bytes()),
            clock=clock,
        )

    def params(
        self,
        method: str,
        biz_content: Mapping[str, Any],
        *,
        notify_url: str | None = None,
        return_url: str | None = None,
    ) -> dict[str, str]:
        """The signed parameters of a call (a `wap.pay` page URL is the gateway with these)."""
        return alipay_scheme.request_params(
            self.app_key, app_id=self.settings.app_id, method=method, biz_content=biz_content,
            now=self.clock(), notify_url=notify_url, return_url=return_url,
        )  # fmt: skip

    def page_url(self, method: str, biz_content: Mapping[str, Any], **urls: str | None) -> str:
        query = urllib.parse.urlencode(self.params(method, biz_content, **urls))
        return f"{self.settings.gateway}?{query}"

    def call(
        self, method: str, biz_content: Mapping[str, Any], *, notify_url: str | None = None
    ) -> dict[str, Any]:
        """One signed call; the `…_response` object, its signature checked (`code` 10000 is
        success; otherwise `sub_code` says why)."""
        form = alipay_scheme.encode_form(self.params(method, biz_content, notify_url=notify_url))
        try:
            answer = self.http.post(
                self.settings.gateway,
                content=form,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"Alipay did not answer {method}: {exc}") from exc
        try:
            return alipay_scheme.verify_answer(self.alipay_key, method, answer.content)
        except PaymentRefused as exc:
            raise ProviderUnavailable(
                f"Alipay's answer to {method} ({answer.status_code}) is not one we can trust: {exc}"
            ) from exc

    def close(self) -> None:
        self.http.close()


@dataclass(slots=True)
class Providers:
    """What `[payments]` configures: where notifications come back, the order lifetime, and
    each provider that is set up (None: that provider is not offered)."""

    settings: PaymentSettings
    wechat: WechatPay | None
    alipay: Alipay | None

    @classmethod
    def load(cls, settings: PaymentSettings, clock: Callable[[], dt.datetime]) -> Providers:
        return cls(
            settings=settings,
            wechat=None if settings.wechat is None else WechatPay.load(settings.wechat, clock),
            alipay=None if settings.alipay is None else Alipay.load(settings.alipay, clock),
        )

    def notify_url(self, provider: str) -> str:
        return f"{self.settings.notify_base}/payments/{provider}/notify"

    def close(self) -> None:
        for client in (self.wechat, self.alipay):
            if client is not None:
                client.close()
