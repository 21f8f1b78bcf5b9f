"""The ledger contract shared by the concentrator (edge) and the cloud.

Pure: no I/O, no clock, no randomness. Callers supply ids, times and keys.

- `units`: integer Wh and fen, prices, exact cost with drift-free cumulative rounding.
- `accounts`: merchant pockets and system accounts.
- `transfers`: the immutable transfer value and its codes.
- `book`: TigerBeetle-style application of transfers (idempotent ids, linked, two-phase, floors).
- `encoding`: the canonical byte encoding that is hashed and signed.
- `chain`: the per-node hash chain, node keys and signed checkpoints.
- `verify`: names exactly what is wrong with an exported chain.
- `invariants`: DESIGN §5 invariants that every test scenario and the cloud check.
"""
