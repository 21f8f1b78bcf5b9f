"""The shipped reverse-proxy config (docs/deploy/nginx-voltbook.conf) parses: `nginx -t` on it,
with its certificate paths pointed at a certificate made here. Skipped without nginx (failed
under REQUIRE_REAL_SERVICES=1; `make` installs nginx-light as root)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cloud.services.pki import create_ca, issue_server_cert
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


def test_the_shipped_nginx_config_parses(tmp_path: Path) -> None:
    nginx = _nginx()
    ca = create_ca(tmp_path / "ca")
    tls = issue_server_cert(ca, tmp_path / "tls", "api", dns_names=["vb.example.com"])
    text = SHIPPED.read_text()
    assert "/etc/voltbook/tls/api.crt" in text and "X-Forwarded-Proto $scheme" in text
    site = tmp_path / "voltbook.conf"
    site.write_text(text.replace("/etc/voltbook/tls/api.crt", str(tls.cert))
                        .replace("/etc/voltbook/tls/api.key", str(tls.key)))  # fmt: skip
    temp = tmp_path / "temp"
    temp.mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n"
        f"  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n"
        f"  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {site};\n}}\n"
    )
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
