"""A register-level SX127x stand-in behind fake `spidev` and `RPi.GPIO`, so the real pyLoRa
library runs on any machine.

pyLoRa opens its SPI devices and imports `RPi.GPIO` when `SX127x.LoRa` is imported, so
`install_fake_board(medium)` puts the fakes into `sys.modules` first (and forgets any cached
`SX127x*` modules, so the next import binds to this board); `FakeBoard.restore()` undoes it.

    pyLoRa ── spidev.SpiDev().xfer([addr|0x80, v, …]) ──▶ Sx127xStandIn ──▶ RadioMedium
    BOARD.setup / reset / add_event_detect ──▶ fake RPi.GPIO (recorded; RST low resets a chip)

SPI as the chip does it: the first byte is the address, bit 7 set for a write; further bytes
auto-increment the address, except at RegFifo (0x00) where they stream through the FIFO at
RegFifoAddrPtr. A write returns the old contents. Modelled behaviour:

- RegOpMode (0x01) in LoRa mode: SLEEP/STDBY idle; TX sends RegPayloadLength bytes from
  RegFifoTxBaseAddr on the medium with the configured modulation and raises TxDone after the
  time on air, back to STDBY; RXCONT/RXSINGLE listen (RXSINGLE stops after one packet or
  RegSymbTimeout symbols, RxTimeout); CAD raises CadDone (+ CadDetected if a preamble is on
  the channel) after two symbols, back to STDBY.
- A packet received is written to the FIFO from RegFifoRxBaseAddr on; RegFifoRxCurrentAddr,
  RegRxNbBytes, RegPktSnrValue (two's complement, ¼ dB) and RegPktRssiValue (−164 dBm offset,
  the low-frequency port) are set; RxDone, ValidHeader (and PayloadCrcError) raised.
- RegIrqFlags (0x12) clears the bits written as 1; RegIrqFlagsMask hides flags; RegRssiValue
  reads the live channel level; RegVersion reads 0x12.
"""

from __future__ import annotations

import errno
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from demo.sim.radio_medium import Modulation, RadioMedium, Reception
from edge.drivers.lora import BANDWIDTHS_HZ

# Registers (LoRa page), as in the SX1276 datasheet and pyLoRa's constants.
REG_FIFO = 0x00
REG_OP_MODE = 0x01
REG_FRF_MSB, REG_FRF_MID, REG_FRF_LSB = 0x06, 0x07, 0x08
REG_PA_CONFIG = 0x09
REG_FIFO_ADDR_PTR = 0x0D
REG_FIFO_TX_BASE_ADDR = 0x0E
REG_FIFO_RX_BASE_ADDR = 0x0F
REG_FIFO_RX_CURRENT_ADDR = 0x10
REG_IRQ_FLAGS_MASK = 0x11
REG_IRQ_FLAGS = 0x12
REG_RX_NB_BYTES = 0x13
REG_PKT_SNR_VALUE = 0x19
REG_PKT_RSSI_VALUE = 0x1A
REG_RSSI_VALUE = 0x1B
REG_MODEM_CONFIG_1 = 0x1D
REG_MODEM_CONFIG_2 = 0x1E
REG_SYMB_TIMEOUT_LSB = 0x1F
REG_PREAMBLE_MSB, REG_PREAMBLE_LSB = 0x20, 0x21
REG_PAYLOAD_LENGTH = 0x22
REG_MAX_PAYLOAD_LENGTH = 0x23
REG_FIFO_RX_BYTE_ADDR = 0x25
REG_MODEM_CONFIG_3 = 0x26
REG_SYNC_WORD = 0x39
REG_VERSION = 0x42
REG_PA_DAC = 0x4D

# RegIrqFlags bits.
IRQ_RX_TIMEOUT = 0x80
IRQ_RX_DONE = 0x40
IRQ_PAYLOAD_CRC_ERROR = 0x20
IRQ_VALID_HEADER = 0x10
IRQ_TX_DONE = 0x08
IRQ_CAD_DONE = 0x04
IRQ_CAD_DETECTED = 0x01

# RegOpMode: bit 7 LongRangeMode (LoRa), bits 2..0 the mode.
LONG_RANGE_MODE = 0x80
MODE_SLEEP, MODE_STDBY, MODE_TX, MODE_RXCONT, MODE_RXSINGLE, MODE_CAD = 0, 1, 3, 5, 6, 7

