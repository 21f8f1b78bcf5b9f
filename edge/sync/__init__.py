"""Sync with the cloud over MQTT (docs/architecture.md §6.5; wire contract in `ledger.wire`,
signed messages in `ledger.signed`).

- `uplink`: batches built from the store's outbox (ledger entries with one signed checkpoint,
  readings as compressed columns, events, command results), within a byte budget. Pure.
- `session`: the sans-I/O state machine of the uplink: window, pacing, acknowledgements
  (verified, then acknowledge + prune in one transaction), gaps, timeouts, pauses.
- `commands`: the command desk: signed cloud commands opened, then applied exactly once (inbox
  keyed by command id) by their handler in `HANDLERS`; `recharge`, `relay` and `time` here.
- `money`: the money commands: `correction`, `refund`, `settle`, `move_out`, `move_in`.
- `configure`: `config` (a whole new configuration) and `meter_swap`.
- `command_context`: one command being applied, its arguments checked, `Refusal`.
- `client`: the paho-mqtt link (TLS client certificate, last will, reconnects); its thread
  only enqueues.
- `service`: the runner's job: drain the link, handle, send.

QoS is transport only: correctness comes from outbox ids, ledger seqs, signed acknowledgements
and the inbox, never from the broker or paho keeping state.
"""
