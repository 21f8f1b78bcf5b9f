"""An SMS gateway on loopback for the tests and the demo: takes `POST /sms {"phone", "text"}`
as `cloud.notices.channels.HttpSmsSender` sends it, keeps each message (`messages`) and answers
`{"id": …}`; `fail_next(n)` answers the next n with HTTP 503, `refuse` lists phone numbers it
answers 400 for (an invalid number)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from cloud.notices.wechat_oa_standin import LoopbackServer

MAX_BODY = 16 * 1024


@dataclass
class SmsStandin:
    messages: list[tuple[str, str]] = field(default_factory=list)  # (phone, text)
    refuse: set[str] = field(default_factory=set)
    _failing: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/sms"

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failing = count

    def take(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body.get(k) for k in ("phone", "text")
        ):
            return 400, {"error": "phone and text, both strings"}
        with self._lock:
            if self._failing > 0:
                self._failing -= 1
                return 503, {"error": "gateway busy"}
            if body["phone"] in self.refuse:
                return 400, {"error": f"invalid number {body['phone']}"}
            self.messages.append((body["phone"], body["text"]))
            return 200, {"id": f"sms-{len(self.messages)}"}

    def start(self) -> Self:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body: Any = None
                if self.path == "/sms" and 0 <= length <= MAX_BODY:
                    try:
                        body = json.loads(self.rfile.read(length))
                    except ValueError:
                        body = None
                status, answer = standin.take(body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = LoopbackServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sms-standin",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
