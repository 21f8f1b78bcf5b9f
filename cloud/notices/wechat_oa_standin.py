"""A WeChat Official Account on loopback, speaking the real API, for the tests and the demo.

    with OaStandin(appid="wx…", secret="…") as oa:     # any free port on 127.0.0.1
        oa.url                                         # point [notices.wechat_oa] api_base here

    GET  /cgi-bin/token?grant_type=client_credential&appid&secret
         → {"access_token", "expires_in": 7200}; a new token leaves the previous one valid for
           five more minutes, as WeChat does
    POST /cgi-bin/message/template/send?access_token   {"touser", "template_id", "url", "data"}
         → {"errcode": 0, "errmsg": "ok", "msgid"} and the message is kept (`messages`)
    GET  /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope=snsapi_base&state
         → 302 to redirect_uri?code=…&state=… for the openid in the "browser" (`browser_openid`)
    GET  /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code
         → {"access_token", "expires_in", "refresh_token", "openid", "scope"}; a code works once,
           within five minutes

Errors as WeChat spells them: 40001 unknown token, 42001 expired token, 40013 wrong appid,
40125 wrong secret, 40029 bad code, 40037 unknown template, 47003 a value too long for its
type (`cloud.notices.messages.LIMITS`), 43101 an openid that does not follow the account
(`unsubscribed`), 45009 when told to (`rate_limit_next`). `expire_tokens` and
`invalidate_tokens` spoil every token issued so far; `fail_next` answers HTTP 503.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

from cloud.notices.messages import LIMITS

TOKEN_LIFE = 7200
OLD_TOKEN_GRACE = 300.0  # a superseded token still works this long
CODE_LIFE = 300.0
MAX_BODY = 64 * 1024


class LoopbackServer(ThreadingHTTPServer):
    """A thread per request, and a backlog for bursts of concurrent senders (the default 5
    refuses connections a real provider would take)."""

    daemon_threads = True
    request_queue_size = 128


@dataclass
class Token:
    expires: float
    spoiled: int = 0  # 0 fine, else the errcode it now gets (40001, 42001)


@dataclass
class Message:
    touser: str
    template_id: str
    url: str | None
    data: dict[str, Any]
    msgid: int


@dataclass
class OaStandin:
    appid: str = "wxstandin0000001"
    secret: str = "standin-secret"
    templates: set[str] | None = None  # None: any template id is known
    browser_openid: str = "o-standin-browser"  # who "opens" the OAuth page
    clock: Callable[[], float] = time.monotonic
    unsubscribed: set[str] = field(default_factory=set)
    messages: list[Message] = field(default_factory=list)
    token_requests: int = 0
    _tokens: dict[str, Token] = field(default_factory=dict)
    _codes: dict[str, tuple[str, float]] = field(default_factory=dict)
    _rate_limited: int = 0
    _failing: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- the test's handles -----------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def rate_limit_next(self, count: int) -> None:
        with self._lock:
            self._rate_limited = count

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failing = count

    def expire_tokens(self) -> None:
        self._spoil(42001)

    def invalidate_tokens(self) -> None:
        self._spoil(40001)

    def _spoil(self, errcode: int) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.spoiled = errcode

    def start(self) -> Self:
        self._server = LoopbackServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="wechat-oa-standin",
            daemon=True,
        )
        self._thread.start()
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

    # -- the API -----------------------------------------------------------------------------
    def issue_token(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("grant_type") != "client_credential":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        if query.get("appid") != self.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if query.get("secret") != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        with self._lock:
            self.token_requests += 1
            now = self.clock()
            for old in self._tokens.values():
                old.expires = min(old.expires, now + OLD_TOKEN_GRACE)
            token = secrets.token_urlsafe(32)
            self._tokens[token] = Token(now + TOKEN_LIFE)
        return {"access_token": token, "expires_in": TOKEN_LIFE}

    def _token_error(self, token: str | None) -> dict[str, Any] | None:
        found = self._tokens.get(token or "")
        if found is None or found.spoiled == 40001:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if found.spoiled == 42001 or self.clock() >= found.expires:
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    def send_template(self, query: dict[str, str], body: Any) -> dict[str, Any]:
        with self._lock:
            refused = self._token_error(query.get("access_token"))
            if refused is not None:
                return refused
            if not isinstance(body, dict) or not isinstance(body.get("touser"), str):
                return {"errcode": 47001, "errmsg": "data format error"}
            template_id, data = body.get("template_id"), body.get("data")
            if not isinstance(template_id, str) or (
                self.templates is not None and template_id not in self.templates
            ):
                return {"errcode": 40037, "errmsg": "invalid template_id"}
            problem = _data_problem(data)
            if problem or not isinstance(data, dict):
                return {"errcode": 47003, "errmsg": f"argument invalid! {problem}"}
            if body["touser"] in self.unsubscribed:
                return {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
            if self._rate_limited > 0:
                self._rate_limited -= 1
                return {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
            msgid = 1_000_000 + len(self.messages)
            url = body.get("url") if isinstance(body.get("url"), str) else None
            self.messages.append(Message(body["touser"], template_id, url, data, msgid))
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        redirect = query.get("redirect_uri", "")
        if query.get("appid") != self.appid:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        if query.get("response_type") != "code" or query.get("scope") not in (
            "snsapi_base", "snsapi_userinfo"
        ) or urlsplit(redirect).scheme not in ("http", "https"):  # fmt: skip
            return 200, {"errcode": 10003, "errmsg": "redirect_uri, response_type or scope"}
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = (self.browser_openid, self.clock() + CODE_LIFE)
        joiner = "&" if urlsplit(redirect).query else "?"
        params = {"code": code, "state": query.get("state", "")}
        return 302, redirect + joiner + urlencode(params)

    def oauth_token(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("appid") != self.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if query.get("secret") != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        if query.get("grant_type") != "authorization_code":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        with self._lock:
            found = self._codes.pop(query.get("code", ""), None)  # a code works once
        if found is None or self.clock() >= found[1]:
            return {"errcode": 40029, "errmsg": "invalid code"}
        return {"access_token": secrets.token_urlsafe(32), "expires_in": TOKEN_LIFE,
                "refresh_token": secrets.token_urlsafe(32), "openid": found[0],
                "scope": "snsapi_base"}  # fmt: skip


def _data_problem(data: Any) -> str:
    """Why a template's `data` is refused ("" if it is not)."""
    if not isinstance(data, dict):
        return "data must be an object"
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, str):
            return f"data.{key}.value must be a string"
        kind = key.rstrip("0123456789")
        if kind in LIMITS and len(value) > LIMITS[kind]:
            return f"data.{key}.value longer than {LIMITS[kind]}"
    return ""


