"""Merchants paying on their phones: WeChat Pay (API v3) and Alipay (open API, RSA2).

`wechat_scheme` and `alipay_scheme` are the providers' signature and encryption schemes as
pure functions over bytes (both directions: the cloud's and, for the sandbox, the provider's);
`money` turns Alipay's yuan strings into fen. The rest of the package is the payment order's
life (docs/architecture.md §7.*): orders, notifications, queries, refunds, reconciliation.
"""
