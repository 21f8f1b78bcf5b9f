"""`[api]`'s TLS keys in cloud.toml: the certificate and key go together and must exist, a TLS
proxy needs the proxy's address, and the API's URL says https when the cloud serves TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import ConfigError, load_config


def _config(tmp_path: Path, api: str) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f"[api]\nport = 8443\n{api}")
    return path


def test_a_certificate_and_key_serve_https(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    for name in ("api.crt", "api.key"):
        (tmp_path / "tls" / name).write_text("PEM")
    config = load_config(_config(tmp_path, 'tls_cert = "tls/api.crt"\ntls_key = "tls/api.key"\n'))
    assert config.api.tls is not None
    assert config.api.tls.cert == tmp_path / "tls" / "api.crt"
    assert config.api.url == "https://127.0.0.1:8443"
    assert not config.api.tls_proxy
    plain = load_config(_config(tmp_path, ""))
    assert plain.api.tls is None and plain.api.url == "http://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("api", "problem"),
    [
        ('tls_cert = "api.crt"\n', "tls_cert and tls_key go together"),
        ('tls_key = "api.key"\n', "tls_cert and tls_key go together"),
        ('tls_cert = "missing.crt"\ntls_key = "missing.key"\n', "does not exist"),
        ("tls_cert = 1\ntls_key = 2\n", "the path of a PEM file"),
        ("tls_proxy = true\n", "needs [api] trusted_proxies"),
        ('tls_proxy = "yes"\ntrusted_proxies = ["127.0.0.1"]\n', "true or false"),
    ],
)
def test_unusable_tls_settings_are_refused_naming_the_key(
    tmp_path: Path, api: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(_config(tmp_path, api))
    assert problem in str(refused.value)


def test_a_trusted_tls_proxy_is_read(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'trusted_proxies = ["127.0.0.1"]\ntls_proxy = true\n'))
    assert config.api.tls_proxy and config.api.trusted_proxies == ("127.0.0.1",)
    assert config.api.url.startswith("http://")  # the proxy speaks TLS, the cloud does not
