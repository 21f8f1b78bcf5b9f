"""The SX127x radio backend: a Semtech SX1276/77/78 (Ra-02 module) on the Pi's SPI, driven
through pyLoRa.

Licence: pyLoRa (PyPI `pyLoRa` 0.3.1, module `SX127x`) is AGPL-3.0. Voltbook imports it only
here and only lazily — when an `Sx127xRadio` is constructed on the board (extra `pi`) — never
when this module is imported, so nothing else in Voltbook links it. Tests run the same library
against `demo.sim.sx127x_standin`, which fakes `spidev` and `RPi.GPIO` under it.

Using pyLoRa's documented API (`BOARD.setup()`, a `LoRa` subclass, `set_mode`, `set_freq`,
`set_bw`, …, `write_payload`, `read_payload`, `get_irq_flags`, `clear_irq_flags`), with its
defects worked around:

- `rx_is_good()` is inverted (it says "good" only when no RX flag is set), so
  `read_payload()` refuses good packets: always `read_payload(nocheck=True)` and judge the
  flags ourselves (RxDone, PayloadCrcError).
- `get_pkt_snr_value()` computes (256 − v)/4, wrong for every positive SNR: read
  RegPktSnrValue (0x19) ourselves as two's complement quarters of a dB.
- `get_low_data_rate_optim()` calls the setter and raises: never call it. pyLoRa never sets
  low-data-rate optimise on its own either: set it from the configuration (the 16 ms rule).
- `set_mode()` skips the write when its cached mode equals the new one, but the chip leaves
  TX, CAD and RXSINGLE for STDBY by itself: refresh the cache (`get_mode()`) first.
- `_dio1` calls `on_CadDetected`, which the base class lacks: the subclass defines it.

We poll RegIrqFlags (TxDone, RxDone, CadDone, CadDetected, RxTimeout) instead of relying on
GPIO edge callbacks: no callback threads, and the same code runs on the stand-in. Polls are
paced by the symbol time (no flag can change faster), and a transmission is not polled at all
until its computed time on air has passed.

One `Sx127xRadio` per board per process: RPi.GPIO refuses a second edge detection on the DIO
pins that pyLoRa's constructor registers.
"""

from __future__ import annotations

import importlib
from typing import Any

from edge.drivers.errors import DriverUsageError, RadioFault
from edge.drivers.lora import Clock, RadioConfig, RadioPacket, SystemClock

# RegOpMode values pyLoRa writes (LongRangeMode bit set): pyLoRa's MODE constants.
MODE_SLEEP = 0x80
MODE_STDBY = 0x81
MODE_TX = 0x83
MODE_RXCONT = 0x85
MODE_CAD = 0x87

REG_PKT_SNR_VALUE = 0x19
SX127X_VERSION = 0x12

# DIO mappings (RegDioMapping1/2) per operation, for anyone watching the pins: DIO0 carries
# RxDone (00), TxDone (01) or CadDone (10); DIO1 RxTimeout (00) or CadDetected (10).
DIO_RX = [0, 0, 0, 0, 0, 0]
DIO_TX = [1, 0, 0, 0, 0, 0]
DIO_CAD = [2, 2, 0, 0, 0, 0]

# pyLoRa's PA_BOOST output: Pout = 17 − (15 − OutputPower) dBm, with MaxPower at its top.
PA_BOOST = 1
PA_MAX_POWER = 7

CAD_SYMBOLS = 2  # an SX127x CAD takes about two symbols
MIN_POLL_S = 0.001
TX_DONE_MARGIN = 0.1  # TxDone may lag the computed time on air by ramp-up and SPI latency

_ALL_IRQ_FLAGS = {
    "RxTimeout": 1,
    "RxDone": 1,
    "PayloadCrcError": 1,
    "ValidHeader": 1,
    "TxDone": 1,
    "CadDone": 1,
    "FhssChangeChannel": 1,
    "CadDetected": 1,
}


