"""What operators and finance do to accounts (docs/architecture.md §7, §10): each operation
sends the concentrator that owns the account a signed command (a recharge or a correction first
books a pending transfer in the cloud's chain) and is settled as that concentrator's entries or
its refusal arrive.

`recharges` (money entering: desk, card, mobile payments), `relays` (remote trip/close orders),
`corrections` (compensating a mistake), `refunds` (the prepaid balance paid back, with a grace
allowance), `meter_swaps` (a meter's final and initial registers) with `handheld` (parsing an
infrared handheld's export), `moves` (a tenant changing shop, also across concentrators),
`settlements` (the reactions to edge entries and command verdicts), `receipts` (numbered,
never changed; `receipt_status` where one stands, from the ledger; `receipt_print` what it
shows), `arguments` (the references and amounts every operation checks alike) and `alarms`
(the alarm desk: filters by place, counts, acknowledgement, read success per bus).
"""
