"""Notices that reach merchants: low balance, arrears warnings, the cut-off, a recharge
credited, a refund paid, and power-off notices operators issue.

- `outbox`: the notices table's life: made once by dedupe key, routed, each delivery claimed by
  one sender, settled, retried with backoff (`DELIVERY`, the transition table);
- `planner`: which notices are due, as pure functions of rows; `sources` reads those rows;
- `power_off`: an operator's announcement of a cut (maintenance, a violation) for shops;
- `messages`: a notice's WeChat template fields and text message, from its facts;
- `channels` (outcomes, SMS senders), `wechat_oa` (template messages, the one token refresher);
- `service`: plan and send in rounds (`NoticeLoop`, started by `cloud.server`);
- `wechat_oa_standin`, `sms_standin`: the providers on loopback, for the tests and the demo.
"""
