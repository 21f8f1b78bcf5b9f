"""A minimal DL/T 645 meter and transaction for testing the line itself (pty bus, serial bus).

Real framing (the project's DL/T 645 codec), the smallest behaviour: the meter answers a read
(11) addressed to it with the DI and a fixed 4-byte value; a rogue variant answers with
another meter's address. The transaction takes only a reply from the meter it addressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from edge.drivers.base import Conversation, Responder
from edge.drivers.dlt645 import Decoder, Frame, address_matches, encode_frame
from edge.drivers.errors import ChecksumError, MeterTimeout

T = TypeVar("T")

DI_ENERGY = b"\x00\x00\x01\x00"
VALUE = b"\x56\x34\x12\x00"  # 1234.56 kWh, BCD lowest byte first


class TinyMeter:
    """Answers `11` reads addressed to it; `reply_as` makes it lie about who it is."""

    def __init__(self, address: str, *, reply_as: str | None = None, preamble: int = 0) -> None:
        self.address = address
        self.reply_as = reply_as or address
        self.preamble = preamble
        self.decoder = Decoder()
        self.heard: list[Frame] = []

    def feed(self, data: bytes) -> list[bytes]:
        self.decoder.feed(data)
        replies = []
        for frame in self.decoder.frames():
            self.heard.append(frame)
            if frame.is_reply or not address_matches(frame.address, self.address):
                continue
            reply = Frame(self.reply_as, 0x91, frame.data + VALUE)
            replies.append(encode_frame(reply, preamble=self.preamble))
        return replies


class EchoAll:
    """Answers every request with the raw bytes `reply` (for byte-transparency tests)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.heard = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.heard += data
        return [self.reply] if data else []


@dataclass(eq=False)
class TinyRead:
    address: str
    reply_timeout: float = 0.5
    expects_reply: bool = True
    decoder: Decoder = field(default_factory=Decoder)
    frame: Frame | None = None
    ignored: int = 0

    @property
    def request(self) -> bytes:
        return encode_frame(Frame(self.address, 0x11, DI_ENERGY))

    def feed(self, data: bytes) -> None:
        self.decoder.feed(data)
        for frame in self.decoder.frames():
            if frame.is_reply and frame.address == self.address and self.frame is None:
                self.frame = frame
            else:
                self.ignored += 1

    def done(self) -> bool:
        return self.frame is not None

    def result(self) -> Frame:
        if self.frame is not None:
            return self.frame
        if self.decoder.checksum_errors:
            raise ChecksumError("bad checksum", address=self.address, item="energy")
        raise MeterTimeout("no reply", address=self.address, item="energy")


def tiny_read(address: str, reply_timeout: float = 0.5) -> Conversation[Frame]:
    tx = yield TinyRead(address, reply_timeout)
    assert isinstance(tx, TinyRead)
    return tx.result()


def drive(conversation: Conversation[T], *responders: Responder) -> T:
    """The tiny in-memory bus: each request to every responder, every reply into the
    transaction, until the conversation returns."""
    tx = next(conversation)
    while True:
        for responder in responders:
            for reply in responder.feed(tx.request):
                tx.feed(reply)
        try:
            tx = conversation.send(tx)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]
