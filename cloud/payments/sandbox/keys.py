"""The sandbox's keys: both sides of both providers, made at start (RSA 2048), and the files
and `[payments]` TOML snippet that point a cloud at the sandbox.

The real providers hold their own keys and the merchant its own; here the sandbox makes the
merchant's too and hands them over in its directory, the way a merchant downloads them from
the providers' consoles. WeChat Pay's platform keys are a list so a rotation (two live) can be
played: `platform[0]` signs, every one is written into the snippet.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SNIPPET = "payments.toml"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _serial() -> str:
    return secrets.token_hex(20).upper()


def _apiv3() -> bytes:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32)).encode()


@dataclass(slots=True)
class SandboxKeys:
    """Who the sandbox's merchant is at each provider, and every key involved."""

    mchid: str = "1900000109"
    appid: str = "wxd678efh567hg6787"
    merchant_serial: str = field(default_factory=_serial)
    merchant: rsa.RSAPrivateKey = field(default_factory=new_key)  # WeChat: the merchant's
    platform: list[tuple[str, rsa.RSAPrivateKey]] = field(
        default_factory=lambda: [(f"PUB_KEY_ID_{secrets.randbelow(10**28):028d}", new_key())]
    )  # WeChat Pay's; the first signs
    apiv3_key: bytes = field(default_factory=_apiv3)
    app_id: str = "2021000000000001"
    seller_id: str = "2088000000000001"
    app: rsa.RSAPrivateKey = field(default_factory=new_key)  # Alipay: the app's
    alipay: rsa.RSAPrivateKey = field(default_factory=new_key)  # Alipay's own

    @property
    def signing_platform(self) -> tuple[str, rsa.RSAPrivateKey]:
        return self.platform[0]

    def rotate(self) -> str:
        """A new WeChat Pay platform key signs from now on; the old stays live. Its serial."""
        serial = f"PUB_KEY_ID_{secrets.randbelow(10**28):028d}"
        self.platform.insert(0, (serial, new_key()))
        return serial

    def write(self, directory: Path, *, api_base: str, notify_base: str) -> Path:
        """The merchant's side of the keys in `directory`, and the `[payments]` snippet that
        points a cloud at the sandbox at `api_base`, notified at `notify_base`. The snippet."""
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "wechat_merchant_key.pem": private_pem(self.merchant),
            "wechat_apiv3.key": self.apiv3_key,
            "alipay_app_key.pem": private_pem(self.app),
            "alipay_public.pem": public_pem(self.alipay),
        }
        for serial, key in self.platform:
            files[f"wechat_platform_{serial}.pem"] = public_pem(key)
        for name, content in files.items():
            path = directory / name
            path.write_bytes(content)
            if name.endswith(("key.pem", ".key")):
                path.chmod(0o600)
        snippet = directory / SNIPPET
        snippet.write_text(self.snippet(directory, api_base=api_base, notify_base=notify_base))
        return snippet

    def snippet(self, directory: Path, *, api_base: str, notify_base: str) -> str:
        where = directory.resolve()
        platform = "\n".join(
            f'"{serial}" = "{where / f"wechat_platform_{serial}.pem"}"'
            for serial, _ in self.platform
        )
        return f"""\
# Written by `voltbook-cloud payments sandbox`: append to cloud.toml to pay in the sandbox.
[payments]
notify_base = "{notify_base}"
order_ttl_s = 1800

[payments.wechat]
api_base = "{api_base}"
mchid = "{self.mchid}"
appid = "{self.appid}"
apiv3_key_file = "{where / "wechat_apiv3.key"}"
merchant_key = "{where / "wechat_merchant_key.pem"}"
merchant_serial = "{self.merchant_serial}"

[payments.wechat.platform_keys]
{platform}

[payments.alipay]
gateway = "{api_base}/gateway.do"
app_id = "{self.app_id}"
seller_id = "{self.seller_id}"
app_private_key = "{where / "alipay_app_key.pem"}"
alipay_public_key = "{where / "alipay_public.pem"}"
"""
