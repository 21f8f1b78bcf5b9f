"""The shipped reverse-proxy config (docs/deploy/nginx-voltbook.conf) parses: `nginx -t` on it,
with its certificate paths pointed at a certificate made here. Skipped without nginx (failed
under REQUIRE_REAL_SERVICES=1; `make` installs nginx-light as root)."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cloud.config import ApiSettings, load_config
from cloud.server import serve_in_thread
from cloud.services.pki import create_ca, issue_server_cert
from tests.cloud.test_api_tls import HSTS
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "docs" / "deploy" / "nginx-voltbook.conf"


def _nginx() -> str:
    found = shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"),) if p.is_file()), None
    )
    if found is None:
        service_missing("nginx", "not on PATH or /usr/sbin (apt-get install nginx-light)")
    assert found is not None
    return found


def _main_conf(tmp_path: Path, site: Path) -> Path:
    """An nginx.conf of its own (temp files, pid and log in `tmp_path`) including `site`."""
    temp = tmp_path / "temp"
    temp.mkdir(exist_ok=True)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n"
        f"  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n"
        f"  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {site};\n}}\n"
    )
    return main


def test_the_shipped_nginx_config_parses(tmp_path: Path) -> None:
    nginx = _nginx()
    ca = create_ca(tmp_path / "ca")
    tls = issue_server_cert(ca, tmp_path / "tls", "api", dns_names=["vb.example.com"])
    text = SHIPPED.read_text()
    assert "/etc/voltbook/tls/api.crt" in text and "X-Forwarded-Proto $scheme" in text
    site = tmp_path / "voltbook.conf"
    site.write_text(text.replace("/etc/voltbook/tls/api.crt", str(tls.cert))
                        .replace("/etc/voltbook/tls/api.key", str(tls.key)))  # fmt: skip
    main = _main_conf(tmp_path, site)
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(main)],
                             capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(main.read_text().replace(str(site), str(tmp_path / "bad.conf")))
    (tmp_path / "bad.conf").write_text(text.replace("proxy_pass", "proxy_passs"))
    refused = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(broken)],
                             capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert refused.returncode != 0  # the check can fail: a misspelt directive is caught


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_through_the_shipped_nginx_the_cloud_answers_with_hsts_and_secure_cookies(
    tmp_path: Path,
) -> None:
    """The shipped file, run: nginx on free ports in front of the real cloud configured as the
    file's comment says; HTTPS answers carry HSTS and Secure cookies, plain HTTP redirects."""
    nginx = _nginx()
    ca = create_ca(tmp_path / "ca")
    tls = issue_server_cert(ca, tmp_path / "tls", "api", dns_names=["vb.example.com"],
                            ip_addresses=["127.0.0.1"])  # fmt: skip
    api = ApiSettings("127.0.0.1", 0, trusted_proxies=("127.0.0.1",), tls_proxy=True)
    config = dataclasses.replace(load_config(None, tmp_path / "data"), api=api)
    https_port, http_port = _free_port(), _free_port()
    with serve_in_thread(config) as cloud:
        site = tmp_path / "voltbook.conf"
        site.write_text(
            SHIPPED.read_text()
            .replace("/etc/voltbook/tls/api.crt", str(tls.cert))
            .replace("/etc/voltbook/tls/api.key", str(tls.key))
            .replace("server 127.0.0.1:8080;", f"server {cloud.url.removeprefix('http://')};")
            .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
            .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
            .replace("listen [::]:443 ssl http2;", "")
            .replace("listen [::]:80;", "")
        )
        main = _main_conf(tmp_path, site)
        proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(main), "-g",
                                  "daemon off; master_process off;"],
                                 stderr=subprocess.PIPE)  # fmt: skip
        try:
            trust = ssl.create_default_context(cafile=str(ca.cert))
            base = f"https://127.0.0.1:{https_port}"
            answer = _first_answer(lambda: httpx.get(base + "/console/login", verify=trust,
                                                     timeout=15))  # fmt: skip
            assert answer.status_code == 200
            assert answer.headers["strict-transport-security"] == HSTS
            assert "secure" in answer.headers["set-cookie"].lower()
            plain = httpx.get(f"http://127.0.0.1:{http_port}/console/login", timeout=15)
            assert plain.status_code == 301
            assert plain.headers["location"].startswith("https://")
            # the cloud itself, reached directly over plain HTTP, sends no HSTS
            direct = httpx.get(cloud.url + "/console/login", timeout=15)
            assert "strict-transport-security" not in direct.headers
        finally:
            proxy.terminate()
            proxy.wait(10)


def _first_answer(get: Callable[[], httpx.Response]) -> httpx.Response:
    """nginx listens a moment after it starts: try for a few seconds."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return get()
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
