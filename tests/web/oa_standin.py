"""A stand-in for the WeChat Official Account's web OAuth on loopback, speaking the real
endpoints: `/connect/oauth2/authorize` sends the browser back to `redirect_uri` with a fresh
`code` and the `state` it was given (as WeChat does once the user is known), and
`/sns/oauth2/access_token` exchanges a code it issued, once, for the openid, checking the
appid and secret; anything else is WeChat's `errcode` answer."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

APPID, SECRET = "wx-test-appid", "test-secret-0123456789"


class OfficialAccount:
    def __init__(self, openid: str) -> None:
        self.openid = openid  # the WeChat user the next authorize stands for
        self.codes: dict[str, str] = {}
        self.exchanges = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/connect/oauth2/authorize":
                    stand_in.authorize(self, query)
                elif url.path == "/sns/oauth2/access_token":
                    stand_in.access_token(self, query)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("appid") != APPID or query.get("scope") != "snsapi_base":
            handler.send_error(400)
            return
        code = secrets.token_urlsafe(16)
        self.codes[code] = self.openid
        back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        handler.send_response(302)
        handler.send_header("Location", back)
        handler.end_headers()

    def access_token(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        self.exchanges += 1
        openid = self.codes.pop(query.get("code", ""), None)
        if query.get("appid") != APPID or query.get("secret") != SECRET:
            answer: dict[str, object] = {"errcode": 40125, "errmsg": "invalid appsecret"}
        elif openid is None or query.get("grant_type") != "authorization_code":
            answer = {"errcode": 40029, "errmsg": "invalid code"}
        else:
            answer = {"access_token": secrets.token_hex(16), "expires_in": 7200,
                      "refresh_token": secrets.token_hex(16), "openid": openid,
                      "scope": "snsapi_base"}  # fmt: skip
        body = json.dumps(answer).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self) -> OfficialAccount:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
