"""The protocol side of a simulated DL/T 645 meter (2007 or 1997), sans-I/O.

`Dlt645Responder.feed(bytes)` takes whatever the bus carried and returns the replies this meter
sends: it answers frames addressed to it (or to the wildcard, for read-address), applies the
broadcast time (08) and freeze silently, and ignores everything else, including other meters'
replies, which it hears on a shared bus. Values come from the shared `MeterState` at the
meter's register resolution (energy in 0.01 kWh steps, truncated as a meter shows it); relay
commands (1C) change the state. Unknown or unsupported DIs get an error reply ("no such data").
A 2007 meter is model `voltbook-sim` (`edge.drivers.dlt645_vendor`): it takes writes (14) of
its malicious-load window into `MeterState.parameters`, answers reads of them, and judges its
own load with them (`demo.sim.meter_guard`). A write or a relay command with the wrong password
is refused "unauthorised" (error bit 2).
A reply longer than `max_reply_data` is split into follow-up frames (B1, then 12 → 92/B2);
`block_reads=False` makes an older meter that refuses block DIs (error reply D1, error byte 0x02
"no such data"); otherwise a block reply is its parts in DI order, each in its own format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Final

from demo.sim.state import MeterState
from edge.drivers.dlt645 import (
    BROADCAST,
    DEFAULT_PREAMBLE,
    MAX_DATA_LENGTH,
    WILDCARD,
    Decoder,
    Frame,
    address_matches,
    address_to_wire,
    decode_datetime,
    encode_frame,
    error_code,
    normalize_address,
    reply_control,
)
from edge.drivers.dlt645_items import (
    ITEMS_BY_NAME,
    RELAY_OPEN_BIT,
    DataItem,
    Value,
    decode_value,
    encode_value,
    from_reading_units,
    item_for_di,
    register_limit,
)
from edge.drivers.dlt645_requests import (
    BAUD_FEATURES,
    DIALECTS,
    parse_relay_command,
)
from edge.drivers.dlt645_vendor import MALICIOUS_LOAD_MAPS, SIMULATED_MODEL
from edge.drivers.errors import DriverUsageError, FrameError

EnergySource = Callable[[MeterState], int | None]  # milli-Wh; None: no such register
MeasureSource = Callable[[MeterState], float]  # reading units
RawSource = Callable[[MeterState], Value]


def _tariff(index: int) -> EnergySource:
    return lambda s: s.tariff_mwh[index] if index < len(s.tariff_mwh) else None


def _counter(name: str) -> RawSource:
    return lambda s: s.counters.get(name, 0)


def _bit(flag: bool, bit: int) -> int:
    return int(flag) << bit


def _status_word_3(s: MeterState) -> int:
    return (
        _bit(not s.relay_closed, RELAY_OPEN_BIT)
        | _bit(not s.relay_closed, 6)  # relay command state: follows the relay in the sim
        | _bit(s.alarm, 7)
        | _bit(s.keep_power, 12)
    )


# Energy in milli-Wh: the register is mWh // (its resolution), so a meter never rounds up.
ENERGY_SOURCES: Final[dict[str, EnergySource]] = {
    "forward_active_total": lambda s: s.energy_mwh,
    "combined_active_total": lambda s: s.energy_mwh,  # the simulated meter never exports
    "reverse_active_total": lambda s: 0,
    **{f"forward_active_tariff_{n}": _tariff(n - 1) for n in range(1, 64)},
    **{f"combined_active_tariff_{n}": _tariff(n - 1) for n in range(1, 64)},
}
# Measurements in reading units (V, A, W, var, Hz): scaled to the register by the item table.
MEASURE_SOURCES: Final[dict[str, MeasureSource]] = {
    "voltage_a": lambda s: s.voltage_v,
    "current_a": lambda s: s.current_a,
    "active_power_total": lambda s: s.power_w,
    "active_power_a": lambda s: s.power_w,
    "reactive_power_total": lambda s: s.reactive_var,
    "power_factor_total": lambda s: s.power_factor,
    "frequency": lambda s: s.frequency_hz,
}
# Registers as they are: date, time, status words, counters.
RAW_SOURCES: Final[dict[str, RawSource]] = {
    "date": lambda s: s.clock.date(),
    "time": lambda s: s.clock.time().replace(microsecond=0),
    **{f"status_word_{n}": (lambda s: 0) for n in (1, 2, 4, 5, 6, 7)},
    "status_word_3": _status_word_3,
    **{
        name: _counter(name)
        for name in ("malicious_load_trips", "overload_trips", "over_voltage_trips")
    },
}


# The vendor parameters this simulated model keeps (2007 only), by DI.
PARAMETERS: Final[dict[int, DataItem]] = {
    item.di: item for item in MALICIOUS_LOAD_MAPS[SIMULATED_MODEL].parameters
}


class Dlt645Responder:
    """A simulated meter's DL/T 645 side; see the module docs."""

    def __init__(
        self,
        state: MeterState,
        version: int = 2007,
        *,
        password: int = 0,
        max_reply_data: int = MAX_DATA_LENGTH,
        preamble: int = DEFAULT_PREAMBLE,
        block_reads: bool = True,
    ) -> None:
        self.state = state
        self.version = version
        self.dialect = DIALECTS[version]
        self.address = normalize_address(state.address)
        self.password = password
        self.max_reply_data = max_reply_data
        self.preamble = preamble
        self.block_reads = block_reads  # False: an older meter that refuses block DIs
        self.decoder = Decoder()
        self.baudrate: int | None = None  # set by a change-baud command
        self.freezes = 0
        self._follow_ups: dict[bytes, list[bytes]] = {}  # DI → chunks not yet sent
        d = self.dialect
        self._handlers: dict[int, Callable[[Frame], list[Frame]]] = {
            d.read: self._read,
            d.read_follow_up: self._follow_up,
            d.write: self._write,
            d.change_baud: self._change_baud,
            d.broadcast_time: self._set_time,
        }
        for code, handler in (
            (d.read_address, self._read_address),
            (d.freeze, self._freeze),
            (d.relay, self._relay),
        ):
            if code is not None:
                self._handlers[code] = handler

    def feed(self, data: bytes) -> list[bytes]:
        self.decoder.feed(data)
        replies: list[bytes] = []
        while (frame := self.decoder.next_frame()) is not None:
            if frame.is_reply or not self._addressed(frame):
                continue
            handler = self._handlers.get(frame.function)
            if handler is None:
                answer = [self._error(frame, "other")]
            else:
                try:
                    answer = handler(frame)
                except (FrameError, DriverUsageError):  # a malformed request: refuse it
                    answer = [self._error(frame, "other")]
            if frame.address != BROADCAST:  # nobody answers a broadcast
                replies += [encode_frame(reply, self.preamble) for reply in answer]
        return replies

    def _addressed(self, frame: Frame) -> bool:
        if frame.address == BROADCAST:
            return frame.function in (self.dialect.broadcast_time, self.dialect.freeze)
        if frame.address == WILDCARD:
            return frame.function == self.dialect.read_address
        # AA pairs in a request address any meter there (addressing by the low digits).
        return address_matches(frame.address, self.address)

    def _reply(self, frame: Frame, data: bytes = b"", *, more: bool = False) -> Frame:
        return Frame(self.address, reply_control(frame.function, more=more), data)

    def _error(self, frame: Frame, *reasons: str) -> Frame:
        code = bytes((error_code(*reasons),))
        return Frame(self.address, reply_control(frame.function, error=True), code)

    # --- reads -------------------------------------------------------------------------------

    def register(self, item: DataItem) -> Value | None:
        """The meter's register for one item now, or None if this meter has no such data."""
        name = item.name
        if name in ENERGY_SOURCES:
            mwh = ENERGY_SOURCES[name](self.state)
            if mwh is None:
                return None
            resolution_mwh: int = 1000 * 10 ** (3 - item.format_for(self.version).decimals)
            return (mwh // resolution_mwh) % (register_limit(item, self.version) + 1)
        if name in MEASURE_SOURCES:
            measure = MEASURE_SOURCES[name](self.state)
            limit = register_limit(item, self.version)
            register = from_reading_units(item, measure, self.version)
            if not item.format_for(self.version).signed:
                register = abs(register)
            return max(-limit, min(limit, register))
        if name in RAW_SOURCES:
            return RAW_SOURCES[name](self.state)
        if item.vendor and name in self.state.parameters:
            return self.state.parameters[name]
        return None

    def _item(self, di: bytes) -> DataItem | None:
        number = int.from_bytes(di, "little")
        if self.version == 2007 and number in PARAMETERS:
            return PARAMETERS[number]
        return item_for_di(number, self.version)

    def value_bytes(self, item: DataItem) -> bytes | None:
        """An item's reply data; a block carries its parts in order while the meter has them."""
        if not item.is_block:
            register = self.register(item)
            return None if register is None else encode_value(item, register, self.version)
        data = b""
        for name in item.parts:
            part = self.value_bytes(ITEMS_BY_NAME[name])
            if part is None:
                break
            data += part
        return data or None

    def _read(self, frame: Frame) -> list[Frame]:
        size = self.dialect.di_length
        if len(frame.data) < size:
            return [self._error(frame, "other")]
        di = frame.data[:size]
        item = self._item(di)
        if item is not None and item.is_block and not self.block_reads:
            item = None
        value = None if item is None else self.value_bytes(item)
        if value is None:
            return [self._error(frame, "no_such_data")]
        room = self.max_reply_data - size
        if len(value) <= room:
            return [self._reply(frame, di + value)]
        # Later chunks carry a sequence byte (2007): keep one byte of room for it.
        rest = value[room:]
        step = room - int(self.dialect.follow_up_sequence)
        self._follow_ups[di] = [rest[i : i + step] for i in range(0, len(rest), step)]
        return [self._reply(frame, di + value[:room], more=True)]

    def _follow_up(self, frame: Frame) -> list[Frame]:
        di = frame.data[: self.dialect.di_length]
        chunks = self._follow_ups.get(di)
        if not chunks:
            return [self._error(frame, "no_such_data")]
        chunk = chunks.pop(0)
        if self.dialect.follow_up_sequence:
            chunk += frame.data[-1:]  # echo the sequence number asked for
        if not chunks:
            del self._follow_ups[di]
        return [self._reply(frame, di + chunk, more=bool(chunks))]

    def _read_address(self, frame: Frame) -> list[Frame]:
        return [self._reply(frame, address_to_wire(self.address))]

    # --- commands ----------------------------------------------------------------------------

    def _authorised(self, frame: Frame, offset: int) -> bool:
        return int.from_bytes(frame.data[offset + 1 : offset + 4], "little") == self.password

    def _write(self, frame: Frame) -> list[Frame]:
        size = self.dialect.di_length
        auth = 4 if self.version == 1997 else 8
        if len(frame.data) < size + auth:
            return [self._error(frame, "other")]
        if not self._authorised(frame, size):
            return [self._error(frame, "unauthorised")]
        item = self._item(frame.data[:size])
        payload = frame.data[size + auth :]
        if item is None:
            return [self._error(frame, "no_such_data")]
        parameter = self.version == 2007 and PARAMETERS.get(item.di) == item
        if not parameter and item.name not in ("date", "time"):
            return [self._error(frame, "other")]
        value = decode_value(item, payload, self.version)
        if parameter and isinstance(value, int):
            self.state.parameters[item.name] = value
            return [self._reply(frame)]
        clock = self.state.clock
        if isinstance(value, dt.time):
            self.state.clock = dt.datetime.combine(clock.date(), value)
        elif isinstance(value, dt.date):
            self.state.clock = dt.datetime.combine(value, clock.time())
        return [self._reply(frame)]

    def _set_time(self, frame: Frame) -> list[Frame]:
        self.state.clock = decode_datetime(frame.data)
        return []

    def _freeze(self, frame: Frame) -> list[Frame]:
        self.freezes += 1
        return [self._reply(frame)]

    def _change_baud(self, frame: Frame) -> list[Frame]:
        by_feature = {feature: baud for baud, feature in BAUD_FEATURES.items()}
        if len(frame.data) != 1 or frame.data[0] not in by_feature:
            return [self._error(frame, "baud_not_changeable")]
        self.baudrate = by_feature[frame.data[0]]
        return [self._reply(frame, frame.data)]

    def _relay(self, frame: Frame) -> list[Frame]:
        command = parse_relay_command(frame.data)
        if command.password != self.password:
            return [self._error(frame, "unauthorised")]
        state, action = self.state, command.action
        if action is None or command.valid_until < state.clock:
            return [self._error(frame, "other")]  # unknown code or an expired command
        if action == "trip":
            if state.keep_power:
                return [self._error(frame, "other")]  # a keep-power meter refuses to trip
            state.relay_closed = False
        elif action in ("close_allowed", "close_direct"):
            # close_allowed waits for the customer's button; the sim presses it at once.
            state.relay_closed = True
        elif action in ("alarm_on", "alarm_off"):
            state.alarm = action == "alarm_on"
        elif action == "keep_power_on":
            state.keep_power = state.relay_closed = True
        else:
            state.keep_power = False
        return [self._reply(frame)]
