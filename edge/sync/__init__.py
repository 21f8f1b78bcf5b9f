"""Sync with the cloud over MQTT (DESIGN §6 "Sync"; wire contract in `ledger.wire`, signed
messages in `ledger.signed`).

- `uplink`: batches built from the store's outbox (ledger entries with one signed checkpoint,
  readings as compressed columns, events, command results), within a byte budget. Pure.
- `session`: the sans-I/O state machine of the uplink: window, pacing, acknowledgements
  (verified, then acknowledge + prune in one transaction), gaps, timeouts, pauses.
- `commands`: signed cloud commands (recharge, relay, time) applied exactly once.
- `client`: the paho-mqtt link (TLS client certificate, last will, reconnects); its thread
  only enqueues.
- `service`: the runner's job: drain the link, handle, send.

QoS is transport only: correctness comes from outbox ids, ledger seqs, signed acknowledgements
and the inbox, never from the broker or paho keeping state.
"""
