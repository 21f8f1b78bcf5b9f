"""A chaos TCP proxy for MQTT: sits between a client and a plain-TCP broker and, for PUBLISH
packets only, drops, duplicates or reorders them; `cut()` drops every connection at once.

Sync over MQTT must survive exactly these faults: a QoS 1 retransmission looks like a
duplicate PUBLISH with the same packet id, a lost connection loses whatever was in flight, and
a reconnect can deliver a backlog out of order. Doing them at the packet level against a real
broker tests the real client libraries rather than mocks of our own code.

Each direction's byte stream is cut into whole MQTT packets by the fixed header (the same in
MQTT 3.1.1 and 5), so a fault never splits a packet:

    byte 0          bytes 1..4                     rest
    +------+------+ +----------------------------+ +----------------------------+
    | type | flags| | remaining length, varint:  | | variable header + payload  |
    | 7..4 | 3..0 | | 7 bits per byte, high bit  | | (remaining length bytes)   |
    +------+------+ | = "another byte follows"   | +----------------------------+
                    +----------------------------+
    PUBLISH = type 3; flags: bit 3 DUP, bits 2..1 QoS, bit 0 RETAIN

Decisions come from one seeded `random.Random`, so a failing run can be replayed with the same
seed (thread interleaving aside). CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBACK, PINGREQ… always
pass untouched: the point is to lose data, not to stop the session from ever starting.
"""

from __future__ import annotations

import random
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.e2e.relay import Direction, TcpRelay

PUBLISH = 3
DISCONNECT = 14
DUP_FLAG = 0x08
MAX_LENGTH_BYTES = 4
HOLD_TIMEOUT_S = 0.5


class MalformedPacket(ValueError):
    """The stream is not MQTT (remaining-length varint longer than four bytes)."""


def packet_type(packet: bytes) -> int:
    return packet[0] >> 4


def publish_qos(packet: bytes) -> int:
    return (packet[0] >> 1) & 0x03


def as_retransmission(packet: bytes) -> bytes:
    """The PUBLISH as a sender's retransmission: DUP set for QoS 1/2 (QoS 0 must keep DUP 0)."""
    if publish_qos(packet) == 0:
        return packet
    return bytes([packet[0] | DUP_FLAG]) + packet[1:]


class PacketSplitter:
    """Bytes in, whole MQTT packets out (sans-I/O): `feed(data)` then iterate `packets()`."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def packets(self) -> Iterator[bytes]:
        while (length := self._next_length()) is not None:
            packet = bytes(self._buffer[:length])
            del self._buffer[:length]
            yield packet

    def _next_length(self) -> int | None:
        """Total length of the first packet when it is complete, else None."""
        remaining, multiplier = 0, 1
        for index in range(1, MAX_LENGTH_BYTES + 2):
            if index >= len(self._buffer):
                return None
            if index > MAX_LENGTH_BYTES:
                raise MalformedPacket("remaining length longer than four bytes")
            byte = self._buffer[index]
            remaining += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                total = index + 1 + remaining
                return total if len(self._buffer) >= total else None
        return None  # pragma: no cover - the loop always returns or raises


@dataclass(frozen=True, slots=True)
class ChaosRates:
    """Per-PUBLISH probabilities in one direction; at most one fault per packet."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.drop, self.duplicate, self.reorder)
        if any(rate < 0 for rate in rates) or sum(rates) > 1:
            raise ValueError(f"rates must be >= 0 and sum to at most 1: {self}")


@dataclass(slots=True)
class DirectionCounters:
    """What the proxy did to one direction's packets."""

    packets: int = 0  # packets received from the sender
    publishes: int = 0
    forwarded: int = 0  # packets written to the receiver (duplicates included)
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0  # PUBLISHes sent after the PUBLISH that followed them
    held_released: int = 0  # held PUBLISHes released with nothing sent before them (timeout)


