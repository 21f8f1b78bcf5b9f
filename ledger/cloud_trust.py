"""The cloud's command keys a concentrator trusts, pushed with its configuration — so a rotation
of the cloud's command key needs no edit of the boxes' site.toml (README "TLS and key rotation").

A `config` command may carry (`ledger.signed.CommandKind.CONFIG`):

    cloud_keys          the keys the cloud signs with now and next: 64 hex digits each
                        (the raw Ed25519 public key), at most `MAX_KEYS`
    retired_cloud_keys  keys the cloud signed with before a rotation and no longer holds

A box trusts its site.toml's `cloud_public_key` keys and the last pushed `cloud_keys`, less the
last pushed `retired_cloud_keys` (`ring`): during a rotation the cloud pushes its current key
and the staged next one, so a command signed by either is accepted; after the switch it pushes
the new key and retires the old, whose commands are then refused even if a site.toml still
lists it. A push that would leave no key trusted is refused (the box could never be reached
again).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import key_id
from ledger.errors import InvalidValue

MAX_KEYS = 8
_HEX = re.compile(r"[0-9a-f]{64}")


def public_hex(key: Ed25519PublicKey) -> str:
    """The raw public key in the 64 hex digits the arguments carry."""
    return key.public_bytes_raw().hex()


def parse_keys(raw: object, name: str) -> tuple[Ed25519PublicKey, ...]:
    """A pushed list of public keys; InvalidValue, naming `name`, for anything else."""
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_KEYS
        or not all(isinstance(k, str) and _HEX.fullmatch(k) for k in raw)
    ):
        raise InvalidValue(
            f"{name} must be a list of at most {MAX_KEYS} public keys in 64 lower-case hex "
            f"digits, got {raw!r:.120}"
        )
    try:
        return tuple(Ed25519PublicKey.from_public_bytes(bytes.fromhex(k)) for k in raw)
    except ValueError as exc:
        raise InvalidValue(f"{name}: {exc}") from None


def ring(
    configured: Mapping[str, Ed25519PublicKey],
    pushed: Iterable[Ed25519PublicKey],
    retired: Iterable[Ed25519PublicKey],
) -> dict[str, Ed25519PublicKey]:
    """The keys a box trusts (key id → key): `configured` (its site.toml's) and `pushed`, less
    `retired`."""
    out = dict(configured)
    out.update((key_id(k), k) for k in pushed)
    for key in retired:
        out.pop(key_id(key), None)
    return out
