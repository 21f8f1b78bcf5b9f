"""A provider sandbox: WeChat Pay (API v3) and Alipay (open API) played on loopback with keys
of its own, so the cloud, the tests and `make demo` pay without the real providers.

    keys.py       the sandbox's keys (made at start) and the `[payments]` snippet for the cloud
    state.py      its orders and knobs (duplicates, delays, dropped notices, GBK, time scale)
    notifier.py   notifications sent with the providers' retry schedules until answered
    wechat.py     /v3/pay/transactions/… (orders, query, close) and WeChat's notifications
    alipay.py     /gateway.do (precreate, wap.pay, query, close) and Alipay's notifications
    pages.py      /pay/{out_trade_no}: the page where a person pays or cancels
    app.py        `create_sandbox` (the FastAPI app and its `Sandbox`), `serve_in_thread`

Every signature and every encryption is `cloud.payments.wechat_scheme` / `alipay_scheme`, the
same functions the cloud uses, in the provider's direction.
"""