SX1276_VERSION = 0x12
RSSI_OFFSET_LF_DBM = 164  # RSSI = −164 + register on the low-frequency port (470 MHz)
FXOSC_HZ = 32_000_000
CAD_SYMBOLS = 2  # an SX127x CAD lasts about two symbols

# Reset values (SX1276 datasheet, LoRa page) that pyLoRa reads back before changing them.
_RESET_VALUES = {
    REG_OP_MODE: 0x09,
    REG_FRF_MSB: 0x6C,
    REG_FRF_MID: 0x80,
    REG_FRF_LSB: 0x00,
    REG_PA_CONFIG: 0x4F,
    0x0A: 0x09,  # RegPaRamp
    0x0B: 0x2B,  # RegOcp
    0x0C: 0x20,  # RegLna
    REG_FIFO_TX_BASE_ADDR: 0x80,
    REG_MODEM_CONFIG_1: 0x72,
    REG_MODEM_CONFIG_2: 0x70,
    REG_SYMB_TIMEOUT_LSB: 0x64,
    REG_PREAMBLE_LSB: 0x08,
    REG_PAYLOAD_LENGTH: 0x01,
    REG_MAX_PAYLOAD_LENGTH: 0xFF,
    0x24: 0x00,  # RegHopPeriod
    0x31: 0xC3,  # RegDetectOptimize
    0x33: 0x27,  # RegInvertIQ
    0x37: 0x0A,  # RegDetectionThreshold
    REG_SYNC_WORD: 0x12,
    REG_VERSION: SX1276_VERSION,
    0x4B: 0x09,  # RegTcxo
    REG_PA_DAC: 0x84,
}

# Status and packet registers the host cannot write.
_READ_ONLY = frozenset(
    {REG_FIFO_RX_CURRENT_ADDR, REG_RX_NB_BYTES, REG_FIFO_RX_BYTE_ADDR, REG_VERSION}
    | set(range(0x14, 0x1D))
    | {0x28, 0x29, 0x2A, 0x2C}
)