def _handler(oa: OaStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the state
            pass

        def _query(self) -> dict[str, str]:
            return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

        def _answer(self, status: int, body: dict[str, Any] | str) -> None:
            if status == HTTPStatus.FOUND and isinstance(body, str):
                self.send_response(status)
                self.send_header("Location", body)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            raw = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _failing(self) -> bool:
            with oa._lock:
                if oa._failing <= 0:
                    return False
                oa._failing -= 1
            self._answer(503, {"errcode": -1, "errmsg": "system error"})
            return True

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/cgi-bin/token":
                if not self._failing():
                    self._answer(200, oa.issue_token(self._query()))
            elif path == "/connect/oauth2/authorize":
                self._answer(*oa.authorize(self._query()))
            elif path == "/sns/oauth2/access_token":
                self._answer(200, oa.oauth_token(self._query()))
            else:
                self._answer(404, {"errcode": 404, "errmsg": "not found"})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/cgi-bin/message/template/send":
                self._answer(404, {"errcode": 404, "errmsg": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY:
                self._answer(413, {"errcode": 47001, "errmsg": "body too large"})
                return
            raw = self.rfile.read(length)
            if self._failing():
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            self._answer(200, oa.send_template(self._query(), body))

    return Handler


def main() -> None:
    """`python -m cloud.notices.wechat_oa_standin`: serve until Ctrl-C, printing the URL."""
    with OaStandin() as oa:
        print(f"WeChat OA stand-in at {oa.url} (appid {oa.appid}, secret {oa.secret})")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
