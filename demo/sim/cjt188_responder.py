"""A simulated CJ/T 188 water meter answering from a `MeterState` (sans-I/O).

Bytes heard on the bus in, reply frames out, built with the same codec the driver uses. It
answers read metering data (901F), read address (810A, also to the wildcard address AA…AA)
and valve commands (A017: 55 open, 99 close, AA exercise), with the DI bytes in the order this
make of meter sends (`di_order`), while accepting either order on receive as real meters of
both kinds are found on one bus (`either_di_order=False`: a make that knows only its own order
and answers a request in the other as it answers an unknown identifier). It stays silent on
frames for other meters, on replies, and on garbage, as a meter does; an unknown data
identifier gets an error reply.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from demo.sim.state import MeterState
from edge.drivers.cjt188 import (
    Decoder,
    DiOrder,
    Frame,
    encode,
    encode_bcd,
    encode_datetime,
    encode_status,
    wire_di,
)
from edge.drivers.cjt188_items import (
    ANY_METER_TYPE,
    COLD_WATER,
    CUBIC_METRE,
    METERING,
    READ_ADDRESS,
    VALVE,
    WILDCARD_ADDRESS,
    Control,
    ValveCommand,
    error_control,
    reply_control,
)
from edge.drivers.errors import FrameError
from edge.drivers.reading import ValveState

__all__ = ["Cjt188Responder"]

_ML_PER_HUNDREDTH_M3 = 10_000  # 0.01 m³ = 10 L
_BCD_VOLUME_WRAP = 10**8  # XXXXXX.XX rolls over like an odometer


class Cjt188Responder:
    """The protocol side of one simulated CJ/T 188 meter (`edge.drivers.base.Responder`)."""

    def __init__(
        self,
        state: MeterState,
        di_order: DiOrder = "1F90",
        *,
        meter_type: int = COLD_WATER,
        valve_control: int = Control.WRITE,
        preamble: bytes = b"\xfe\xfe",
        either_di_order: bool = True,
    ) -> None:
        self.state = state
        self.di_order = di_order
        self.either_di_order = either_di_order
        self.meter_type = meter_type
        self.valve_control = valve_control
        self.preamble = preamble
        self.battery_low = False
        self._decoder = Decoder()
        # (control, DI) → what the meter does and the data of its reply.
        handlers: dict[tuple[int, int], Callable[[Frame], tuple[bytes, bool]]] = {
            (Control.READ, METERING.di): self._metering,
            (Control.READ_ADDRESS, READ_ADDRESS.di): lambda _request: (b"", False),
            (valve_control, VALVE.di): self._valve,
        }
        self._handlers = MappingProxyType(handlers)

    def feed(self, data: bytes) -> list[bytes]:
        self._decoder.feed(data)
        replies: list[bytes] = []
        while True:
            try:
                frame = self._decoder.next_frame()
            except FrameError:
                continue  # a meter ignores what it cannot read; the master times out
            if frame is None:
                return replies
            reply = self._answer(frame)
            if reply is not None:
                replies.append(self.preamble + encode(reply))

    def _addressed(self, frame: Frame) -> bool:
        if frame.meter_type not in (self.meter_type, ANY_METER_TYPE):
            return False
        if frame.address == self.state.address:
            return True
        return frame.address == WILDCARD_ADDRESS and frame.control == Control.READ_ADDRESS

    def _answer(self, frame: Frame) -> Frame | None:
        if frame.is_reply or not self._addressed(frame):
            return None
        for (control, di), handler in self._handlers.items():
            if frame.control == control and self._knows(frame, di):
                data, error = handler(frame)
                # Our own DI order, whatever the master used: it marks the make of meter.
                return self._reply(frame, wire_di(di, self.di_order), data, error=error)
        return self._reply(frame, frame.di, self._status(), error=True)

    def _knows(self, frame: Frame, di: int) -> bool:
        if self.either_di_order:
            return frame.has_di(di)
        return frame.di == wire_di(di, self.di_order)

    def _reply(self, request: Frame, di: bytes, data: bytes, *, error: bool = False) -> Frame:
        control = error_control(request.control) if error else reply_control(request.control)
        return Frame(self.meter_type, self.state.address, control, di, request.ser, data)

    def _status(self) -> bytes:
        valve = ValveState.OPEN if self.state.valve_open else ValveState.CLOSED
        return encode_status(valve, battery_low=self.battery_low)

    def _volume(self) -> bytes:
        hundredths = (self.state.volume_ml // _ML_PER_HUNDREDTH_M3) % _BCD_VOLUME_WRAP
        return encode_bcd(hundredths, 4) + bytes([CUBIC_METRE])

    def _metering(self, _request: Frame) -> tuple[bytes, bool]:
        volume = self._volume()
        # No settlement day is simulated: the settlement-day register shows the current count.
        return volume + volume + encode_datetime(self.state.clock) + self._status(), False

    def _valve(self, request: Frame) -> tuple[bytes, bool]:
        command = request.data[:1]
        if command == bytes([ValveCommand.OPEN]):
            self.state.valve_open = True
        elif command == bytes([ValveCommand.CLOSE]):
            self.state.valve_open = False
        elif command != bytes([ValveCommand.EXERCISE]):  # exercising ends where it began
            return self._status(), True
        return self._status(), False