class Sx127xStandIn:
    """One SX127x on the medium, driven through its registers like the real chip."""

    def __init__(self, medium: RadioMedium, name: str) -> None:
        self._medium = medium
        self._name = name
        self.registers = bytearray(0x80)
        self.fifo = bytearray(256)
        self.spi_log: list[tuple[int, ...]] = []  # every SPI transfer, as the host sent it
        self.register_writes: list[tuple[int, int]] = []  # (register, value), FIFO excluded
        self.transmitted: list[bytes] = []
        self._generation = 0  # bumped on every mode change; stale timers check it
        self._listening_since: float | None = None
        self._rx_write_ptr = 0
        self.reset()
        medium.attach(self)

    def reset(self) -> None:
        self.registers[:] = bytes(0x80)
        for register, value in _RESET_VALUES.items():
            self.registers[register] = value
        self.fifo[:] = bytes(256)
        self._generation += 1
        self._listening_since = None

    # -- SPI ------------------------------------------------------------------------------

    def xfer(self, data: Sequence[int]) -> list[int]:
        self._medium.advance()  # let the air catch up with the clock before the host looks
        if not data:
            return []
        self.spi_log.append(tuple(data))
        write = bool(data[0] & 0x80)
        address = data[0] & 0x7F
        out = [0]
        for offset, value in enumerate(data[1:]):
            if address == REG_FIFO:
                pointer = self.registers[REG_FIFO_ADDR_PTR]
                out.append(self.fifo[pointer])
                if write:
                    self.fifo[pointer] = value & 0xFF
                self.registers[REG_FIFO_ADDR_PTR] = (pointer + 1) & 0xFF
                continue
            register = (address + offset) & 0x7F
            out.append(self._read(register))
            if write:
                self.register_writes.append((register, value & 0xFF))
                self._write(register, value & 0xFF)
        return out

    def _read(self, register: int) -> int:
        if register == REG_RSSI_VALUE and self._listening_since is not None:
            level = self._medium.rssi_at(self._name, self.modulation, self._now())
            return _clamp_byte(round(level) + RSSI_OFFSET_LF_DBM)
        return self.registers[register]

    def _write(self, register: int, value: int) -> None:
        if register == REG_OP_MODE:
            self._set_op_mode(value)
        elif register == REG_IRQ_FLAGS:
            self.registers[REG_IRQ_FLAGS] &= ~value & 0xFF
        elif register not in _READ_ONLY:
            self.registers[register] = value

    # -- what the registers say ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> int:
        return self.registers[REG_OP_MODE] & 0x07

    @property
    def lora_mode(self) -> bool:
        return bool(self.registers[REG_OP_MODE] & LONG_RANGE_MODE)

    @property
    def frequency_hz(self) -> int:
        frf = int.from_bytes(self.registers[REG_FRF_MSB : REG_FRF_LSB + 1], "big")
        return round(frf * FXOSC_HZ / 2**19)

    @property
    def modulation(self) -> Modulation:
        config1 = self.registers[REG_MODEM_CONFIG_1]
        config2 = self.registers[REG_MODEM_CONFIG_2]
        preamble = self.registers[REG_PREAMBLE_MSB] << 8 | self.registers[REG_PREAMBLE_LSB]
        return Modulation(
            frequency_hz=self.frequency_hz,
            sf=min(max(config2 >> 4, 6), 12),  # the chip reads codes above 12 as SF12
            bw_hz=BANDWIDTHS_HZ[min(config1 >> 4, len(BANDWIDTHS_HZ) - 1)],
            cr=min(max((config1 >> 1) & 0x07, 1), 4),
            preamble=preamble,
            crc=bool(config2 & 0x04),
            implicit_header=bool(config1 & 0x01),
            low_data_rate_optimize=bool(self.registers[REG_MODEM_CONFIG_3] & 0x08),
            sync_word=self.registers[REG_SYNC_WORD],
        )

    @property
    def tx_power_dbm(self) -> float:
        value = self.registers[REG_PA_CONFIG]
        output_power = value & 0x0F
        if value & 0x80:  # PA_BOOST; PA_DAC 0x87 adds the +20 dBm mode at full output
            if output_power == 0x0F and self.registers[REG_PA_DAC] & 0x07 == 0x07:
                return 20.0
            return 17.0 - (15 - output_power)
        max_power = 10.8 + 0.6 * ((value >> 4) & 0x07)
        return max_power - (15 - output_power)

    # -- modes -----------------------------------------------------------------------------

    def _now(self) -> float:
        return self._medium.clock.monotonic()

    def _set_op_mode(self, value: int) -> None:
        previous = self.registers[REG_OP_MODE]
        self.registers[REG_OP_MODE] = value
        if previous == value:
            return  # re-writing the current mode changes nothing on the chip
        self._generation += 1
        self._listening_since = None
        if not value & LONG_RANGE_MODE:
            return  # FSK/OOK pages are not modelled
        mode = value & 0x07
        if mode == MODE_TX:
            self._start_tx()
        elif mode in (MODE_RXCONT, MODE_RXSINGLE):
            self._start_rx(mode)
        elif mode == MODE_CAD:
            self._start_cad()

    def _start_tx(self) -> None:
        length = self.registers[REG_PAYLOAD_LENGTH]
        base = self.registers[REG_FIFO_TX_BASE_ADDR]
        payload = bytes(self.fifo[(base + i) & 0xFF] for i in range(length))
        transmission = self._medium.transmit(
            self._name, payload, self.modulation, tx_power_dbm=self.tx_power_dbm
        )
        self.transmitted.append(payload)
        self._after(transmission.end, IRQ_TX_DONE)

    def _start_rx(self, mode: int) -> None:
        self._listening_since = self._now()
        self._rx_write_ptr = self.registers[REG_FIFO_RX_BASE_ADDR]
        if mode == MODE_RXSINGLE:
            symbols = (self.registers[REG_MODEM_CONFIG_2] & 0x03) << 8 | self.registers[
                REG_SYMB_TIMEOUT_LSB
            ]
            self._after(self._now() + symbols * self.modulation.symbol_time, IRQ_RX_TIMEOUT)

    def _start_cad(self) -> None:
        start = self._now()
        end = start + CAD_SYMBOLS * self.modulation.symbol_time
        generation = self._generation

        def finish() -> None:
            detected = self._medium.preamble_detected(self._name, self.modulation, start, end)
            self._finish(generation, IRQ_CAD_DONE | (IRQ_CAD_DETECTED if detected else 0))

        self._medium.schedule(end, finish)

    def _after(self, at: float, flags: int) -> None:
        generation = self._generation
        self._medium.schedule(at, lambda: self._finish(generation, flags))

    def _finish(self, generation: int, flags: int) -> None:
        """End a TX, CAD or RXSINGLE: raise its flags and fall back to STDBY, as the chip does."""
        if generation != self._generation:
            return  # the host changed mode first: the operation was abandoned
        self._raise(flags)
        self.registers[REG_OP_MODE] = (self.registers[REG_OP_MODE] & ~0x07) | MODE_STDBY
        self._generation += 1
        self._listening_since = None

    def _raise(self, flags: int) -> None:
        self.registers[REG_IRQ_FLAGS] |= flags & ~self.registers[REG_IRQ_FLAGS_MASK] & 0xFF

    # -- the medium's side -----------------------------------------------------------------

    def listening_since(self) -> float | None:
        return self._listening_since

    def deliver(self, reception: Reception) -> None:
        payload = reception.payload
        if len(payload) > self.registers[REG_MAX_PAYLOAD_LENGTH]:
            return  # the chip drops packets longer than RegMaxPayloadLength
        start = self._rx_write_ptr
        for offset, byte in enumerate(payload):
            self.fifo[(start + offset) & 0xFF] = byte
        self._rx_write_ptr = (start + len(payload)) & 0xFF
        snr_quarters = max(-128, min(127, round(reception.snr_db * 4)))
        # The datasheet's packet RSSI adds the SNR when it is negative; store the inverse.
        rssi_register = round(reception.rssi_dbm - min(reception.snr_db, 0.0)) + RSSI_OFFSET_LF_DBM
        self.registers[REG_FIFO_RX_CURRENT_ADDR] = start
        self.registers[REG_FIFO_RX_BYTE_ADDR] = self._rx_write_ptr
        self.registers[REG_RX_NB_BYTES] = len(payload)
        self.registers[REG_PKT_SNR_VALUE] = snr_quarters & 0xFF
        self.registers[REG_PKT_RSSI_VALUE] = _clamp_byte(rssi_register)
        flags = IRQ_RX_DONE | IRQ_VALID_HEADER
        if reception.crc_error and self.registers[REG_MODEM_CONFIG_2] & 0x04:
            flags |= IRQ_PAYLOAD_CRC_ERROR
        if self.mode == MODE_RXSINGLE:
            self._finish(self._generation, flags)
        else:
            self._raise(flags)


