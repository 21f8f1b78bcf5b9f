"""HTTPS on the API (`[api] tls_cert`/`tls_key`) and behind a TLS proxy (`[api] tls_proxy`):
the real server on a free port, a certificate made here, HSTS and `Secure` cookies over TLS
only, and a key that cannot be opened stopping the start before anything runs."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud.config import ApiSettings, ApiTls, CloudConfig, load_config
from cloud.db.engine import make_engine, session_factory
from cloud.people import auth
from cloud.server import RunningCloud, StartFailed, serve_in_thread
from cloud.services.pki import create_ca, issue_server_cert
from ledger import key_files
from tests.cloud.api.conftest import PASSWORD
from tests.cloud.fake_edge import T0

pytestmark = pytest.mark.slow  # the whole cloud, started and stopped

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ApiTls]:
    """A CA and the API's certificate for 127.0.0.1 from it: (the CA's certificate, the files)."""
    ca = create_ca(tmp_path / "test-ca", "Test CA")
    files = issue_server_cert(ca, tmp_path / "api-tls", "api", dns_names=["localhost"],
                              ip_addresses=["127.0.0.1"])  # fmt: skip
    return ca.cert, ApiTls(cert=files.cert, key=files.key)


def config_with(tmp_path: Path, api: ApiSettings) -> CloudConfig:
    return dataclasses.replace(load_config(None, tmp_path / "data"), api=api)


@pytest.fixture
def tls_cloud(tmp_path: Path, certificate: tuple[Path, ApiTls]) -> Iterator[RunningCloud]:
    config = config_with(tmp_path, ApiSettings("127.0.0.1", 0, tls=certificate[1]))
    with serve_in_thread(config) as cloud:
        engine = make_engine(config.database_url)
        with session_factory(engine).begin() as session:
            auth.create_user(session, "admin", auth.Role.ADMIN, PASSWORD, now=T0)
        engine.dispose()
        yield cloud


def _log_in(client: httpx.Client) -> httpx.Response:
    form = client.get("/console/login")
    assert form.status_code == 200
    csrf = client.cookies["vb_login"]
    return client.post("/console/login", data={"csrf": csrf, "user": "admin",
                                               "password": PASSWORD})  # fmt: skip


def _cookie_lines(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_the_api_serves_https_with_hsts_and_secure_cookies(
    tls_cloud: RunningCloud, certificate: tuple[Path, ApiTls], tmp_path: Path
) -> None:
    assert tls_cloud.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    with httpx.Client(base_url=tls_cloud.url, verify=trust, timeout=15) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.headers["strict-transport-security"] == HSTS
        assert client.get("/no-such-page").headers["strict-transport-security"] == HSTS
        form = client.get("/console/login")
        assert any("vb_login=" in c and "secure" in c.lower() for c in _cookie_lines(form))
        logged_in = _log_in(client)
        assert logged_in.status_code == 303, logged_in.text
        assert logged_in.headers["strict-transport-security"] == HSTS
        session = [c for c in _cookie_lines(logged_in) if c.startswith("vb_session=")]
        assert session and "; secure" in session[0].lower()
        # the Secure cookie goes back over TLS: the console answers as the logged-in user
        assert client.get("/console/", follow_redirects=False).status_code in (200, 303)
        assert "vb_session" in client.cookies
    # plain HTTP to the TLS port gets no answer; a client trusting another CA refuses the cloud
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_cloud.url.replace("https://", "http://") + "/health", timeout=15)
    other = create_ca(tmp_path / "other-ca", "Other CA")
    with pytest.raises(httpx.ConnectError):
        httpx.get(tls_cloud.url + "/health", verify=ssl.create_default_context(
            cafile=str(other.cert)), timeout=15)  # fmt: skip


def test_behind_a_trusted_tls_proxy_its_forwarded_proto_counts(tmp_path: Path) -> None:
    api = ApiSettings("127.0.0.1", 0, trusted_proxies=("127.0.0.1",), tls_proxy=True)
    with serve_in_thread(config_with(tmp_path, api)) as cloud:
        proxied = httpx.get(cloud.url + "/console/login", headers={"X-Forwarded-Proto": "https"},
                            timeout=15)  # fmt: skip
        assert proxied.headers["strict-transport-security"] == HSTS
        assert "secure" in proxied.headers["set-cookie"].lower()
        direct = httpx.get(cloud.url + "/console/login", timeout=15)  # plain HTTP, no header
        assert "strict-transport-security" not in direct.headers
        assert "secure" not in direct.headers["set-cookie"].lower()
        # the proxy's own hop is the right-most one: a client's "https" in front is not it
        spoofed = httpx.get(cloud.url + "/health",
                            headers={"X-Forwarded-Proto": "https, http"}, timeout=15)  # fmt: skip
        assert "strict-transport-security" not in spoofed.headers


def test_forwarded_proto_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    api = ApiSettings("127.0.0.1", 0, trusted_proxies=("10.0.0.0/8",), tls_proxy=True)
    with serve_in_thread(config_with(tmp_path, api)) as cloud:
        claimed = httpx.get(cloud.url + "/console/login", headers={"X-Forwarded-Proto": "https"},
                            timeout=15)  # fmt: skip
        assert claimed.status_code == 200
        assert "strict-transport-security" not in claimed.headers
        assert "secure" not in claimed.headers["set-cookie"].lower()


def test_an_encrypted_tls_key_opens_with_the_passphrase(
    tmp_path: Path, certificate: tuple[Path, ApiTls], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, "correct horse battery staple")
    assert key_files.encrypt_in_place(certificate[1].key, b"correct horse battery staple")
    config = config_with(tmp_path, ApiSettings("127.0.0.1", 0, tls=certificate[1]))
    with serve_in_thread(config) as cloud:
        trust = ssl.create_default_context(cafile=str(certificate[0]))
        answer = httpx.get(cloud.url + "/health", verify=trust, timeout=15)
        assert answer.headers["strict-transport-security"] == HSTS


@pytest.mark.parametrize("passphrase", [None, "wrong passphrase"])
def test_a_tls_key_that_cannot_be_opened_starts_nothing(
    tmp_path: Path,
    certificate: tuple[Path, ApiTls],
    monkeypatch: pytest.MonkeyPatch,
    passphrase: str | None,
) -> None:
    assert key_files.encrypt_in_place(certificate[1].key, b"the right one")
    monkeypatch.delenv(key_files.PASSPHRASE_ENV, raising=False)
    monkeypatch.delenv(key_files.PASSPHRASE_FILE_ENV, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    if passphrase is not None:
        monkeypatch.setenv(key_files.PASSPHRASE_ENV, passphrase)
    config = config_with(tmp_path, ApiSettings("127.0.0.1", 0, tls=certificate[1]))
    with pytest.raises(StartFailed) as refused:
        serve_in_thread(config)
    expected = "no key passphrase is configured" if passphrase is None else "passphrase is wrong"
    assert expected in str(refused.value)
    assert key_files.PASSPHRASE_ENV in str(refused.value) or passphrase is not None
    assert not config.data_dir.exists()  # nothing was made: no database, key or broker files
