"""A simulated Modbus RTU meter (SDM120, SDM630, DDSU666) answering from a `MeterState`.

Sans-I/O: bytes heard on the bus in, reply frames out. The Modbus side is pymodbus's own server
machinery: requests are hunted with `RtuStream` (pymodbus `FramerRTU` + server `DecodePDU`),
executed by the request PDU's `datastore_update` against a pymodbus `SimDevice` datastore
(`SimCore`, what `ModbusSerialServer` uses), and answered through `FramerRTU.buildFrame`.
pymodbus therefore decides exception codes the way its server does: an address outside the
model's map is `ILLEGAL_ADDRESS`, a write to a read-only register too.

The datastore holds exactly the model's register map (plus the short gaps the driver is allowed
to read across) and, unless `documented_only`, the simulator's relay variant
(`modbus_maps.RELAY_MAPS[model]["voltbook-sim"]`). With `documented_only=True` it is a real meter
as its vendor documents it: no relay, and a read touching any other register is refused whole
with exception 0x02 (illegal data address). A pymodbus `SimDevice` action refreshes the
registers from the live `MeterState` on every access and applies writes to the relay command
register to the state, so the load model and the protocol side always share one truth.

pymodbus's datastore API is `async`, but a `SimDevice` without I/O never suspends; `_complete`
runs such a coroutine to its end synchronously, which keeps the responder usable from plain
code and from inside a running event loop alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, cast

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from demo.sim.state import MeterState
from edge.drivers.errors import DriverUsageError
from edge.drivers.modbus_maps import (
    MODELS,
    SIMULATED_RELAY,
    MeterModel,
    Register,
    RegisterTable,
    RelayMap,
    ValueType,
    relay_map,
)
from edge.drivers.modbus_meters import RtuStream

__all__ = ["ModbusResponder"]

T = TypeVar("T")

_F32 = ModbusClientMixin.DATATYPE.FLOAT32
_SUPPORTED_FUNCTIONS = frozenset({3, 4, 6, 16})  # read holding/input, write single/multiple
_TABLE_OF_FUNCTION = {
    3: RegisterTable.HOLDING,
    6: RegisterTable.HOLDING,
    16: RegisterTable.HOLDING,
    4: RegisterTable.INPUT,
}


def _kwh(state: MeterState) -> float:
    return state.energy_mwh / 1_000_000


def _zero(_state: MeterState) -> float:
    return 0.0


# Register name → the MeterState quantity it shows, in Reading units (the register's `scale`
# converts back, e.g. DDSU666 kW). A three-phase meter shows the single simulated load on L1.
_SOURCES: Mapping[str, Callable[[MeterState], float]] = MappingProxyType(
    {
        "voltage": lambda s: s.voltage_v,
        "voltage_l1": lambda s: s.voltage_v,
        "voltage_l2": lambda s: s.voltage_v,
        "voltage_l3": lambda s: s.voltage_v,
        "current": lambda s: s.current_a,
        "current_l1": lambda s: s.current_a,
        "active_power": lambda s: s.power_w,
        "power_l1": lambda s: s.power_w,
        "total_power": lambda s: s.power_w,
        "reactive_power": lambda s: s.reactive_var,
        "apparent_power": lambda s: math.hypot(s.power_w, s.reactive_var),
        "power_factor": lambda s: s.power_factor,
        "power_factor_l1": lambda s: s.power_factor,
        "power_factor_l2": lambda s: 1.0,
        "power_factor_l3": lambda s: 1.0,
        "total_power_factor": lambda s: s.power_factor,
        "frequency": lambda s: s.frequency_hz,
        "import_energy": _kwh,
        "total_energy": _kwh,
    }
)


def _complete(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its result, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as finished:
        return cast(T, finished.value)
    coro.close()
    raise RuntimeError("pymodbus datastore suspended; a simulated meter must not do I/O")


def _sim_rows(model: MeterModel, relay: RelayMap | None, table: RegisterTable) -> list[SimData]:
    """The datastore of one register table: every mapped row, and the gaps reads may span."""
    relay_rows = () if relay is None else relay.registers
    rows = sorted(
        (r for r in (*model.registers, *relay_rows) if r.table is table),
        key=lambda r: r.address,
    )
    sim: list[SimData] = []
    previous_end: int | None = None
    for reg in rows:
        if previous_end is not None and 0 < reg.address - previous_end <= model.max_gap:
            gap = reg.address - previous_end
            sim.append(SimData(previous_end, count=gap, datatype=DataType.REGISTERS, readonly=True))
        writable = relay is not None and reg is relay.command
        if reg.value_type is ValueType.FLOAT32:
            sim.append(SimData(reg.address, values=0.0, datatype=DataType.FLOAT32, readonly=True))
        else:
            sim.append(
                SimData(reg.address, values=0, datatype=DataType.UINT16, readonly=not writable)
            )
        previous_end = reg.end
    # pymodbus needs a non-empty block per table; one invalid word answers ILLEGAL_ADDRESS.
    return sim or [SimData(0, datatype=DataType.INVALID)]


class ModbusResponder:
    """The protocol side of one simulated Modbus meter (`edge.drivers.base.Responder`)."""

    def __init__(
        self, state: MeterState, model: str, unit_id: int, *, documented_only: bool = False
    ) -> None:
        if model not in MODELS:
            raise DriverUsageError(f"unknown Modbus meter model {model!r}")
        if not 1 <= unit_id <= 247:
            raise DriverUsageError(f"Modbus unit id must be 1..247, got {unit_id}")
        self.state = state
        self.model = MODELS[model]
        self.unit_id = unit_id
        self.relay: RelayMap | None = None if documented_only else relay_map(model, SIMULATED_RELAY)
        self._stream = RtuStream(is_server=True, units=(unit_id, 0))
        self._framer = FramerRTU(DecodePDU(True))
        no_bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        device = SimDevice(
            id=unit_id,
            simdata=(
                no_bits,
                list(no_bits),
                _sim_rows(self.model, self.relay, RegisterTable.HOLDING),
                _sim_rows(self.model, self.relay, RegisterTable.INPUT),
            ),
            action=self._on_access,
        )
        self._core = SimCore(device)

    def feed(self, data: bytes) -> list[bytes]:
        self._stream.feed(data)
        replies: list[bytes] = []
        while (frame := self._stream.next_frame()) is not None:
            if frame.unit not in (self.unit_id, 0):
                continue
            response = self._answer(frame.function_code, frame.pdu)
            if frame.unit == 0 or response is None:
                continue  # broadcasts are executed but never answered
            response.dev_id = self.unit_id
            response.transaction_id = 0
            replies.append(self._framer.buildFrame(response))
        return replies

    def _answer(self, function_code: int, pdu: ModbusPDU | None) -> ModbusPDU | None:
        if function_code not in _SUPPORTED_FUNCTIONS:
            return ExceptionResponse(function_code, ExcCodes.ILLEGAL_FUNCTION)
        if pdu is None:  # well framed but wrong (e.g. count 0 or > 125)
            return ExceptionResponse(function_code, ExcCodes.ILLEGAL_VALUE)
        # pymodbus's own server passes a SimCore here too; the annotation predates SimCore.
        return _complete(pdu.datastore_update(self._core, self.unit_id))  # type: ignore[arg-type]

    async def _on_access(  # noqa: PLR0917 (the signature is pymodbus's SimAction)
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus `SimDevice` action: refresh from the state, apply relay commands to it."""
        table = _TABLE_OF_FUNCTION[function_code]
        relay = self.relay
        if set_values is not None and relay is not None:
            command = relay.command.address - address
            if 0 <= command < len(set_values):
                value = int(set_values[command])
                if value == relay.trip_value:
                    self.state.relay_closed = False
                elif value == relay.close_value:
                    self.state.relay_closed = True
                else:
                    return ExcCodes.ILLEGAL_VALUE
        shown = self.model.registers if relay is None else (*self.model.registers, relay.state)
        for reg in shown:
            if reg.table is table:
                self._show(reg, registers, reg.address - start_address)
        return None

    def _show(self, reg: Register, registers: list[int], offset: int) -> None:
        relay = self.relay
        if relay is not None and reg is relay.state:
            registers[offset] = relay.closed_state if self.state.relay_closed else relay.open_state
            return
        value = _SOURCES.get(reg.name, _zero)(self.state) / reg.scale
        words = ModbusClientMixin.convert_to_registers(value, _F32, word_order="big")
        registers[offset : offset + len(words)] = words