def _clamp_byte(value: int) -> int:
    return max(0, min(255, value))


class _FloatingSpi:
    """A chip select with nothing behind it: MISO floats low, every byte reads 0x00."""

    def xfer(self, data: Sequence[int]) -> list[int]:
        return [0] * len(data)


class FakeSpiDev:
    """`spidev.SpiDev` as pyLoRa uses it: open(bus, cs), xfer, xfer2, close."""

    def __init__(self, board: FakeBoard) -> None:
        self._board = board
        self._target: Sx127xStandIn | _FloatingSpi | None = None
        self.max_speed_hz = 500_000
        self.mode = 0

    def open(self, bus: int, device: int) -> None:
        if bus != 0 or device not in (0, 1):
            raise FileNotFoundError(errno.ENOENT, f"no /dev/spidev{bus}.{device}")
        self._target = self._board.chips.get(device, _FloatingSpi())

    def xfer(self, data: Sequence[int]) -> list[int]:
        if self._target is None:
            raise OSError(errno.EBADF, "SpiDev is not open")
        return self._target.xfer(data)

    xfer2 = xfer

    def close(self) -> None:
        self._target = None


@dataclass(slots=True)
class FakeGpio:
    """What pyLoRa did to the pins; event callbacks are recorded, never fired (we poll)."""

    reset_pins: dict[int, Sx127xStandIn]
    calls: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    levels: dict[int, int] = field(default_factory=dict)
    callbacks: dict[int, Callable[..., object]] = field(default_factory=dict)
    mode: object = None

    def module(self) -> types.ModuleType:
        gpio = types.ModuleType("RPi.GPIO")
        constants = {
            "BCM": 11,
            "BOARD": 10,
            "OUT": 0,
            "IN": 1,
            "HIGH": 1,
            "LOW": 0,
            "PUD_OFF": 20,
            "PUD_DOWN": 21,
            "PUD_UP": 22,
            "RISING": 31,
            "FALLING": 32,
            "BOTH": 33,
        }
        gpio.__dict__.update(constants)
        gpio.__dict__.update(
            setmode=self.setmode,
            setwarnings=self.setwarnings,
            setup=self.setup,
            output=self.output,
            input=self.input,
            add_event_detect=self.add_event_detect,
            remove_event_detect=self.remove_event_detect,
            cleanup=self.cleanup,
        )
        return gpio

    def setmode(self, mode: object) -> None:
        self.calls.append(("setmode", (mode,)))
        self.mode = mode

    def setwarnings(self, flag: object) -> None:
        self.calls.append(("setwarnings", (flag,)))

    def setup(self, pin: int, direction: int, **options: object) -> None:
        self.calls.append(("setup", (pin, direction, *options.values())))

    def output(self, pin: int, value: int) -> None:
        self.calls.append(("output", (pin, value)))
        if self.levels.get(pin) == 1 and not value and pin in self.reset_pins:
            self.reset_pins[pin].reset()  # NRESET low resets the chip
        self.levels[pin] = 1 if value else 0

    def input(self, pin: int) -> int:
        self.calls.append(("input", (pin,)))
        return self.levels.get(pin, 0)

    def add_event_detect(
        self, pin: int, edge: int, callback: Callable[..., object] | None = None, **_: object
    ) -> None:
        self.calls.append(("add_event_detect", (pin, edge)))
        if pin in self.callbacks:
            # RPi.GPIO refuses a second edge detection on a pin: keep the fake as strict.
            raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
        if callback is not None:
            self.callbacks[pin] = callback

    def remove_event_detect(self, pin: int) -> None:
        self.calls.append(("remove_event_detect", (pin,)))
        self.callbacks.pop(pin, None)

    def cleanup(self, *pins: object) -> None:
        self.calls.append(("cleanup", pins))
        self.callbacks.clear()


