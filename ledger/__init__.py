"""The ledger contract shared by the concentrator (edge) and the cloud.

Pure: no I/O, no clock, no randomness. Callers supply ids, times and keys. Imports nothing else
of Voltbook's (docs/architecture.md §3); the model is §5, the edge–cloud contract §8.

- `units`: integer Wh and fen, prices, exact cost with drift-free cumulative rounding.
- `accounts`: merchant pockets and system accounts.
- `transfers`: the immutable transfer value, its codes and kinds.
- `ids`: deterministic 128-bit transfer ids derived from business facts.
- `book`: TigerBeetle-style application of transfers (idempotent ids, linked, two-phase, floors).
- `encoding`: the canonical byte encoding that is hashed and signed (body format version 1, JSON).
- `encoding_v2`: body format version 2, compact binary, decoded without intermediate objects.
- `chain`: the per-node hash chain, node keys and signed checkpoints.
- `export`: the JSON-lines form of a chain (export, uplink, vectors).
- `verify`: names exactly what is wrong with an exported chain.
- `invariants`: the ledger invariants every test scenario checks (docs/architecture.md §5.6).
- `entry_ids`: the id of every entry a command or rule books (frozen tags).
- `signed`: signed commands and acknowledgements, `CommandKind`, `REFERENCE_PATTERN`.
- `wire`: the MQTT topics and payloads: uplink batches, acks, status.
- `errors`: the `LedgerError` tree.
"""
