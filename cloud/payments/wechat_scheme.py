"""WeChat Pay API v3's signatures and encryption, as pure functions over bytes.

Both directions live here, so the cloud and the provider sandox cannot drift apart:

    request (merchant → WeChat Pay)   SHA256withRSA, the merchant's key, over
        METHOD \n PATH?QUERY \n TIMESTAMP \n NONCE \n BODY \n
        Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",
                       serial_no="…",signature="…"
    answer or notification (WeChat Pay → merchant)   SHA256withRSA, the platform's key, over
        TIMESTAMP \n NONCE \n RAW BODY \n
        Wechatpay-Timestamp, -Nonce, -Signature, -Serial (which key: a certificate serial, or
        PUB_KEY_ID_…), -Signature-Type
    resource (inside a notification)   AEAD_AES_256_GCM, key = the 32-byte APIv3 key,
        nonce = 12 ASCII bytes, associated data as UTF-8, base64(ciphertext ‖ tag)
    JSAPI (merchant → the phone's getBrandWCPayRequest)   SHA256withRSA over
        APPID \n TIMESTAMP \n NONCE \n prepay_id=… \n

The raw body is verified as it arrived, never re-serialised; the key is chosen by the serial
the message names among every key configured (during a rotation two are live); a timestamp
more than `WINDOW_S` from now is stale; a `WECHATPAY/SIGNTEST/` signature is WeChat Pay's own
probe and must fail. Every refusal is `PaymentRefused` with a reason word.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud.errors import PaymentRefused
from ledger.errors import DecodeError
from ledger.untrusted import load_json

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
WINDOW_S = 300  # a notification's timestamp may be this far from our clock
SIGNTEST = "WECHATPAY/SIGNTEST/"
APIV3_KEY_BYTES = 32
MAX_NOTICE_BYTES = 64 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,10}")  # seconds; milliseconds (13 digits) are refused
_FIELD = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


# -- keys ---------------------------------------------------------------------------------------
def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The merchant's (or, in the sandbox, the platform's) RSA key from PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ValueError("a WeChat Pay key is an RSA key of at least 2048 bits")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """A WeChat Pay platform certificate or WeChat Pay public key, from PEM."""
    key: object
    if b"BEGIN CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise ValueError("a WeChat Pay platform key is an RSA key of at least 2048 bits")
    return key


def apiv3_key(raw: bytes) -> bytes:
    """The APIv3 key as the file holds it (32 ASCII characters, an optional newline)."""
    key = raw.strip()
    if len(key) != APIV3_KEY_BYTES or not key.isascii():
        raise ValueError(f"an APIv3 key is {APIV3_KEY_BYTES} ASCII characters")
    return key


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _verified(key: rsa.RSAPublicKey, signature: str, message: bytes) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# -- requests (merchant → provider) -------------------------------------------------------------
def request_message(method: str, path_query: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    head = f"{method}\n{path_query}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def authorization(
    *,
    mchid: str,
    serial: str,
    key: rsa.RSAPrivateKey,
    method: str,
    path_query: str,
    body: bytes,
    timestamp: int,
    nonce: str,
) -> str:
    """The `Authorization` header of a request to WeChat Pay."""
    signature = _sign(key, request_message(method, path_query, timestamp, nonce, body))
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
        f'serial_no="{serial}",signature="{signature}"'
    )


@dataclass(frozen=True, slots=True)
class Authorization:
    mchid: str
    nonce: str
    timestamp: int
    serial: str
    signature: str


def parse_authorization(header: str) -> Authorization:
    """The fields of an `Authorization` header (the sandbox's side)."""
    schema, _, rest = header.partition(" ")
    if schema != SCHEMA:
        raise PaymentRefused("bad_authorization", f"the schema must be {SCHEMA}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        found = _FIELD.fullmatch(part)
        if found is None or found[1] in fields:
            raise PaymentRefused("bad_authorization", f"malformed field {part[:40]!r}")
        fields[found[1]] = found[2]
    try:
        auth = Authorization(
            fields["mchid"], fields["nonce_str"], int(fields["timestamp"]), fields["serial_no"],
            fields["signature"],
        )  # fmt: skip
    except (KeyError, ValueError):
        raise PaymentRefused("bad_authorization", "mchid, nonce_str, timestamp, serial_no and "
                             "signature are required") from None  # fmt: skip
    if not _TIMESTAMP.fullmatch(fields["timestamp"]):
        raise PaymentRefused("bad_authorization", "the timestamp must be in seconds")
    return auth


def verify_request(
    header: str,
    *,
    method: str,
    path_query: str,
    body: bytes,
    keys: Mapping[str, rsa.RSAPublicKey],
    now: int,
) -> Authorization:
    """A merchant's signed request, checked (the sandbox's side): its merchant key by serial,
    its signature over the exact bytes, its timestamp within the window."""
    auth = parse_authorization(header)
    key = keys.get(auth.serial)
    if key is None:
        raise PaymentRefused("unknown_serial", f"no merchant key with serial {auth.serial!r}")
    if abs(now - auth.timestamp) > WINDOW_S:
        raise PaymentRefused("stale", f"timestamp {auth.timestamp} is not within 5 minutes")
    message = request_message(method, path_query, auth.timestamp, auth.nonce, body)
    if not _verified(key, auth.signature, message):
        raise PaymentRefused("bad_signature", "the request's signature does not verify")
    return auth


# -- answers and notifications (provider → merchant) ------------------------------------------
def notification_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def signed_headers(
    key: rsa.RSAPrivateKey, serial: str, body: bytes, *, timestamp: int, nonce: str
) -> dict[str, str]:
    """The `Wechatpay-*` headers of an answer or a notification (the sandbox's side)."""
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": _sign(key, notification_message(str(timestamp), nonce, body)),
        "Wechatpay-Signature-Type": SCHEMA,
    }


def verify_signed(
    headers: Mapping[str, str], body: bytes, keys: Mapping[str, rsa.RSAPublicKey], now: int
) -> None:
    """An answer or a notification from WeChat Pay, checked over its raw `body`: the key named
    by `Wechatpay-Serial` among `keys`, the signature, the timestamp within the window. Header
    names are matched without regard to case."""
    lower = {name.lower(): value for name, value in headers.items()}
    fields = [lower.get(f"wechatpay-{n}") for n in ("timestamp", "nonce", "signature", "serial")]
    timestamp, nonce, signature, serial = fields
    if timestamp is None or nonce is None or signature is None or serial is None:
        raise PaymentRefused("unsigned", "the Wechatpay-Timestamp, -Nonce, -Signature and "
                             "-Serial headers are required")  # fmt: skip
    kind = lower.get("wechatpay-signature-type", SCHEMA)
    if kind != SCHEMA:
        raise PaymentRefused("bad_signature", f"signature type {kind[:40]!r} is not {SCHEMA}")
    if signature.startswith(SIGNTEST):
        raise PaymentRefused("signtest", "a WECHATPAY/SIGNTEST/ probe never verifies")
    if _TIMESTAMP.fullmatch(timestamp) is None or _TOKEN.fullmatch(nonce) is None:
        raise PaymentRefused("bad_signature", "the timestamp must be seconds and the nonce a "
                             "token")  # fmt: skip
    if abs(now - int(timestamp)) > WINDOW_S:
        raise PaymentRefused("stale", f"timestamp {timestamp} is not within 5 minutes of now")
    key = keys.get(serial)
    if key is None:
        raise PaymentRefused("unknown_serial", f"no platform key with serial {serial[:64]!r}")
    if not _verified(key, signature, notification_message(timestamp, nonce, body)):
        raise PaymentRefused("bad_signature", "the signature does not verify over the body")


def json_body(body: bytes) -> dict[str, Any]:
    """A body from WeChat Pay as a JSON object (after its signature was checked)."""
    try:
        value = load_json(body, max_bytes=MAX_NOTICE_BYTES, allow_nul=False)
    except DecodeError as exc:
        raise PaymentRefused("malformed", f"the body is not JSON we accept ({exc})") from None
    if not isinstance(value, dict):
        raise PaymentRefused("malformed", "the body must be a JSON object")
    return value


# -- the encrypted resource ---------------------------------------------------------------------
def encrypt_resource(
    key: bytes, plaintext: bytes, *, nonce: str, associated_data: str, original_type: str
) -> dict[str, str]:
    """A notification's `resource` (the sandbox's side)."""
    sealed = AESGCM(key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(sealed).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def decrypt_resource(key: bytes, resource: object) -> dict[str, Any]:
    """The JSON object inside a notification's `resource`, decrypted with the APIv3 key."""
    if not isinstance(resource, dict):
        raise PaymentRefused("malformed", "the resource must be an object")
    algorithm, ciphertext = resource.get("algorithm"), resource.get("ciphertext")
    nonce, associated = resource.get("nonce"), resource.get("associated_data", "")
    if algorithm != "AEAD_AES_256_GCM":
        raise PaymentRefused("malformed", f"resource algorithm {str(algorithm)[:40]!r} is not "
                             "AEAD_AES_256_GCM")  # fmt: skip
    if not (isinstance(ciphertext, str) and isinstance(nonce, str) and isinstance(associated, str)):
        raise PaymentRefused("malformed", "ciphertext, nonce and associated_data are strings")
    if len(nonce.encode()) != 12:
        raise PaymentRefused("malformed", "the resource nonce must be 12 characters")
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        plaintext = AESGCM(key).decrypt(nonce.encode(), sealed, associated.encode())
    except (binascii.Error, InvalidTag, ValueError):
        raise PaymentRefused("undecryptable", "the resource does not decrypt with our APIv3 "
                             "key") from None  # fmt: skip
    return json_body(plaintext)


# -- JSAPI --------------------------------------------------------------------------------------
def jsapi_parameters(
    key: rsa.RSAPrivateKey, *, appid: str, prepay_id: str, timestamp: int, nonce: str
) -> dict[str, str]:
    """What the page hands `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`."""
    package = f"prepay_id={prepay_id}"
    message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
    return {
        "appId": appid,
        "timeStamp": str(timestamp),
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": _sign(key, message),
    }


def verify_jsapi(key: rsa.RSAPublicKey, parameters: Mapping[str, str]) -> bool:
    """Whether JSAPI parameters carry the merchant's signature (the sandbox's side)."""
    message = "".join(
        f"{parameters.get(name, '')}\n" for name in ("appId", "timeStamp", "nonceStr", "package")
    ).encode()
    return _verified(key, parameters.get("paySign", ""), message)
