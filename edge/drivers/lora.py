"""LoRa radio transport: time on air, the China 470–510 MHz rules, and the radio bus.

Meter frames travel over point-to-point LoRa (not LoRaWAN) as the very bytes they are on
RS-485: one request frame per packet, the meter answers in one packet. `RadioBus` carries the
same sans-I/O conversations as the RS-485 bus, over any `Radio` backend (the SX127x through
pyLoRa on the board, `demo.sim.radio_medium.MediumRadio` in the simulation):

    concentrator                                        meter
    listen before talk ── busy? random backoff, again ─┐
    request packet ────────────────────────────────────┴──▶  ToA(request)
                                                           turnaround (protocol + radio)
    reply window   ◀──────────────────────────────────────  ToA(largest reply)
    per-transaction timeout = ToA(request) + turnaround + ToA(max_payload)

Time on air (Semtech SX127x datasheet, `reference/lora.md`):

    T_sym      = 2^SF / BW
    T_preamble = (n_preamble + 4.25) · T_sym
    n_payload  = 8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)
    ToA        = T_preamble + n_payload · T_sym

The rules a configuration must keep are data (`BandRules`); `RadioConfig.validate()` refuses a
configuration that breaks them with a `DriverUsageError` naming each broken rule and the fix.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from types import MappingProxyType
from typing import Protocol, TypeVar

from edge.drivers.base import Conversation, Exchange
from edge.drivers.errors import ChannelBusy, DriverUsageError, MeterError, MeterTimeout

T = TypeVar("T")

# SX127x signal bandwidths; the index is the BW code of RegModemConfig1 (bits 7..4).
BANDWIDTHS_HZ: tuple[int, ...] = (
    7_800,
    10_400,
    15_600,
    20_800,
    31_250,
    41_700,
    62_500,
    125_000,
    250_000,
    500_000,
)

# Above this symbol time the datasheet requires low-data-rate optimisation (DE = 1): the chirp
# lasts long enough for crystal drift to matter. SF11 and SF12 at 125 kHz are past it.
LDRO_SYMBOL_TIME_S = Fraction(16, 1000)

# The PA_BOOST output of an SX1276 (Ra-02 modules use it) covers 2..17 dBm.
PA_BOOST_RANGE_DBM = (2, 17)

# e.r.p. is referred to a half-wave dipole, which has 2.15 dBi.
DIPOLE_GAIN_DBI = 2.15


@dataclass(frozen=True, slots=True)
class BandRules:
    """What a regulator allows in one band; `RadioConfig.validate()` enforces it."""

    name: str
    low_hz: int
    high_hz: int
    max_bandwidth_hz: int
    max_erp_dbm: float
    max_time_on_air_s: float
    listen_before_talk: bool


# MIIT notice 2019 No. 52 (as summarised in reference/lora.md): 50 mW e.r.p., at most 1 s per
# transmission, listen-before-talk mandatory, one channel at a time, ≤ 500 kHz occupied.
CHINA_470_510 = BandRules(
    name="China 470–510 MHz civil metering (MIIT 2019 No. 52)",
    low_hz=470_000_000,
    high_hz=510_000_000,
    max_bandwidth_hz=500_000,
    max_erp_dbm=17.0,
    max_time_on_air_s=1.0,
    listen_before_talk=True,
)


def _symbol_time(sf: int, bw_hz: int) -> Fraction:
    return Fraction(2**sf, bw_hz)


def needs_low_data_rate_optimize(sf: int, bw_hz: int) -> bool:
    """True where the symbol time exceeds 16 ms (SF11/SF12 at 125 kHz, SF12 at 250 kHz)."""
    return _symbol_time(sf, bw_hz) > LDRO_SYMBOL_TIME_S


def time_on_air(  # noqa: PLR0917  # the datasheet formula's terms, in its order
    payload_len: int,
    sf: int,
    bw_hz: int,
    cr: int = 1,
    preamble: int = 8,
    crc: bool = True,
    implicit_header: bool = False,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Seconds a LoRa packet of `payload_len` bytes occupies the channel.

    `cr` is 1..4 for 4/5..4/8; `low_data_rate_optimize=None` applies the 16 ms rule, as the
    radio drivers here do. Computed in exact fractions, so 64 B at SF12/125 kHz, CR 4/5,
    8-symbol preamble, no CRC, explicit header gives exactly 2.793472 s.
    """
    if not 0 <= payload_len <= 255:
        raise DriverUsageError(f"a LoRa payload is 0..255 bytes, not {payload_len}")
    if not 6 <= sf <= 12:
        raise DriverUsageError(f"spreading factor must be 6..12, not {sf}")
    if not 1 <= cr <= 4:
        raise DriverUsageError(f"coding rate must be 1..4 (4/5..4/8), not {cr}")
    if bw_hz <= 0 or preamble < 0:
        raise DriverUsageError(f"bandwidth ({bw_hz} Hz) and preamble ({preamble}) must be > 0")
    if low_data_rate_optimize is None:
        low_data_rate_optimize = needs_low_data_rate_optimize(sf, bw_hz)
    de = int(low_data_rate_optimize)
    bits = 8 * payload_len - 4 * sf + 28 + 16 * int(crc) - 20 * int(implicit_header)
    per_block = 4 * (sf - 2 * de)
    blocks = -(-bits // per_block)  # ceiling division, also right for negative `bits`
    n_payload = 8 + max(blocks * (cr + 4), 0)
    symbols = Fraction(4 * preamble + 17, 4) + n_payload
    return float(symbols * _symbol_time(sf, bw_hz))


@dataclass(frozen=True, slots=True)
class RadioConfig:
    """One LoRa channel and modulation. Build it freely; `validate()` before going on air."""

    frequency_hz: int = 470_300_000
    sf: int = 9
    bw_hz: int = 125_000
    cr: int = 1  # 4/5
    preamble: int = 8
    crc: bool = True
    implicit_header: bool = False
    sync_word: int = 0x12  # private network (0x34 is LoRaWAN's)
    tx_power_dbm: int = 17  # conducted, at the chip's PA_BOOST pin
    antenna_gain_dbi: float = DIPOLE_GAIN_DBI
    max_payload: int = 128  # largest packet either side sends; bounds every time on air
    listen_before_talk: bool = True
    lbt_threshold_dbm: float = -85.0  # RSSI at or above this counts as a busy channel
    rules: BandRules = CHINA_470_510

    @property
    def symbol_time(self) -> float:
        return float(_symbol_time(self.sf, self.bw_hz))

    @property
    def low_data_rate_optimize(self) -> bool:
        """Set automatically: never a choice the installer can get wrong."""
        return needs_low_data_rate_optimize(self.sf, self.bw_hz)

    @property
    def erp_dbm(self) -> float:
        return self.tx_power_dbm + self.antenna_gain_dbi - DIPOLE_GAIN_DBI

    @property
    def bandwidth_code(self) -> int:
        """The RegModemConfig1 BW code (7 = 125 kHz)."""
        return BANDWIDTHS_HZ.index(self.bw_hz)

    def time_on_air(self, payload_len: int) -> float:
        return time_on_air(
            payload_len,
            self.sf,
            self.bw_hz,
            self.cr,
            self.preamble,
            self.crc,
            self.implicit_header,
            self.low_data_rate_optimize,
        )

    def describe(self) -> str:
        return (
            f"{self.frequency_hz / 1e6:.4f} MHz SF{self.sf}/{self.bw_hz / 1000:g} kHz "
            f"CR4/{self.cr + 4}"
        )

    def violations(self) -> tuple[str, ...]:
        """Every rule this configuration breaks, each as a sentence saying what to do."""
        return tuple(self._chip_violations() + self._band_violations())

    def validate(self) -> RadioConfig:
        """Return self, or raise DriverUsageError listing every broken rule."""
        found = self.violations()
        if found:
            raise DriverUsageError("radio configuration refused: " + " ".join(found))
        return self

    def _chip_violations(self) -> list[str]:
        found = []
        if not 6 <= self.sf <= 12:
            found.append(f"SX127x spreading factors are SF6..SF12, not SF{self.sf}; pick one.")
        if not 1 <= self.cr <= 4:
            found.append(f"coding rate is 1..4 (4/5..4/8), not {self.cr}; use 1 (4/5).")
        if not 6 <= self.preamble <= 65535:
            found.append(f"preamble is 6..65535 symbols, not {self.preamble}; use 8.")
        if not 0 <= self.sync_word <= 0xFF:
            found.append(f"sync word is one byte, not {self.sync_word:#x}; use 0x12.")
        if not 1 <= self.max_payload <= 255:
            found.append(f"max_payload is 1..255 bytes (the FIFO), not {self.max_payload}.")
        low, high = PA_BOOST_RANGE_DBM
        if not low <= self.tx_power_dbm <= high:
            found.append(
                f"tx_power_dbm {self.tx_power_dbm} is outside what the SX127x PA_BOOST output "
                f"can produce ({low}..{high} dBm); set it within that range."
            )
        if self.bw_hz <= self.rules.max_bandwidth_hz and self.bw_hz not in BANDWIDTHS_HZ:
            offered = ", ".join(f"{bw / 1000:g}" for bw in BANDWIDTHS_HZ)
            found.append(
                f"{self.bw_hz} Hz is not an SX127x bandwidth; use one of {offered} kHz "
                "(125 kHz is the usual choice)."
            )
        return found

    def _band_violations(self) -> list[str]:
        rules = self.rules
        found = []
        if self.bw_hz > rules.max_bandwidth_hz:
            found.append(
                f"{rules.name}: occupied bandwidth {self.bw_hz / 1000:g} kHz exceeds "
                f"{rules.max_bandwidth_hz / 1000:g} kHz; use 125 or 250 kHz."
            )
        low_edge = self.frequency_hz - self.bw_hz / 2
        high_edge = self.frequency_hz + self.bw_hz / 2
        if low_edge < rules.low_hz or high_edge > rules.high_hz:
            found.append(
                f"{rules.name}: {self.frequency_hz / 1e6:.4f} MHz at {self.bw_hz / 1000:g} kHz "
                f"occupies {low_edge / 1e6:.4f}–{high_edge / 1e6:.4f} MHz, outside "
                f"{rules.low_hz / 1e6:g}–{rules.high_hz / 1e6:g} MHz; choose a centre frequency "
                f"from {(rules.low_hz + self.bw_hz / 2) / 1e6:.4f} to "
                f"{(rules.high_hz - self.bw_hz / 2) / 1e6:.4f} MHz."
            )
        if self.erp_dbm > rules.max_erp_dbm + 1e-9:
            allowed = math.floor(rules.max_erp_dbm - self.antenna_gain_dbi + DIPOLE_GAIN_DBI + 1e-9)
            found.append(
                f"{rules.name}: {self.tx_power_dbm} dBm into a {self.antenna_gain_dbi:g} dBi "
                f"antenna is {self.erp_dbm:.1f} dBm e.r.p. "
                f"({10 ** (self.erp_dbm / 10):.0f} mW), over the "
                f"{10 ** (rules.max_erp_dbm / 10):.0f} mW ({rules.max_erp_dbm:g} dBm) e.r.p. "
                f"limit; set tx_power_dbm to {allowed} or less, or use a lower-gain antenna."
            )
        if self.sf == 6 and not self.implicit_header:
            found.append(
                "SF6 works only with an implicit header (SX127x datasheet); set "
                "implicit_header=True or use SF7..SF12."
            )
        airtime = self._max_time_on_air()
        if airtime is not None and airtime > rules.max_time_on_air_s:
            fitting = [n for n in range(1, self.max_payload) if self._fits(n)]
            fix = (
                f"reduce max_payload to {fitting[-1]} bytes, lower the spreading factor "
                "or widen the bandwidth"
                if fitting
                else "lower the spreading factor or widen the bandwidth"
            )
            found.append(
                f"{rules.name}: a {self.max_payload}-byte packet at SF{self.sf}/"
                f"{self.bw_hz / 1000:g} kHz takes {airtime:.3f} s on air, over the "
                f"{rules.max_time_on_air_s:g} s each transmission may last; {fix}."
            )
        if rules.listen_before_talk and not self.listen_before_talk:
            found.append(
                f"{rules.name}: listen-before-talk is mandatory and cannot be disabled; "
                "leave listen_before_talk=True."
            )
        return found

    def _max_time_on_air(self) -> float | None:
        """ToA of the largest packet, or None when the modulation itself is invalid."""
        try:
            return self.time_on_air(self.max_payload)
        except DriverUsageError:
            return None  # already reported by _chip_violations

    def _fits(self, payload_len: int) -> bool:
        return self.time_on_air(payload_len) <= self.rules.max_time_on_air_s


@dataclass(frozen=True, slots=True)
class RadioPacket:
    """One packet received with a good CRC (or none configured), with its link quality."""

    payload: bytes
    rssi_dbm: float
    snr_db: float


class Clock(Protocol):
    """Where the bus and the radios read time and wait; simulations substitute their own."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall time, for the board."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Radio(Protocol):
    """A half-duplex LoRa transceiver on one configured channel."""

    @property
    def config(self) -> RadioConfig: ...

    def channel_busy(self) -> bool:
        """Listen before talk: channel activity detection and/or an RSSI check, now."""
        ...

    def transmit(self, packet: bytes) -> None:
        """Send one packet; return once it is fully on air (TxDone)."""
        ...

    def receive(self, timeout: float) -> RadioPacket | None:
        """The next good packet heard within `timeout` seconds, or None."""
        ...


@dataclass(frozen=True, slots=True)
class RadioLinkStats:
    """Per-meter link record, the radio counterpart of the RS-485 bus's `LinkStats`."""

    attempts: int = 0  # requests sent or abandoned to a busy channel, retries included
    successes: int = 0  # attempts that got a complete reply (an error reply is one too)
    timeouts: int = 0  # attempts that ended without a complete reply (busy channel included)
    channel_busy: int = 0  # attempts abandoned because the channel never came free
    backoffs: int = 0  # listen-before-talk found the channel busy and waited
    conversations: int = 0
    failures: int = 0  # conversations that ended in an error
    last_rssi_dbm: float | None = None
    last_snr_db: float | None = None

    @property
    def success_rate(self) -> float | None:
        """Share of attempts that got a reply; None before the first attempt."""
        return self.successes / self.attempts if self.attempts else None

    def as_dict(self) -> dict[str, int | float | None]:
        out: dict[str, int | float | None] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["success_rate"] = self.success_rate
        return out


class RadioBus:
    """Carries conversations to meters over one radio, strictly one at a time.

    Every transmission listens first; a busy channel costs a random backoff drawn from
    `backoff_s`, at most `lbt_attempts` times. Every legal transmission lasts at most 1 s,
    so the default six backoffs (0.05–0.5 s each) outlast any single neighbour's packet.
    """

    def __init__(
        self,
        radio: Radio,
        *,
        retries: int = 2,
        radio_turnaround_s: float = 0.1,
        lbt_attempts: int = 6,
        backoff_s: tuple[float, float] = (0.05, 0.5),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        radio.config.validate()
        if retries < 0 or lbt_attempts < 1 or not 0 <= backoff_s[0] <= backoff_s[1]:
            raise DriverUsageError(
                "retries must be ≥ 0, lbt_attempts ≥ 1 and backoff_s an increasing pair"
            )
        self._radio = radio
        self._retries = retries
        self._radio_turnaround_s = radio_turnaround_s
        self._lbt_attempts = lbt_attempts
        self._backoff_s = backoff_s
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._stats: dict[str, RadioLinkStats] = {}
        # A radio is half-duplex: one conversation owns it from first request to last reply,
        # so a DL/T 645 follow-up frame never interleaves with another meter's request.
        self._lock = threading.Lock()

    @property
    def config(self) -> RadioConfig:
        return self._radio.config

    @property
    def stats(self) -> Mapping[str, RadioLinkStats]:
        return MappingProxyType(self._stats)

    def transaction_timeout(self, request_len: int, reply_timeout: float) -> float:
        """ToA of the request + the meter's turnaround + ToA of the largest reply.

        The meter's turnaround is the protocol's own reply time (`Exchange.reply_timeout`)
        plus what its radio module needs to switch over and listen before it talks.
        """
        config = self._radio.config
        return (
            config.time_on_air(request_len)
            + reply_timeout
            + self._radio_turnaround_s
            + config.time_on_air(config.max_payload)
        )

    def run(self, conversation: Conversation[T], *, address: str, retries: int | None = None) -> T:
        """Drive `conversation` for meter `address` to its end; raises its `MeterError`.

        `retries` overrides the bus default for this conversation (discovery probes use 0),
        as on the RS-485 bus.
        """
        attempts = 1 + (self._retries if retries is None else retries)
        if attempts < 1:
            raise DriverUsageError(f"retries must be ≥ 0, not {retries}", address=address)
        with self._lock:
            self._count(address, conversations=1)
            try:
                transaction = next(conversation)
                while True:
                    self._exchange(transaction, address, attempts)
                    transaction = conversation.send(transaction)
            except StopIteration as finished:
                result: T = finished.value
                return result
            except MeterError:
                self._count(address, failures=1)
                raise
            finally:
                conversation.close()

    def _exchange(self, transaction: Exchange, address: str, attempts: int) -> None:
        request = transaction.request
        config = self._radio.config
        if len(request) > config.max_payload:
            raise DriverUsageError(
                f"a {len(request)}-byte request does not fit the radio's max_payload of "
                f"{config.max_payload} bytes; raise max_payload if the 1 s rule allows",
                address=address,
            )
        if not transaction.expects_reply:
            self._count(address, attempts=1)
            self._listen_then_transmit(request, address)
            self._count(address, successes=1)
            return
        timeout = self.transaction_timeout(len(request), transaction.reply_timeout)
        busy_every_time = True
        for _ in range(attempts):
            self._count(address, attempts=1)
            try:
                started = self._listen_then_transmit(request, address)
            except ChannelBusy:
                self._count(address, timeouts=1, channel_busy=1)
                continue
            busy_every_time = False
            packet = self._await_reply(transaction, started + timeout)
            if transaction.done():
                self._record_success(address, packet)
                return
            self._count(address, timeouts=1)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if busy_every_time:
            raise ChannelBusy(
                f"channel {config.describe()} busy through listen-before-talk on {tries}",
                address=address,
            )
        raise MeterTimeout(
            f"no LoRa reply after {tries} of {timeout:.3f} s each on {config.describe()}",
            address=address,
        )

    def _listen_then_transmit(self, packet: bytes, address: str) -> float:
        """Transmit once the channel is free; returns when transmission started."""
        for _ in range(self._lbt_attempts):
            if not self._radio.channel_busy():
                started = self._clock.monotonic()
                self._radio.transmit(packet)
                return started
            self._count(address, backoffs=1)
            self._clock.sleep(self._rng.uniform(*self._backoff_s))
        raise ChannelBusy(
            f"channel busy after {self._lbt_attempts} listen-before-talk backoffs",
            address=address,
        )

    def _await_reply(self, transaction: Exchange, deadline: float) -> RadioPacket | None:
        """Feed packets into the transaction until it is done or the deadline passes.

        Returns the last packet fed (its link quality is the meter's), or None.
        """
        last: RadioPacket | None = None
        while not transaction.done():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                break
            packet = self._radio.receive(remaining)
            if packet is None:
                break
            # Other meters' replies share the channel; the transaction skips what is not its.
            transaction.feed(packet.payload)
            last = packet
        return last

    def _record_success(self, address: str, packet: RadioPacket | None) -> None:
        current = self._stats.get(address, RadioLinkStats())
        self._stats[address] = replace(
            current,
            successes=current.successes + 1,
            last_rssi_dbm=packet.rssi_dbm if packet else current.last_rssi_dbm,
            last_snr_db=packet.snr_db if packet else current.last_snr_db,
        )

    def _count(
        self,
        address: str,
        *,
        attempts: int = 0,
        successes: int = 0,
        timeouts: int = 0,
        channel_busy: int = 0,
        backoffs: int = 0,
        conversations: int = 0,
        failures: int = 0,
    ) -> None:
        current = self._stats.get(address, RadioLinkStats())
        self._stats[address] = replace(
            current,
            attempts=current.attempts + attempts,
            successes=current.successes + successes,
            timeouts=current.timeouts + timeouts,
            channel_busy=current.channel_busy + channel_busy,
            backoffs=current.backoffs + backoffs,
            conversations=current.conversations + conversations,
            failures=current.failures + failures,
        )
