"""Alipay's open-API signatures (RSA2), as pure functions over bytes, both directions.

    signing string   every parameter but `sign` (and, for a notification, `sign_type`), empty
                     values dropped, keys sorted by ASCII, `k=v` joined by `&` with the
                     URL-*decoded* values, encoded in the message's `charset` (utf-8 or GBK)
    signature        SHA256withRSA (PKCS#1 v1.5), base64: a request with the app's private
                     key; a notification, and an answer, with Alipay's
    notification     a form POST (`application/x-www-form-urlencoded`) in its `charset`
    answer           JSON `{"<method>_response": {...}, "sign": "…"}`: the signature is over
                     the `…_response` value's exact text as it stands in the body

A GBK notification verified as UTF-8 fails (or worse, passes with other text): the charset the
message names decodes it and encodes the signing string. Every refusal is `PaymentRefused`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloud.errors import PaymentRefused
from ledger.errors import DecodeError
from ledger.untrusted import load_json

CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk"}
MAX_FORM_BYTES = 32 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")  # the only trade_status that mean paid
SHANGHAI = dt.timezone(dt.timedelta(hours=8))  # Alipay's timestamps are Beijing time
_CHARSET_FIELD = re.compile(rb"(?:^|&)charset=([A-Za-z0-9\-]{1,16})(?:&|$)")


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ValueError("an Alipay RSA2 key is an RSA key of at least 2048 bits")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Alipay's public key (or the app's, in the sandbox), PEM; a bare base64 key as Alipay's
    console shows it is accepted too."""
    text = pem.strip()
    if not text.startswith(b"-----"):
        text = b"-----BEGIN PUBLIC KEY-----\n" + text + b"\n-----END PUBLIC KEY-----\n"
    key = serialization.load_pem_public_key(text)
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise ValueError("an Alipay RSA2 public key is an RSA key of at least 2048 bits")
    return key


def charset_of(name: object) -> str:
    codec = CHARSETS.get(str(name).lower()) if isinstance(name, str) else None
    if codec is None:
        raise PaymentRefused("malformed", f"charset {str(name)[:20]!r} is not utf-8 or GBK")
    return codec


def signing_string(params: Mapping[str, str], *, notification: bool) -> str:
    dropped = {"sign", "sign_type"} if notification else {"sign"}
    return "&".join(
        f"{name}={params[name]}" for name in sorted(params) if name not in dropped and params[name]
    )


def sign(key: rsa.RSAPrivateKey, params: Mapping[str, str], *, notification: bool) -> str:
    """The `sign` of a request (or, in the sandbox, of a notification) in its charset."""
    message = signing_string(params, notification=notification).encode(
        charset_of(params.get("charset", "utf-8"))
    )
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _verified(key: rsa.RSAPublicKey, signature: str, message: bytes) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def verify(key: rsa.RSAPublicKey, params: Mapping[str, str], *, notification: bool) -> None:
    """`params` (already decoded from their charset) carry `key`'s signature."""
    if params.get("sign_type", "RSA2") != "RSA2":
        raise PaymentRefused("bad_signature", "only sign_type RSA2 is accepted")
    charset = charset_of(params.get("charset", "utf-8"))
    try:
        message = signing_string(params, notification=notification).encode(charset)
    except UnicodeEncodeError:
        raise PaymentRefused("malformed", f"the parameters are not {charset} text") from None
    if not _verified(key, params.get("sign", ""), message):
        raise PaymentRefused("bad_signature", "the signature does not verify")


def parse_form(body: bytes) -> dict[str, str]:
    """A form body as Alipay posts it, decoded in the charset it names (utf-8 if none): each
    key once, percent-escapes that decode in that charset, nothing but ASCII on the wire."""
    if len(body) > MAX_FORM_BYTES:
        raise PaymentRefused("malformed", f"a form of {len(body)} bytes is too large")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise PaymentRefused("malformed", "a form is percent-encoded ASCII") from None
    found = _CHARSET_FIELD.search(body)
    codec = charset_of(found[1].decode() if found else "utf-8")
    try:
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), encoding=codec,
            errors="strict",
        )  # fmt: skip
    except (ValueError, UnicodeDecodeError):
        raise PaymentRefused("malformed", f"not a form encoded in {codec}") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise PaymentRefused("malformed", f"parameter {name[:40]!r} appears twice")
        if "\x00" in name or "\x00" in value:
            raise PaymentRefused("malformed", "a parameter holds a NUL character")
        params[name] = value
    return params


def encode_form(params: Mapping[str, str]) -> bytes:
    """`params` as a form body in their charset (the sandbox's notifications, our requests)."""
    codec = charset_of(params.get("charset", "utf-8"))
    return urllib.parse.urlencode(params, encoding=codec).encode("ascii")


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def request_params(
    key: rsa.RSAPrivateKey,
    *,
    app_id: str,
    method: str,
    biz_content: Mapping[str, Any],
    now: dt.datetime,
    notify_url: str | None = None,
    return_url: str | None = None,
) -> dict[str, str]:
    """The signed parameters of an open-API call (posted as a form, or, for `wap.pay`, the
    query of the page the phone opens)."""
    params = {
        "app_id": app_id, "method": method, "format": "JSON", "charset": "utf-8",
        "sign_type": "RSA2", "timestamp": timestamp(now), "version": "1.0",
        "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
    }  # fmt: skip
    if notify_url:
        params["notify_url"] = notify_url
    if return_url:
        params["return_url"] = return_url
    params["sign"] = sign(key, params, notification=False)
    return params


def response_name(method: str) -> str:
    """`alipay.trade.query` → `alipay_trade_query_response`."""
    return method.replace(".", "_") + "_response"


def signed_answer(key: rsa.RSAPrivateKey, method: str, content: Mapping[str, Any]) -> bytes:
    """An open-API answer (the sandbox's side): the content's text, signed as it stands."""
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    signature = base64.b64encode(
        key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    return f'{{"{response_name(method)}":{text},"sign":"{signature}"}}'.encode()


def verify_answer(key: rsa.RSAPublicKey, method: str, body: bytes) -> dict[str, Any]:
    """The `…_response` object of an open-API answer, its signature checked over the exact
    text it has in `body` (never a re-serialisation)."""
    try:
        whole = load_json(body, max_bytes=MAX_ANSWER_BYTES, allow_nul=False)
    except DecodeError as exc:
        raise PaymentRefused("malformed", f"the answer is not JSON we accept ({exc})") from None
    name = response_name(method)
    if not isinstance(whole, dict) or not isinstance(whole.get(name), dict):
        raise PaymentRefused("malformed", f"the answer has no {name} object")
    text = body.decode("utf-8")
    raw = _raw_value(text, name)
    signature = whole.get("sign")
    if raw is None or not isinstance(signature, str):
        raise PaymentRefused("unsigned", f"the answer's {name} is not signed")
    if not _verified(key, signature, raw.encode("utf-8")):
        raise PaymentRefused("bad_signature", f"the answer's {name} signature does not verify")
    content: dict[str, Any] = whole[name]
    return content


def _raw_value(text: str, name: str) -> str | None:
    """The exact text of the object that follows `"name":` at the top level of `text`."""
    decoder = json.JSONDecoder()
    start = text.find(f'"{name}"')
    if start < 0:
        return None
    colon = text.find(":", start + len(name) + 2)
    begin = colon + 1
    while begin < len(text) and text[begin] in " \t\r\n":
        begin += 1
    try:
        _, end = decoder.raw_decode(text, begin)
    except json.JSONDecodeError:
        return None
    return text[begin:end]
