"""The box's status page on its LAN: `voltbook-edge status --serve`, off by default.

Only when site.toml has `[status] listen = "HOST:PORT"`. Standard library `http.server`,
read-only and WITHOUT a login: anyone who reaches the port sees the site's meters, relays and
alarms (no balances, no names beyond shop ids), so listen on the installers' LAN only. Every
request opens its own read-only snapshot of the store (`Store.open_readonly`: no writer lock)
and closes it, so the runtime is never held up:

    GET /             the status as a page, Simplified Chinese (`?lang=en`: English)
    GET /status.json  the status document of `voltbook-edge status --json`

Any other path is 404, any other method 501 (`http.server`'s answer); nothing is ever written.
"""

from __future__ import annotations

import html
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from edge.runtime.boot import node_public_key
from edge.site.model import Site
from edge.status import site_status
from edge.store import Store, StoreError

log = logging.getLogger(__name__)

LABELS: Final = {
    "zh": {"title": "集中器状态", "clock": "时钟", "sync": "同步", "bus": "总线", "meter": "表号",
           "last": "最近读取", "register": "表底", "success": "读取成功率", "relay": "继电器",
           "errors": "错误", "alarms": "未消除告警", "recent": "近期告警", "held": "时钟存疑",
           "ok": "正常", "outbox": "待上传", "acked": "已确认", "down": "断开"},
    "en": {"title": "Concentrator status", "clock": "Clock", "sync": "Sync", "bus": "Bus",
           "meter": "Meter", "last": "Last read", "register": "Register",
           "success": "Read success", "relay": "Relay", "errors": "Errors",
           "alarms": "Open alarms", "recent": "Recent alarms", "held": "clock held",
           "ok": "ok", "outbox": "outbox", "acked": "acknowledged", "down": "down"},
}  # fmt: skip


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def page(status: dict[str, Any], lang: str) -> str:
    """The status as one self-contained HTML page (every value escaped)."""
    w = LABELS[lang]
    e = html.escape
    clock, sync = status["clock"], status["sync"]
    parts = [
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{e(w['title'])}</title><style>body{{font-family:sans-serif;margin:1em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".bad{color:#b00}</style></head><body>",
        f"<h1>{e(w['title'])}: {e(status['node'])}</h1><p>{e(status['site'])}</p>",
        f"<p>{e(w['clock'])}: {e(str(clock['last_known']))} "
        f"({e(w['held'] if clock['held'] else w['ok'])})</p>",
        f"<p>{e(w['sync'])}: seq {sync['chain_seq']}, {e(w['acked'])} "
        f"{sync['acknowledged_seq']}, {e(w['outbox'])} {sync['outbox']}</p>",
    ]
    for bus in status["buses"]:
        state = f" <span class=bad>{e(w['down'])}: {e(bus['down'])}</span>" if bus["down"] else ""
        parts.append(
            f"<h2>{e(w['bus'])} {e(bus['bus'])} ({e(bus['protocol'])}){state} — "
            f"{e(w['success'])} {_rate(bus['read_success'])}</h2><table><tr>"
            + "".join(
                f"<th>{e(w[k])}</th>"
                for k in ("meter", "last", "register", "success", "relay", "errors")
            )
            + "</tr>"
        )
        for m in bus["meters"]:
            error = f"{m['read_failures']}× {m['last_error']}" if m["read_failures"] else ""
            relay = str(m["relay_seen"] or "-")
            if m["relay_seen"] is not None and m["relay_seen"] != m["relay_wanted"]:
                relay += f" → {m['relay_wanted']}"
            cells = (m["address"], m["last_read"] or "-", m["register"], _rate(m["read_success"]),
                     relay, error)  # fmt: skip
            parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    for key, rows in (("alarms", status["open_alarms"]), ("recent", status["recent_alarms"])):
        parts.append(f"<h2>{e(w[key])} ({len(rows)})</h2><ul>")
        parts += [
            "<li>" + e(" ".join(str(v) for v in row.values() if v not in (None, ""))) + "</li>"
            for row in rows
        ]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def handler_for(site: Site) -> type[BaseHTTPRequestHandler]:
    key = node_public_key(site)  # once: an encrypted key is slow to open

    class StatusHandler(BaseHTTPRequestHandler):
        server_version = "voltbook-status"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path not in ("/", "/status.json"):
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
                return
            try:
                with Store.open_readonly(site.settings.store_path, public_key=key) as store:
                    status = site_status(site, store)
            except StoreError as exc:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", f"{exc}\n".encode())
                return
            if url.path == "/status.json":
                body = json.dumps(status, ensure_ascii=False).encode()
                self._send(HTTPStatus.OK, "application/json", body)
                return
            lang = "en" if parse_qs(url.query).get("lang") == ["en"] else "zh"
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", page(status, lang).encode())

        def _send(self, code: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("status page: " + format, *args)

    return StatusHandler


def make_server(site: Site) -> ThreadingHTTPServer:
    """The page's server, bound to `[status] listen` (the caller checked it is set)."""
    assert site.settings.status_listen is not None
    host, port = site.settings.status_listen
    return ThreadingHTTPServer((host, port), handler_for(site))
