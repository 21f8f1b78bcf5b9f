"""An in-process bus for simulated meters: the same frames as on a wire, without the wire.

`DirectBus.run(conversation, address=…)` drives a driver's sans-I/O conversation exactly as
`edge.drivers.bus.SerialBus` does, but instead of writing the request to a port it hands the
request bytes to the simulated meters' responders and feeds their reply bytes straight back
into the transaction. No pty, no thread, no byte times: a month of polling runs as fast as the
codecs and the rules can go, which is what `voltbook-edge run --speed X`, the runtime tests and
`bench/edge_bench.py` need. The frames are byte for byte those a real bus would carry, so the
driver's decoding, addressing checks and relay read-back are all exercised.

Routing: on a real RS-485 pair every meter hears every byte and only the addressed one answers.
Feeding each request to all N responders would make a poll round cost N² decodes, so a request
for a meter the bus knows goes to that meter's responder only; a request for any other address
(broadcasts, wildcards, discovery probes) goes to every responder, as on the wire.

Faults: `loss` drops a reply with that probability (seeded), and `detach(address)` takes a meter
off the bus (a cut cable); the conversation then fails with the driver's `MeterTimeout`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from edge.drivers.base import Conversation, Responder

T = TypeVar("T")


class DirectBus:
    """Simulated meters behind an in-process bus. Satisfies `edge.drivers.base.Bus`."""

    def __init__(
        self,
        responders: Mapping[str, Responder],
        *,
        name: str = "direct-bus",
        loss: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be a probability in 0..1, got {loss}")
        self.name = name
        self.loss = loss
        self._responders: dict[str, Responder] = dict(responders)
        self._random = random.Random(seed)
        self.requests = 0
        self.replies = 0

    def attach(self, address: str, responder: Responder) -> None:
        self._responders[address] = responder

    def detach(self, address: str) -> Responder | None:
        """Take a meter off the bus; returns its responder (to attach it again later)."""
        return self._responders.pop(address, None)

    @property
    def addresses(self) -> list[str]:
        return sorted(self._responders)

    def run(self, conversation: Conversation[T], *, address: str, retries: int | None = None) -> T:
        """Drive `conversation` for meter `address` to its end; raises its `MeterError`.

        `retries` is accepted for the discovery protocol's sake and ignored: an in-process
        meter either answers or does not, and asking again changes nothing.
        """
        del retries
        only = self._responders.get(address)
        listeners = [only] if only is not None else list(self._responders.values())
        try:
            tx = next(conversation)
            while True:
                self.requests += 1
                replies = [reply for r in listeners for reply in r.feed(tx.request)]
                if tx.expects_reply:
                    for reply in replies:
                        if self.loss and self._random.random() < self.loss:
                            continue
                        self.replies += 1
                        tx.feed(reply)
                tx = conversation.send(tx)
        except StopIteration as stop:
            value: T = stop.value
            return value
        finally:
            conversation.close()

    def close(self) -> None:
        """Nothing to release; here so the runtime closes every bus the same way."""


if TYPE_CHECKING:
    from edge.drivers.base import Bus

    def _satisfies_bus(bus: DirectBus) -> Bus:
        return bus
