"""What every meter protocol offers the bus: sans-I/O conversations.

A protocol driver never touches a port. To read a block or move a relay it returns a
*conversation*: a generator that yields `Exchange`s (one request and the reply it waits for)
and finally returns its result. The bus worker (`edge.drivers.bus`) writes each request, feeds
the bytes that arrive into the transaction until it is `done()` or the protocol's timeout
passes, then sends the transaction back into the generator (`conversation.send(tx)`), which
calls `tx.result()` (raising the driver's `MeterError` on an error reply) and decides the next
step, e.g. a DL/T 645 follow-up frame (12) when the meter says more frames follow.

    def read_block(address, block) -> Conversation[Reading]:
        tx = yield ReadTransaction(...)
        first = tx.result()
        ...
        return reading

Timing is data too: `SerialSettings.byte_time` (11 bits a byte at 8E1) and each transaction's
`reply_timeout` let the bus compute its deadlines from the protocol's rules.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SerialSettings:
    baudrate: int = 2400
    parity: Literal["E", "N", "O"] = "E"
    bytesize: int = 8
    stopbits: int = 1

    @property
    def bits_per_byte(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def byte_time(self) -> float:
        """Seconds one byte takes on the wire (start + data + parity + stop bits)."""
        return self.bits_per_byte / self.baudrate


class Exchange(Protocol):
    """One request on the bus and the reply it waits for."""

    @property
    def request(self) -> bytes:
        """The exact bytes to write, preamble included."""
        ...

    @property
    def expects_reply(self) -> bool:
        """False for broadcasts (time sync, freeze): the bus writes and moves on."""
        ...

    @property
    def reply_timeout(self) -> float:
        """Seconds to wait for the first reply byte after the request is on the wire."""
        ...

    def feed(self, data: bytes) -> None:
        """Bytes received from the bus; noise and replies of other meters are skipped."""
        ...

    def done(self) -> bool:
        """True once a complete reply from the addressed meter was decoded."""
        ...

    def result(self) -> Any:
        """The decoded reply; raises a MeterError (MeterRefused, FrameError…) if it is one."""
        ...


Conversation = Generator[Exchange, Exchange, T]


class MeterDriver(Protocol):
    """A meter protocol (one per protocol/model name), e.g. `dlt645`, `cjt188`, `sdm120`."""

    @property
    def name(self) -> str: ...

    @property
    def default_settings(self) -> SerialSettings: ...

    @property
    def blocks(self) -> frozenset[str]:
        """Reading blocks this driver knows (`basic`, `energy`, `abnormal_trips`, …)."""
        ...

    @property
    def items(self) -> frozenset[str]:
        """Data items a site-defined block may list (names from the driver's tables)."""
        ...

    def with_blocks(self, blocks: Mapping[str, tuple[str, ...]]) -> MeterDriver:
        """This driver knowing site-defined blocks too (name → items, each in `items`); a
        name it knows already is redefined. DriverUsageError for an item it cannot read."""
        ...

    def read(self, address: str, block: str = "basic") -> Conversation[Any]:
        """Read a named block; the conversation returns a `Reading`."""
        ...

    def relay(self, address: str, action: Literal["trip", "close"]) -> Conversation[Any]:
        """Command the relay (valve for water meters) and confirm it by reading the state back;
        returns the confirmed `RelayState`/`ValveState` or raises `RelayNotConfirmed`."""
        ...


class Bus(Protocol):
    """Something that carries conversations to meters: an RS-485 port or a LoRa radio."""

    def run(self, conversation: Conversation[T], *, address: str) -> T:
        """Drive a conversation to its end, strictly one request at a time."""
        ...


class Responder(Protocol):
    """A simulated meter's protocol side (sans-I/O): bytes heard on the bus in, replies out.

    Every responder on a simulated bus hears every byte; it answers only frames addressed to
    its meter (or broadcasts/wildcards where the protocol says so).
    """

    def feed(self, data: bytes) -> list[bytes]: ...
