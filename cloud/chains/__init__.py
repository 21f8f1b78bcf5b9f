"""The chains as the cloud holds them (docs/architecture.md §5.5, §7): every node's entries, the
cloud's own chain, and what is derived from them as they arrive.

`store` appends the cloud's own chain (node `cloud`: payments and their posting) and signs its
head; `projection` keeps the `balances` projection over every chain and turns verified entries
into rows (`VerifiedEntry`); `rollups` folds consumption into per-day rows for reports;
`commands` is the outbox of signed commands to concentrators and their verdicts
(`CommandVerdict`); `locks` takes a node's row lock (the lock order lives there); `alarms`
raises what operators must see about a node and copies in the concentrators' own, and
`alarm_kinds` lists every kind either side raises (group, severity). Imports
only `cloud.db`, `cloud.errors`, `cloud.keys` and `ledger`.
"""
