"""The cloud keys this concentrator trusts now: its site.toml's `cloud_public_key` keys and the
ones the cloud pushed with its last configuration, less the ones it retired
(`ledger.cloud_trust`). The command desk opens commands with it and the uplink session acks and
operator-log heads, so after a rotation of the cloud's command key both follow the push.

The pushed lists are stored under `TRUST_KEY` in the runtime transaction that applies the
configuration (`edge.sync.configure.config`); the ring reads them when asked (a command or an
ack arrives), so a push takes effect for the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.store import Store
from ledger import cloud_trust

TRUST_KEY = "sync:cloud_keys"  # {"cloud_keys": [hex, …], "retired_cloud_keys": [hex, …]}


def pushed(stored: Any) -> tuple[tuple[Ed25519PublicKey, ...], tuple[Ed25519PublicKey, ...]]:
    """The pushed and the retired keys as stored under `TRUST_KEY` (none: nothing pushed)."""
    if not isinstance(stored, dict):
        return (), ()
    return (
        cloud_trust.parse_keys(stored.get("cloud_keys", []), "cloud_keys"),
        cloud_trust.parse_keys(stored.get("retired_cloud_keys", []), "retired_cloud_keys"),
    )


class CloudKeyRing(Mapping[str, Ed25519PublicKey]):
    """Key id → the cloud's public key, as trusted now (see the module's docstring)."""

    def __init__(self, store: Store, configured: Mapping[str, Ed25519PublicKey]) -> None:
        self._store = store
        self._configured = dict(configured)
        self._seen: Any = None
        self._ring = dict(configured)

    def _current(self) -> dict[str, Ed25519PublicKey]:
        stored = self._store.get_state(TRUST_KEY)
        if stored != self._seen:
            self._ring = cloud_trust.ring(self._configured, *pushed(stored))
            self._seen = stored
        return self._ring

    def __getitem__(self, key: str) -> Ed25519PublicKey:
        return self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())