_FAKED_MODULES = ("spidev", "RPi", "RPi.GPIO")

# pyLoRa's BOARD drives NRESET on BCM 22 (CS0) and BOARD2 on BCM 6 (CS1).
_RESET_PIN_BY_CS = {0: 22, 1: 6}


@dataclass(slots=True)
class FakeBoard:
    """The fakes installed in `sys.modules`, the chips behind them, and how to undo it."""

    medium: RadioMedium
    chips: dict[int, Sx127xStandIn]
    gpio: FakeGpio
    _saved: dict[str, types.ModuleType | None] = field(default_factory=dict)

    @property
    def chip(self) -> Sx127xStandIn:
        """The chip on CS0, where pyLoRa's `LoRa`/`BOARD` talk."""
        return self.chips[0]

    def restore(self) -> None:
        """Put back whatever `spidev`/`RPi` were before and forget the pyLoRa bound to us."""
        forget_pylora()
        for name, module in self._saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        self._saved.clear()


def forget_pylora() -> None:
    """Drop cached `SX127x*` modules: pyLoRa binds its SPI devices once, at import."""
    for name in [n for n in sys.modules if n == "SX127x" or n.startswith("SX127x.")]:
        del sys.modules[name]


def install_fake_board(
    medium: RadioMedium, *, names: Sequence[str] = ("concentrator",)
) -> FakeBoard:
    """Put fake `spidev` and `RPi.GPIO` into `sys.modules`, one stand-in chip per name (CS0,
    then CS1), before `SX127x.LoRa` is imported. Call `restore()` on the result afterwards."""
    if not 1 <= len(names) <= 2:
        raise ValueError("a pyLoRa board has one or two chips (CS0, CS1)")
    chips = {cs: Sx127xStandIn(medium, name) for cs, name in enumerate(names)}
    gpio = FakeGpio(reset_pins={_RESET_PIN_BY_CS[cs]: chip for cs, chip in chips.items()})
    board = FakeBoard(medium=medium, chips=chips, gpio=gpio)
    board._saved = {name: sys.modules.get(name) for name in _FAKED_MODULES}

    spidev = types.ModuleType("spidev")
    spidev.__dict__["SpiDev"] = lambda: FakeSpiDev(board)
    rpi = types.ModuleType("RPi")
    rpi.__path__ = []  # a package, so `import RPi.GPIO` resolves through sys.modules
    gpio_module = gpio.module()
    rpi.__dict__["GPIO"] = gpio_module

    forget_pylora()
    sys.modules.update({"spidev": spidev, "RPi": rpi, "RPi.GPIO": gpio_module})
    return board
