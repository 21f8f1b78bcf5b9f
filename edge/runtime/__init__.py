"""The concentrator runtime: billing that never stops (DESIGN §6).

- `cycle`: `Runtime.run_cycle()`, one poll cycle: clock guard, read every meter, the rules per
  account, ONE store transaction, then the relay commands; and `recharge`.
- `accounting`: one account's turn in a cycle (consumption, protection, subsidy, arrears,
  relay settling), in the order the rules' contract asks for.
- `polling`, `relays`: reading the meters bus by bus; relay commands confirmed by read-back.
- `state`, `codec`: the rules' states as stored, by a dataclass ↔ JSON codec driven by type
  hints, written in the same transaction as the transfers they produced.
- `clock`: system, simulated (`--speed`) and manual clocks, and the clock guard around them.
- `events`: alarms and events naming meter, shop and account.
- `boot`: key, store, buses (serial, simulated, LoRa), simulated meters, seed balances.
- `runner`: `voltbook-edge run`: scheduled jobs, signals, systemd notify and watchdog.
- `notify`: systemd's notify protocol on a plain socket.
- `seed`, `view`, `audit`: opening balances; the `accounts` view; `ledger verify --config`.
"""
