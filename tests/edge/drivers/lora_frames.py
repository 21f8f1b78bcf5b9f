"""Shared by the LoRa tests: DL/T 645 worked frames (reference/dlt645.md, meter 123456789012),
a minimal transaction and a scripted meter, so the radio is tested without the real driver."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

from edge.drivers.errors import MeterTimeout

ADDRESS = "123456789012"
READ_FORWARD_ACTIVE = bytes.fromhex("FEFEFEFE 68129078563412 68 11 04 33333433 68 16")
REPLY_1234_56_KWH = bytes.fromhex("68129078563412 68 91 08 33333433 89674533 54 16")
OTHER_METER_REPLY = bytes.fromhex("68 AA AA AA AA AA AA 68 13 00 DF 16")  # not ours


@dataclass
class FrameTransaction:
    """Just enough of a DL/T 645 transaction: done once the expected reply was fed."""

    request: bytes
    expected: bytes
    expects_reply: bool = True
    reply_timeout: float = 0.5
    received: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.received += data

    def done(self) -> bool:
        return self.expected in self.received

    def result(self) -> bytes:
        if not self.done():
            raise MeterTimeout("incomplete", address=ADDRESS)
        return self.expected


class ScriptedMeter:
    """A sans-I/O responder: answers the one request it knows with its replies."""

    def __init__(self, request: bytes, *replies: bytes) -> None:
        self.request = request.lstrip(b"\xfe")
        self.replies = list(replies)

    def feed(self, data: bytes) -> list[bytes]:
        return list(self.replies) if self.request in data else []


def read_energy(
    expected: bytes = REPLY_1234_56_KWH,
) -> Generator[FrameTransaction, FrameTransaction, bytes]:
    transaction = yield FrameTransaction(READ_FORWARD_ACTIVE, expected)
    return transaction.result()
