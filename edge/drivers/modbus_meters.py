"""Modbus RTU energy meters (SDM120, SDM630, DDSU666): sans-I/O drivers over pymodbus.

pymodbus does all the Modbus: request PDUs are its message classes, frames and CRCs come from
its `FramerRTU`, replies are decoded by its `DecodePDU`, float32 words by
`ModbusClientMixin.convert_from_registers`. What Voltbook adds is the part a shared RS-485 bus
needs and a timing-based client does not: a *hunt* for the reply among line noise and other
meters' frames, fed whatever bytes arrived, with no clock.

RTU frame (pymodbus `framer/rtu.py`)::

    [ silence ≥ 3.5 chars ][ unit id ][ function ][ data ... ][ CRC lo ][ CRC hi ]
                              1 B        1 B        N B         2 B (CRC-16/Modbus)

    read request   01 04 00 48 00 02 F1 DD        unit 1, fn 04, start 0x0048, count 2
    read reply     01 04 04 <4 data bytes> CRC     byte count, then count×2 bytes
    exception      01 84 02 CRC                    fn | 0x80, exception code

Why our own hunt: `FramerRTU.decode` settles on the first offset whose function byte it knows
and throws the *whole* buffer away if that candidate's CRC fails. Behind line noise that
starts with a plausible unit/function pair, that would drop the real reply too. `RtuStream`
asks the same pymodbus pieces (PDU class lookup, frame size, `FramerRTU.check_CRC`) at every
offset, skips one byte after a CRC failure, and keeps a partial candidate only until a complete
valid frame behind it proves it was garbage. It judges each offset once, as its bytes arrive,
so noise costs per byte, not per byte buffered (see `RtuStream`).

Energy: the kWh float32 is converted to integer Wh once, here, with its quantisation bound
(`float32_kwh_to_wh`): half a float32 ULP at that magnitude plus our rounding to whole Wh,
rounded up. At 1 000 000 kWh that is 32 Wh, inside the 0.1 kWh the seed allows.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteSingleRegisterRequest,
)

from edge.drivers.base import Conversation, SerialSettings
from edge.drivers.errors import (
    ChecksumError,
    DriverUsageError,
    FrameError,
    MeterRefused,
    MeterTimeout,
    PeerError,
    RelayNotConfirmed,
    UnsupportedOperation,
)
from edge.drivers.modbus_maps import (
    DDSU666_MAP,
    EXCEPTION_REASONS,
    MAX_READ_REGISTERS,
    RELAY_MAPS,
    SDM120_MAP,
    SDM630_MAP,
    BlockSpec,
    MeterModel,
    Register,
    RegisterTable,
    RelayMap,
    ValueType,
)
from edge.drivers.reading import Reading, RelayState
from ledger.units import Wh

__all__ = [
    "DDSU666",
    "SDM120",
    "SDM630",
    "ModbusMeter",
    "ModbusTransaction",
    "ReadSpan",
    "RtuFrame",
    "RtuStream",
    "float32_kwh_to_wh",
    "parse_unit_id",
    "plan_reads",
]

# The slowest documented turnaround of these meters is well under 100 ms; 200 ms leaves room
# for a USB RS-485 adapter's latency on top.
TURNAROUND_S = 0.2
INTER_FRAME_CHARS = 3.5  # Modbus RTU: a frame ends after 3.5 character times of silence

_RTU_MIN_SIZE = FramerRTU.MIN_SIZE
_RTU_MAX_SIZE = FramerRTU.MAX_SIZE
# Enough bytes to size any PDU pymodbus knows (its deepest byte-count position is 10).
_SIZING_WINDOW = 16
_DROP_BATCH = 64  # judged bytes dropped from the hunt's buffer at once
_F32 = ModbusClientMixin.DATATYPE.FLOAT32
_READ_REQUESTS: dict[RegisterTable, type[ReadHoldingRegistersRequest]] = {
    RegisterTable.HOLDING: ReadHoldingRegistersRequest,
    RegisterTable.INPUT: ReadInputRegistersRequest,
}
# What can go wrong inside pymodbus when it sizes or decodes hostile bytes; anything else is a
# bug and must propagate.
_PYMODBUS_PARSE_ERRORS = (ModbusException, IndexError, KeyError, ValueError, struct.error)


def parse_unit_id(address: str) -> int:
    """Modbus unit id from a meter address string ("1".."247"); broadcast 0 is not a meter."""
    text = address.strip()
    if not text.isdigit() or not 1 <= int(text) <= 247:
        raise DriverUsageError(f"Modbus unit id must be 1..247, got {address!r}", address=address)
    return int(text)


# --- framing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """One CRC-valid RTU frame: the unit it names, its PDU, the raw bytes.

    `pdu` is None when the CRC holds but pymodbus cannot decode the PDU (a count out of range,
    a byte count that disagrees with the length): well framed, but wrong.
    """

    unit: int
    function_code: int
    pdu: ModbusPDU | None
    raw: bytes


class RtuStream:
    """Sans-I/O RTU frame hunter: `feed()` any bytes, `next_frame()` until it returns None.

    `is_server=False` decodes replies (a master's view), `True` decodes requests (a meter's).
    Frames for every unit come out; picking ours is the caller's business.

    The hunt is incremental, so a noisy line costs about what the bytes cost, not what the
    buffer holds: every offset is judged once when it has arrived (`_scan` marks how far), an
    offset whose next byte is no function code is skipped by a regex at C speed, a candidate
    is sized once its first bytes are in (again only if its size depended on bytes not yet
    there) and its CRC is checked once, when its last byte arrives. Candidates waiting for
    bytes sit in a heap by the position they wait for. Offsets are absolute positions in the
    stream, so dropping rejected bytes from the buffer's front renumbers nothing.
    """

    # Nothing on a bus is longer than one frame; more than a few frames of unparsed bytes is
    # noise we stop hunting through.
    _MAX_BUFFER = 4 * _RTU_MAX_SIZE

    def __init__(self, *, is_server: bool, units: Iterable[int] | None = None) -> None:
        self._decoder = DecodePDU(is_server)
        self._frame_starts = _frame_start_pattern(self._decoder, units)
        self._buffer = bytearray()
        self._base = 0  # stream position of self._buffer[0]
        self._scan = 0  # first stream position not yet judged as a frame start
        self._waiting: list[tuple[int, int]] = []  # heap of (judge again at, candidate start)
        # The last complete candidate whose CRC failed, by the unit byte it starts with (bounded:
        # a responder's stream lives as long as the bus).
        self.crc_failures: dict[int, bytes] = {}

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._MAX_BUFFER:
            self._drop_before(self._base + len(self._buffer) - self._MAX_BUFFER)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _drop_before(self, position: int) -> None:
        """Forget the stream before `position`: its bytes and any candidate starting there."""
        if position <= self._base:
            return
        del self._buffer[: position - self._base]
        self._base = position
        self._scan = max(self._scan, position)
        if self._waiting and min(start for _at, start in self._waiting) < position:
            self._waiting = [w for w in self._waiting if w[1] >= position]
            heapq.heapify(self._waiting)

    def _frame_size(self, index: int) -> int | None:
        """Size the candidate at buffer `index` claims: None if it is no frame start, 0 if it
        cannot tell yet."""
        window = bytes(self._buffer[index : index + _SIZING_WINDOW])
        try:
            pdu_class = self._decoder.lookupPduClass(window)
            if pdu_class is None:
                return None
            size = pdu_class.calculateRtuFrameSize(window)
        except _PYMODBUS_PARSE_ERRORS:
            return None
        return size if size == 0 or size >= _RTU_MIN_SIZE else None

    def _judge(self, start: int) -> RtuFrame | None:
        """A frame if the candidate at stream position `start` is one; else reject it or
        park it until the bytes it waits for have arrived."""
        end = self._base + len(self._buffer)
        size = self._frame_size(start - self._base)
        if size is None:
            return None
        sized_for_good = end - start >= _SIZING_WINDOW  # later bytes cannot change the size
        if size == 0:
            if sized_for_good:
                return None  # a whole sizing window and still no size: no frame of pymodbus's
            heapq.heappush(self._waiting, (end + 1, start))
        elif start + size > end:
            at = start + size if sized_for_good else min(start + size, start + _SIZING_WINDOW)
            heapq.heappush(self._waiting, (at, start))
        else:
            return self._checked(start, size)
        return None

    def _checked(self, start: int, size: int) -> RtuFrame | None:
        """The complete candidate at `start` as a frame if its CRC holds (pymodbus's check)."""
        index = start - self._base
        raw = bytes(self._buffer[index : index + size])
        crc = (raw[-2] << 8) | raw[-1]
        if not FramerRTU.check_CRC(raw[:-2], crc):
            self.crc_failures[raw[0]] = raw
            return None
        self._drop_before(start + size)
        pdu_bytes = raw[1:-2]
        pdu: ModbusPDU | None
        try:
            pdu = self._decoder.decode(pdu_bytes)
        except _PYMODBUS_PARSE_ERRORS:
            pdu = None
        if pdu is not None:
            pdu.dev_id = raw[0]
        return RtuFrame(raw[0], pdu_bytes[0], pdu, raw)

    def next_frame(self) -> RtuFrame | None:
        end = self._base + len(self._buffer)
        if self._waiting and self._waiting[0][0] <= end:
            frame = self._judge_ready(end)
            if frame is not None:
                return frame
        last = end - _RTU_MIN_SIZE  # the last position that can hold a whole frame
        if self._scan <= last:
            start = self._scan - self._base
            if self._frame_starts.search(self._buffer, start, last + 2 - self._base) is None:
                self._scan = last + 1  # the common case on noise: nothing here can start one
            else:
                frame = self._hunt(last)
                if frame is not None:
                    return frame
        # Bytes before every live candidate and the scan are judged: drop them, a batch at a
        # time (the buffer stays bounded; a byte is not moved once per byte).
        oldest = self._scan
        for _at, waiting in self._waiting:
            oldest = min(oldest, waiting)
        if oldest - self._base >= _DROP_BATCH:
            self._drop_before(oldest)
        return None

    def _judge_ready(self, end: int) -> RtuFrame | None:
        """Judge the candidates whose awaited bytes are in, earliest start first: an earlier
        complete frame comes out before a later one, as on the line."""
        ready: list[int] = []
        while self._waiting and self._waiting[0][0] <= end:
            ready.append(heapq.heappop(self._waiting)[1])
        ready.sort()
        for i, start in enumerate(ready):
            frame = self._judge(start)
            if frame is not None:
                for later in ready[i + 1 :]:  # judged again at the next call, if still there
                    if later >= self._base:
                        heapq.heappush(self._waiting, (later, later))
                return frame
        return None

    def _hunt(self, last: int) -> RtuFrame | None:
        """Judge the new frame starts up to stream position `last`."""
        find = self._frame_starts.search
        while self._scan <= last:
            # Where a (wanted) unit byte is followed by a byte that can be a function code.
            match = find(self._buffer, self._scan - self._base, last + 2 - self._base)
            if match is None:
                self._scan = last + 1
                return None
            start = self._base + match.start()
            self._scan = start + 1
            frame = self._judge(start)
            if frame is not None:
                return frame
        return None


def _frame_start_pattern(decoder: DecodePDU, units: Iterable[int] | None) -> re.Pattern[bytes]:
    """A regex matching the first two bytes a frame can start with: a unit byte (any, or one of
    `units`), then a byte `decoder` may take as a function code (any exception, high bit set,
    and every code it has a PDU class for on its side)."""
    side = decoder.pdu_inx
    codes = [fc for fc, pair in decoder.pdu_table.items() if 0 < fc < 0x80 and pair[side]]
    codes += range(0x80, 0x100)
    unit = b"(?s:.)" if units is None else _byte_class(units)
    return re.compile(unit + _byte_class(codes))


def _byte_class(values: Iterable[int]) -> bytes:
    return b"[" + b"".join(re.escape(bytes([v])) for v in sorted(set(values))) + b"]"


def build_frame(pdu: ModbusPDU) -> bytes:
    """The RTU bytes of a PDU (unit id from `pdu.dev_id`), framed and CRC'd by pymodbus."""
    return FramerRTU(DecodePDU(False)).buildFrame(pdu)


# --- transactions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadSpan:
    """One read request: a run of registers in one table, at most 125 words."""

    table: RegisterTable
    address: int
    count: int
    registers: tuple[Register, ...]


def plan_reads(
    registers: Iterable[Register], *, max_gap: int = 0, max_count: int = MAX_READ_REGISTERS
) -> tuple[ReadSpan, ...]:
    """Group registers into as few reads as the rules allow: one table per read, at most
    `max_count` words, spanning at most `max_gap` unlisted words between two rows."""
    spans: list[ReadSpan] = []
    rows = sorted(set(registers), key=lambda r: (r.table, r.address))
    for reg in rows:
        last = spans[-1] if spans else None
        if last is not None and last.table == reg.table:
            end = last.address + last.count
            new_end = max(end, reg.end)
            if reg.address - end <= max_gap and new_end - last.address <= max_count:
                spans[-1] = ReadSpan(
                    last.table, last.address, new_end - last.address, (*last.registers, reg)
                )
                continue
        spans.append(ReadSpan(reg.table, reg.address, reg.words, (reg,)))
    return tuple(spans)


class ModbusTransaction:
    """One request to one unit and the hunt for its reply (`edge.drivers.base.Exchange`)."""

    def __init__(
        self,
        request: ModbusPDU,
        *,
        settings: SerialSettings,
        reply_size: int,
        item: str,
        check: Callable[[ModbusPDU], str | None],
    ) -> None:
        self._pdu = request
        self._unit = request.dev_id
        self._request = build_frame(request)
        self._settings = settings
        self._reply_size = reply_size
        self._item = item
        self._check = check  # returns why a reply of the right function is wrong, or None
        # Only this unit's frames: another meter's reply or noise that names another unit is
        # skipped at C speed (a noisy line costs per byte, not per candidate).
        self._stream = RtuStream(is_server=False, units=(self._unit,))
        self._reply: ModbusPDU | None = None
        self._error: PeerError | None = None
        self._received = 0

    @property
    def address(self) -> str:
        return str(self._unit)

    @property
    def request(self) -> bytes:
        return self._request

    @property
    def expects_reply(self) -> bool:
        return self._unit != 0

    @property
    def reply_timeout(self) -> float:
        return TURNAROUND_S + (INTER_FRAME_CHARS + self._reply_size) * self._settings.byte_time

    def feed(self, data: bytes) -> None:
        if self._reply is not None or self._error is not None:
            return
        self._received += len(data)
        stream = self._stream
        stream.feed(data)
        # Called for every read of a noisy line: kept to attribute tests, no method calls.
        while self._reply is None and self._error is None:
            frame = stream.next_frame()
            if frame is None:
                return
            if frame.unit != self._unit:
                continue  # another meter's reply, or a request of another master
            if frame.pdu is None:
                if frame.function_code & 0x7F != self._pdu.function_code:
                    continue  # not an answer to this request
                self._error = FrameError(
                    f"reply not decodable: {frame.raw.hex(' ')}",
                    address=self.address,
                    item=self._item,
                )
            else:
                self._accept(frame.pdu)

    def _accept(self, pdu: ModbusPDU) -> None:
        function = self._pdu.function_code
        if isinstance(pdu, ExceptionResponse) and pdu.function_code == function | 0x80:
            code = pdu.exception_code
            reason = EXCEPTION_REASONS.get(code, f"exception 0x{code:02X}")
            self._error = MeterRefused((reason,), code=code, address=self.address, item=self._item)
        elif pdu.function_code == function and not isinstance(pdu, ExceptionResponse):
            problem = self._check(pdu)
            if problem is None:
                self._reply = pdu
            else:
                self._error = FrameError(problem, address=self.address, item=self._item)
        # Anything else from this unit answers some other request (a stale reply, or our own
        # request echoed by the adapter): not ours, keep hunting.

    def done(self) -> bool:
        return self._reply is not None or self._error is not None

    def result(self) -> ModbusPDU:
        if self._error is not None:
            raise self._error
        if self._reply is not None:
            return self._reply
        corrupt = self._stream.crc_failures.get(self._unit)
        # Part of our own request, echoed by the adapter, is no corrupt reply.
        if corrupt is not None and corrupt not in self._request:
            raise ChecksumError(
                f"reply failed its CRC: {corrupt.hex(' ')}", address=self.address, item=self._item
            )
        raise MeterTimeout(
            f"no reply ({self._received} bytes heard)", address=self.address, item=self._item
        )


def read_transaction(unit: int, span: ReadSpan, settings: SerialSettings) -> ModbusTransaction:
    request = _READ_REQUESTS[span.table](address=span.address, count=span.count, dev_id=unit)

    def check(reply: ModbusPDU) -> str | None:
        if len(reply.registers) != span.count:
            return f"asked for {span.count} registers, got {len(reply.registers)}"
        return None

    names = ",".join(r.name for r in span.registers)
    return ModbusTransaction(
        request, settings=settings, reply_size=5 + 2 * span.count, item=names, check=check
    )


def write_transaction(
    unit: int, register: Register, value: int, settings: SerialSettings
) -> ModbusTransaction:
    request = WriteSingleRegisterRequest(address=register.address, registers=[value], dev_id=unit)

    def check(reply: ModbusPDU) -> str | None:
        # Function 06 answers with an echo of the request; anything else was not applied.
        if reply.address != register.address or list(reply.registers) != [value]:
            return f"write echo {reply.address:#06x}={list(reply.registers)} differs"
        return None

    return ModbusTransaction(
        request, settings=settings, reply_size=8, item=register.name, check=check
    )


# --- values ------------------------------------------------------------------------------


def _float32_ulp(value: float) -> Fraction:
    """Spacing of float32 values at |value| (towards larger magnitude), exactly."""
    magnitude = abs(value)
    if magnitude < 2.0**-126:  # subnormal float32: fixed spacing
        return Fraction(1, 2**149)
    _mantissa, exponent = math.frexp(magnitude)  # magnitude = m·2**e, 0.5 <= m < 1
    return Fraction(2) ** (exponent - 24)


def float32_kwh_to_wh(kwh: float, *, address: str, item: str = "energy") -> tuple[Wh, int]:
    """A float32 kWh register value as integer Wh and the bound on its error, in Wh.

    The bound is half a float32 ULP at that magnitude (how far the meter's true count may be
    from the float it sent) plus our rounding to whole Wh, rounded up. Computed with exact
    fractions so the bound is never itself a float rounding.
    """
    if math.isnan(kwh) or math.isinf(kwh):
        raise PeerError(f"energy register is {kwh}, not a number", address=address, item=item)
    if kwh < 0:
        raise PeerError(f"energy register is negative ({kwh} kWh)", address=address, item=item)
    exact_wh = Fraction(kwh) * 1000
    wh = round(exact_wh)
    bound = abs(exact_wh - wh) + _float32_ulp(kwh) * 1000 / 2
    return Wh(wh), math.ceil(bound)


def _decode_span(span: ReadSpan, words: list[int], *, address: str) -> dict[str, float]:
    """Register values of one read, by register name, scaled to the Reading's units."""
    values: dict[str, float] = {}
    for reg in span.registers:
        offset = reg.address - span.address
        chunk = words[offset : offset + reg.words]
        if reg.value_type is ValueType.FLOAT32:
            raw = ModbusClientMixin.convert_from_registers(chunk, _F32, word_order="big")
            assert isinstance(raw, float)  # FLOAT32 always converts to one float
            value = raw
        else:
            value = float(chunk[0])
        if math.isnan(value) or math.isinf(value):
            raise PeerError(f"register is {value}, not a number", address=address, item=reg.name)
        values[reg.name] = value * reg.scale if reg.scale != 1.0 else value
    return values


# --- drivers -----------------------------------------------------------------------------


class ModbusMeter:
    """A Modbus RTU meter model, driven entirely by its `MeterModel` table.

    `relay` is the relay row of the meters' variant (`modbus_maps.RELAY_MAPS`), `per_meter`
    the row (or None) of meters whose variant differs, by unit id ("1".."247"). A meter without
    one is read from its documented registers only (`Reading.relay` None) and a relay command
    to it is refused with `UnsupportedOperation`.
    """

    def __init__(
        self,
        model: MeterModel,
        settings: SerialSettings | None = None,
        *,
        relay: RelayMap | None = None,
        per_meter: Mapping[str, RelayMap | None] | None = None,
    ) -> None:
        self.model = model
        self.settings = settings or model.default_settings
        self.relay_map = relay
        self.per_meter: Mapping[str, RelayMap | None] = MappingProxyType(dict(per_meter or {}))

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def default_settings(self) -> SerialSettings:
        return self.model.default_settings

    @property
    def blocks(self) -> frozenset[str]:
        """The blocks of a meter of the bus's variant (one that differs may have fewer)."""
        return frozenset(b.name for b in self.model.blocks if b.fields or self.relay_map)

    @property
    def items(self) -> frozenset[str]:
        return self.model.items

    def with_blocks(self, blocks: Mapping[str, tuple[str, ...]]) -> ModbusMeter:
        """This meter with site-defined blocks too (fields from `items`, checked)."""
        for name, fields in blocks.items():
            unknown = sorted(set(fields) - self.items)
            if unknown or not fields:
                raise DriverUsageError(
                    f"{self.name} cannot read {unknown or 'nothing'} in a block", item=name
                )
        kept = tuple(b for b in self.model.blocks if b.name not in blocks)
        added = tuple(BlockSpec(name, tuple(fields)) for name, fields in blocks.items())
        model = dataclasses.replace(self.model, blocks=kept + added)
        return ModbusMeter(model, self.settings, relay=self.relay_map, per_meter=self.per_meter)

    def relay_for(self, address: str) -> RelayMap | None:
        """The relay row of the meter at unit `address`."""
        return self.per_meter.get(address, self.relay_map)

    def _no_relay(self, what: str, address: str | None = None) -> UnsupportedOperation:
        return UnsupportedOperation(
            f"{self.name} has no relay map: cannot {what} (documented registers have no relay;"
            " name the meter's relay variant as `relay` in site.toml, known:"
            f" {', '.join(RELAY_MAPS.get(self.name, {})) or 'none'}; a vendor's variant is a"
            " row of modbus_maps.RELAY_MAPS)",
            address=address,
            item="relay",
        )

    def plan(self, block: str, address: str | None = None) -> tuple[ReadSpan, ...]:
        """The reads one block takes, in order, for the meter at unit `address` (None: a meter
        of the bus's variant)."""
        spec = self.model.block(block)
        if spec is None:
            known = ", ".join(sorted(self.blocks))
            raise DriverUsageError(f"{self.name} has no block {block!r} (known: {known})")
        relay = self.relay_map if address is None else self.relay_for(address)
        if not spec.fields and relay is None:
            raise self._no_relay(f"read block {block!r}", address)
        wanted: list[Register] = []
        for field_name in spec.fields:
            if field_name == "energy_wh":
                wanted.append(self.model.register(self.model.energy))
            elif (fs := self.model.field_spec(field_name)) is not None:
                wanted.extend(self.model.register(name) for name in fs.registers)
        if spec.relay and relay is not None:
            wanted.append(relay.state)
        return plan_reads(wanted, max_gap=self.model.max_gap)

    def read(self, address: str, block: str = "basic") -> Conversation[Reading]:
        unit = parse_unit_id(address)
        spans = self.plan(block, str(unit))  # validates the block before the first request
        return self._read(unit, block, spans)

    def _read(self, unit: int, block: str, spans: tuple[ReadSpan, ...]) -> Conversation[Reading]:
        address = str(unit)
        values: dict[str, float] = {}
        for span in spans:
            tx = yield read_transaction(unit, span, self.settings)
            reply = tx.result()
            values.update(_decode_span(span, list(reply.registers), address=address))
        return self._reading(address, block, values)

    def _reading(self, address: str, block: str, values: dict[str, float]) -> Reading:
        spec = self.model.block(block)
        assert spec is not None  # checked by plan()
        fields: dict[str, float] = {}
        for fs in self.model.fields:
            if fs.field in spec.fields:
                fields[fs.field] = fs.combine([values[name] for name in fs.registers])
        energy_wh: Wh | None = None
        error_wh = 0
        if "energy_wh" in spec.fields:
            energy_wh, error_wh = float32_kwh_to_wh(
                values[self.model.energy], address=address, item=self.model.energy
            )
        relay = None
        relay_map = self.relay_for(address)
        if spec.relay and relay_map is not None:
            relay = self._relay_state(relay_map, values[relay_map.state.name], address)
        return Reading(
            address=address,
            energy_wh=energy_wh,
            energy_error_wh=error_wh,
            voltage_v=fields.get("voltage_v"),
            current_a=fields.get("current_a"),
            power_w=fields.get("power_w"),
            reactive_var=fields.get("reactive_var"),
            power_factor=fields.get("power_factor"),
            frequency_hz=fields.get("frequency_hz"),
            relay=relay,
        )

    @staticmethod
    def _relay_state(relay: RelayMap, raw: float, address: str) -> RelayState:
        if raw == relay.open_state:
            return RelayState.OPEN
        if raw == relay.closed_state:
            return RelayState.CLOSED
        raise PeerError(f"relay state register reads {raw:g}", address=address, item="relay")

    def relay(self, address: str, action: Literal["trip", "close"]) -> Conversation[RelayState]:
        unit = parse_unit_id(address)
        if action not in ("trip", "close"):
            raise DriverUsageError(f"relay action must be trip or close, got {action!r}")
        relay_map = self.relay_for(str(unit))
        if relay_map is None:
            raise self._no_relay(action, address=str(unit))
        return self._relay(unit, action, relay_map)

    def _relay(
        self, unit: int, action: Literal["trip", "close"], relay: RelayMap
    ) -> Conversation[RelayState]:
        value = relay.trip_value if action == "trip" else relay.close_value
        tx = yield write_transaction(unit, relay.command, value, self.settings)
        tx.result()
        reading = yield from self._read(unit, "relay", self.plan("relay", str(unit)))
        wanted = RelayState.OPEN if action == "trip" else RelayState.CLOSED
        if reading.relay is not wanted:
            raise RelayNotConfirmed(
                f"{action} acknowledged but relay reads {reading.relay}",
                address=str(unit),
                item="relay",
            )
        return wanted

    def read_registers(
        self, address: str, table: RegisterTable, start: int, count: int
    ) -> Conversation[list[int]]:
        """Raw words of any register run (commissioning, diagnostics)."""
        unit = parse_unit_id(address)
        if not 1 <= count <= MAX_READ_REGISTERS or not 0 <= start <= 0xFFFF - count + 1:
            raise DriverUsageError(f"bad register run {start:#06x}+{count}", address=address)
        span = ReadSpan(table, start, count, ())
        return self._read_raw(unit, span)

    def _read_raw(self, unit: int, span: ReadSpan) -> Conversation[list[int]]:
        tx = yield read_transaction(unit, span, self.settings)
        return list(tx.result().registers)


class SDM120(ModbusMeter):
    def __init__(
        self, settings: SerialSettings | None = None, *, relay: RelayMap | None = None
    ) -> None:
        super().__init__(SDM120_MAP, settings, relay=relay)


class SDM630(ModbusMeter):
    def __init__(
        self, settings: SerialSettings | None = None, *, relay: RelayMap | None = None
    ) -> None:
        super().__init__(SDM630_MAP, settings, relay=relay)


class DDSU666(ModbusMeter):
    def __init__(
        self, settings: SerialSettings | None = None, *, relay: RelayMap | None = None
    ) -> None:
        super().__init__(DDSU666_MAP, settings, relay=relay)