def _load_pylora(board: int) -> tuple[Any, Any]:
    """Import pyLoRa now (it opens SPI and imports RPi.GPIO at import) → (LoRa class, BOARD)."""
    try:
        module: Any = importlib.import_module("SX127x.LoRa")
    except ImportError as exc:
        raise DriverUsageError(
            "the SX127x backend needs pyLoRa, RPi.GPIO and spidev (pip install 'voltbook[pi]' "
            "on the board); elsewhere use demo.sim.radio_medium"
        ) from exc
    except OSError as exc:
        raise RadioFault(
            f"pyLoRa could not open the SPI device ({exc}); enable SPI (raspi-config) and "
            "check the module is wired to SPI0"
        ) from exc
    if board == 1:
        return module.LoRa, module.BOARD
    return module.LoRa2, module.BOARD2


def _chip_class(base: Any) -> Any:
    """pyLoRa's documented way in: subclass `LoRa`."""

    class VoltbookLoRa(base):  # type: ignore[misc]  # pyLoRa is untyped
        # Callbacks stay no-ops: we poll RegIrqFlags. on_CadDetected is missing from pyLoRa
        # although its DIO1 handler calls it; defining it keeps a CAD edge from raising.
        def on_CadDetected(self) -> None:  # noqa: N802  # pyLoRa's name
            return None

    return VoltbookLoRa


