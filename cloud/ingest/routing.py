"""Which ingest worker takes a node's uplink: exactly one, so a node's batches are handled in
the order it sent them.

An edge keeps several batches in flight (its window). Were they spread over workers, the later
batch could reach the database first; the cloud answers `gap` and the edge sends its window
again. Two ways keep a node on one worker:

- `Partition` (the default): every worker subscribes to all uplinks (no shared subscription)
  and keeps the nodes whose `owner(node, count)` is its index. Works on any MQTT broker; each
  worker's connection carries every node's messages, most of which it discards.
- `SharedGroup`: the workers join one `$share/{name}` group and the broker routes each node to
  one member. Only for a broker that routes by publisher or topic, such as EMQX with
  `broker.shared_subscription_strategy = hash_clientid` (or `hash_topic`); Mosquitto's shared
  subscriptions go round robin, which reorders a node's batches.

`owner` is a stable hash (SHA-256, not Python's salted `hash`): every process, on every machine
and after every restart, puts a node in the same partition.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ledger.wire import TOPIC_ROOT


def owner(node: str, count: int) -> int:
    """The partition of `count` that owns `node`."""
    digest = hashlib.sha256(node.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Partition:
    """The nodes of partition `index` out of `count`; the default owns every node."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            # A worker outside the partitions would leave some partition to nobody.
            raise ValueError(f"partition {self.index} of {self.count}: needs 0 ≤ index < count")

    def owns(self, node: str) -> bool:
        return self.count == 1 or owner(node, self.count) == self.index

    @property
    def topic_filter(self) -> str:
        return f"{TOPIC_ROOT}/+"

    def __str__(self) -> str:
        return f"partition {self.index} of {self.count}"


@dataclass(frozen=True, slots=True)
class SharedGroup:
    """A `$share` group whose broker routes each node to one member (EMQX `hash_clientid`)."""

    name: str

    def owns(self, node: str) -> bool:
        return True  # the broker chose this member for the node

    @property
    def topic_filter(self) -> str:
        return f"$share/{self.name}/{TOPIC_ROOT}/+"

    def __str__(self) -> str:
        return f"shared group {self.name!r} (the broker routes by node)"


Route = Partition | SharedGroup
EVERY_NODE = Partition()  # one worker alone
