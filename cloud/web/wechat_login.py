"""The seam for logging in with WeChat (issue 14 item 7): not built yet; the phone page logs in
with a password (`cloud.web.phone`). The flow, for whoever builds it on the Official Account
stand-in of `cloud/notices/`:

1. `GET /m/wechat/login` (a link shown only inside WeChat's browser): remember a random `state`
   in a short-lived HttpOnly cookie and redirect to the OA's
   `/connect/oauth2/authorize?appid=…&redirect_uri=<cloud>/m/wechat/back&response_type=code
   &scope=snsapi_base&state=…#wechat_redirect`.
2. `GET /m/wechat/back?code=…&state=…`: refuse a `state` that is not the cookie's; exchange the
   code at `/sns/oauth2/access_token?appid=…&secret=…&code=…&grant_type=authorization_code`
   (server to server, a timeout, the answer's `errcode` checked) for the `openid`.
3. The openid is bound on `registry_merchants.wechat_openid`:
   - known: the merchant's user logs in (a token issued as `cloud.people.auth.login` issues
     one, and the operator log records a `login` with method `wechat`), cookie as for a
     password (`cloud.web.sessions.start`);
   - unknown: show the password form once; a successful password login then binds the openid
     to that user's merchant (logged), so the next visit needs no password.
4. The same openid is what a JSAPI payment needs (`cloud.web.topup.channel_for`).

Nothing here is wired into a route until then: `ENABLED` stays False.
"""

from __future__ import annotations

ENABLED = False
AUTHORIZE_PATH = "/connect/oauth2/authorize"
TOKEN_PATH = "/sns/oauth2/access_token"
SCOPE = "snsapi_base"  # the openid only, without asking the merchant to confirm