class Sx127xRadio:
    """A `Radio` on an SX127x: CAD + RSSI listen-before-talk, TX and RX by polling IRQ flags."""

    def __init__(self, config: RadioConfig, *, board: int = 1, clock: Clock | None = None) -> None:
        config.validate()
        if config.implicit_header:
            # Meter frames vary in length; implicit header needs every packet the same size.
            raise DriverUsageError(
                "meter frames vary in length and need an explicit LoRa header; use SF7..SF12 "
                "with implicit_header=False"
            )
        if board not in (1, 2):
            raise DriverUsageError(f"pyLoRa knows board 1 (CS0) and board 2 (CS1), not {board}")
        self._config = config
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._poll_s = max(config.symbol_time, MIN_POLL_S)
        self.crc_errors = 0
        self.last_channel_rssi_dbm: float | None = None
        lora_class, board_class = _load_pylora(board)
        board_class.setup()
        board_class.reset()
        self._lora: Any = _chip_class(lora_class)(verbose=False)
        version = int(self._lora.get_version())
        if version != SX127X_VERSION:
            raise RadioFault(
                f"RegVersion reads 0x{version:02X}, not 0x{SX127X_VERSION:02X}: no SX127x answers "
                f"on SPI CS{board - 1}; check the wiring and the module's power"
            )
        self._configure()

    @property
    def config(self) -> RadioConfig:
        return self._config

    def _configure(self) -> None:
        config, lora = self._config, self._lora
        self._enter(MODE_SLEEP)  # LongRangeMode can only change in SLEEP
        # FRF = f / (32 MHz / 2^19), floored. Passing FRF/16384 keeps pyLoRa's float
        # arithmetic exact (a power-of-two division), so 470.3 MHz writes 75 93 33.
        frf = config.frequency_hz * 2**19 // 32_000_000
        lora.set_freq(frf / 16384)
        lora.set_bw(config.bandwidth_code)
        lora.set_coding_rate(config.cr)
        lora.set_implicit_header_mode(0)
        lora.set_spreading_factor(config.sf)
        lora.set_rx_crc(int(config.crc))
        lora.set_preamble(config.preamble)
        lora.set_sync_word(config.sync_word)
        lora.set_pa_config(
            pa_select=PA_BOOST, max_power=PA_MAX_POWER, output_power=config.tx_power_dbm - 2
        )
        lora.set_low_data_rate_optim(int(config.low_data_rate_optimize))
        lora.set_agc_auto_on(1)
        lora.set_max_payload_length(config.max_payload)
        # Half-duplex: TX and RX can share the whole 256-byte FIFO.
        lora.set_fifo_tx_base_addr(0)
        lora.set_fifo_rx_base_addr(0)
        self._enter(MODE_STDBY)

    def _enter(self, mode: int) -> None:
        self._lora.get_mode()  # refresh pyLoRa's cache: the chip may have left TX/CAD itself
        self._lora.set_mode(mode)

    def _flags(self) -> dict[str, int]:
        flags: dict[str, int] = self._lora.get_irq_flags()
        return flags

    def _clear_flags(self) -> None:
        self._lora.clear_irq_flags(**_ALL_IRQ_FLAGS)

    def _wait_for(self, flag: str, deadline: float) -> dict[str, int] | None:
        while True:
            flags = self._flags()
            if flags[flag]:
                return flags
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return None
            self._clock.sleep(min(self._poll_s, remaining))

    def channel_busy(self) -> bool:
        """CAD for LoRa preambles, then an RSSI sample for anything else on the channel.

        An SX127x CAD only correlates on preamble chirps: a packet already past its preamble,
        or a non-LoRa signal, shows up only as energy, hence the RSSI check after it.
        """
        lora = self._lora
        self._enter(MODE_STDBY)
        lora.set_dio_mapping(DIO_CAD)
        self._clear_flags()
        lora.set_mode(MODE_CAD)
        cad_time = CAD_SYMBOLS * self._config.symbol_time
        self._clock.sleep(cad_time)
        flags = self._wait_for("cad_done", self._clock.monotonic() + cad_time + TX_DONE_MARGIN)
        if flags is None:
            self._enter(MODE_STDBY)
            raise RadioFault("CadDone never came: the SX127x is not responding")
        self._clear_flags()
        self._enter(MODE_RXCONT)
        self._clock.sleep(self._config.symbol_time)  # let the RSSI settle on the channel
        rssi = float(lora.get_rssi_value())
        self._enter(MODE_STDBY)
        self._clear_flags()  # anything heard while sampling is not ours to keep
        self.last_channel_rssi_dbm = rssi
        return bool(flags["cad_detected"]) or rssi >= self._config.lbt_threshold_dbm

    def transmit(self, packet: bytes) -> None:
        if len(packet) > self._config.max_payload:
            raise DriverUsageError(
                f"{len(packet)} bytes exceed max_payload {self._config.max_payload}"
            )
        lora = self._lora
        self._enter(MODE_STDBY)
        lora.set_dio_mapping(DIO_TX)
        self._clear_flags()
        lora.write_payload(list(packet))  # leaves the chip (and pyLoRa's cache) in STDBY
        lora.set_mode(MODE_TX)
        airtime = self._config.time_on_air(len(packet))
        self._clock.sleep(airtime)  # TxDone cannot come before the last symbol is out
        deadline = self._clock.monotonic() + airtime * TX_DONE_MARGIN + TX_DONE_MARGIN
        if self._wait_for("tx_done", deadline) is None:
            self._enter(MODE_STDBY)
            raise RadioFault(f"TxDone never came for a {len(packet)}-byte packet")
        self._clear_flags()

    def receive(self, timeout: float) -> RadioPacket | None:
        lora = self._lora
        self._enter(MODE_STDBY)
        lora.set_dio_mapping(DIO_RX)
        self._clear_flags()
        lora.reset_ptr_rx()
        lora.set_mode(MODE_RXCONT)
        deadline = self._clock.monotonic() + timeout
        try:
            while True:
                flags = self._wait_for("rx_done", deadline)
                if flags is None:
                    return None
                # rx_is_good() is inverted in pyLoRa 0.3.1: read unchecked, judge the flags.
                payload = bytes(lora.read_payload(nocheck=True))
                snr = self._packet_snr()
                rssi = float(lora.get_pkt_rssi_value()) + min(snr, 0.0)
                lora.clear_irq_flags(RxDone=1, PayloadCrcError=1, ValidHeader=1)
                if flags["crc_error"]:
                    self.crc_errors += 1
                    continue
                return RadioPacket(payload=payload, rssi_dbm=rssi, snr_db=snr)
        finally:
            self._enter(MODE_STDBY)

    def _packet_snr(self) -> float:
        """RegPktSnrValue as the datasheet has it: two's complement, in quarters of a dB."""
        raw = int(self._lora.get_register(REG_PKT_SNR_VALUE))
        return (raw - 256 if raw > 127 else raw) / 4

    def close(self) -> None:
        """Put the chip to sleep. pyLoRa's SPI handle is shared by the class: left open."""
        self._enter(MODE_SLEEP)
