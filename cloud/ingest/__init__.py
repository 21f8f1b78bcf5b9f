"""Ingest of concentrator uplinks (docs/architecture.md §7, §9): verify each batch, store it
idempotently and answer with a signed acknowledgement.

`handler` is `Ingest` (a batch in, a signed `Ack` out, after one transaction under the node's row
lock); `checks` holds the pure checks of a batch before anything touches the database (hashes,
the checkpoint signature, readings, events, command results); `concentrators` is the registry of
nodes that may upload (keys, rotation, quarantine); `worker` is the MQTT client that feeds
`Ingest` from a shared subscription and dispatches pending commands to online nodes.
"""