@dataclass(slots=True)
class ProxyCounters:
    to_broker: DirectionCounters = field(default_factory=DirectionCounters)
    to_client: DirectionCounters = field(default_factory=DirectionCounters)
    connections: int = 0
    cuts: int = 0

    def of(self, direction: Direction) -> DirectionCounters:
        return self.to_broker if direction == "to_broker" else self.to_client


class MqttChaosProxy(TcpRelay):
    """Listens on 127.0.0.1:`port`; each client connection gets its own broker connection."""

    def __init__(
        self,
        broker_host: str,
        broker_port: int,
        *,
        to_broker: ChaosRates | None = None,
        to_client: ChaosRates | None = None,
        seed: int = 0,
        hold_timeout: float = HOLD_TIMEOUT_S,
    ) -> None:
        self._rates: dict[Direction, ChaosRates] = {
            "to_broker": to_broker or ChaosRates(),
            "to_client": to_client or ChaosRates(),
        }
        self._random = random.Random(seed)
        self.hold_timeout = hold_timeout
        self.counters = ProxyCounters()
        super().__init__(broker_host, broker_port)

    def set_rates(
        self, *, to_broker: ChaosRates | None = None, to_client: ChaosRates | None = None
    ) -> None:
        """Change the fault rates for packets from now on."""
        with self._lock:
            if to_broker is not None:
                self._rates["to_broker"] = to_broker
            if to_client is not None:
                self._rates["to_client"] = to_client

    def cut(self) -> None:
        """Close every current connection, both sides, as a network drop would."""
        with self._lock:
            self.counters.cuts += 1
        super().cut()

    def connected(self) -> None:
        with self._lock:
            self.counters.connections += 1

    def relay(self, source: socket.socket, target: socket.socket, direction: Direction) -> None:
        """Whole MQTT packets, with the faults chosen for PUBLISHes."""
        splitter = PacketSplitter()
        held: bytes | None = None
        while True:
            # select() rather than a socket timeout: a timeout would also apply to the other
            # pump's sendall() on this same socket.
            readable, _, _ = select.select([source], [], [], self.hold_timeout if held else None)
            if not readable:
                assert held is not None
                self._send(target, direction, held)
                self._count(direction, "held_released")
                held = None
                continue
            data = source.recv(65536)
            if not data:
                break
            splitter.feed(data)
            for packet in splitter.packets():
                held = self._forward(target, direction, packet, held)
        if held is not None:
            self._send(target, direction, held)

    def _forward(
        self, target: socket.socket, direction: Direction, packet: bytes, held: bytes | None
    ) -> bytes | None:
        """Send (or not) one packet; returns the PUBLISH now being held back, if any."""
        kind = packet_type(packet)
        self._count(direction, "packets")
        if kind != PUBLISH:
            if kind == DISCONNECT and held is not None:
                self._send(target, direction, held)  # a clean close must not lose it
                held = None
            self._send(target, direction, packet)
            return held
        self._count(direction, "publishes")
        fault = self._choose_fault(direction)
        if fault == "reorder" and held is None:
            return packet
        if fault == "drop":
            self._count(direction, "dropped")
        else:
            self._send(target, direction, packet)
            if fault == "duplicate":
                self._send(target, direction, as_retransmission(packet))
                self._count(direction, "duplicated")
        if held is not None:
            self._send(target, direction, held)
            # Only a PUBLISH that actually went out first makes this a reorder.
            self._count(direction, "held_released" if fault == "drop" else "reordered")
        return None

    def _choose_fault(self, direction: Direction) -> str | None:
        with self._lock:
            rates = self._rates[direction]
            draw = self._random.random()
        if draw < rates.drop:
            return "drop"
        if draw < rates.drop + rates.duplicate:
            return "duplicate"
        if draw < rates.drop + rates.duplicate + rates.reorder:
            return "reorder"
        return None

    def _send(self, target: socket.socket, direction: Direction, packet: bytes) -> None:
        target.sendall(packet)
        self._count(direction, "forwarded")

    def _count(self, direction: Direction, name: str) -> None:
        with self._lock:
            counters = self.counters.of(direction)
            setattr(counters, name, getattr(counters, name) + 1)
