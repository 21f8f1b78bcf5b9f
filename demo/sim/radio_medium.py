"""A simulated LoRa radio medium: the air between the concentrator's chip and the meters.

Radios attach to the medium as `Endpoint`s: the register-level SX127x stand-in under pyLoRa
(`demo.sim.sx127x_standin`), `MediumRadio` (a `Radio` backend without registers) and
`MeterNode` (a simulated meter's `Responder` behind a radio).

    transmit ──▶ on air [start, start + ToA) ──▶ at the end, to every endpoint that
                 (channel busy: CAD sees the      - demodulates it (same channel, SF, BW, sync)
                  preamble, RSSI sees energy)     - was listening since before it started
                                                  - did not lose it (collision, seeded loss)

Nothing here runs on its own thread. Events (a packet's end, a meter's reply, a chip's TxDone)
sit in a heap and run when anyone touches the medium and the clock has passed them
(`advance()`), so with a `VirtualClock` — whose `sleep` just moves time on — a whole polling
round runs in milliseconds and the same seed gives the same air, every run. For the same
reason one thread drives a medium: a demo with several radio buses gives each its own medium
(its own channel) or drives them from one thread.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from edge.drivers.base import Responder
from edge.drivers.errors import DriverUsageError
from edge.drivers.lora import Clock, RadioConfig, RadioPacket, time_on_air

# Real LoRa receivers tolerate a carrier offset of about a quarter of the bandwidth; it also
# absorbs the FRF register's 61 Hz quantisation (470.3 MHz is programmed as 470.29999 MHz).
_OFFSET_TOLERANCE = 0.25

# A packet survives an overlapping one only if it is this much stronger (capture effect).
_CAPTURE_DB = 6.0

# How long transmissions stay in the collision window after they end, in seconds.
_ON_AIR_MEMORY_S = 5.0


class VirtualClock:
    """Simulated time: `sleep` advances it instantly. Deterministic and as fast as the CPU."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds


class ScaledClock:
    """Real time running `speedup` times faster, for a demo that should still feel live."""

    def __init__(self, speedup: float = 10.0) -> None:
        if speedup <= 0:
            raise DriverUsageError(f"speedup must be > 0, not {speedup}")
        self._speedup = speedup
        self._origin = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin) * self._speedup

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self._speedup)


@dataclass(frozen=True, slots=True)
class Modulation:
    """What a radio is tuned to, as its registers say it."""

    frequency_hz: int
    sf: int
    bw_hz: int
    cr: int = 1
    preamble: int = 8
    crc: bool = True
    implicit_header: bool = False
    low_data_rate_optimize: bool = False
    sync_word: int = 0x12

    @classmethod
    def from_config(cls, config: RadioConfig) -> Modulation:
        return cls(
            frequency_hz=config.frequency_hz,
            sf=config.sf,
            bw_hz=config.bw_hz,
            cr=config.cr,
            preamble=config.preamble,
            crc=config.crc,
            implicit_header=config.implicit_header,
            low_data_rate_optimize=config.low_data_rate_optimize,
            sync_word=config.sync_word,
        )

    @property
    def symbol_time(self) -> float:
        return float(2**self.sf) / self.bw_hz

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

    def overlaps(self, other: Modulation) -> bool:
        """The two occupy some of the same spectrum: energy shows up in RSSI."""
        half_widths = (self.bw_hz + other.bw_hz) / 2
        return abs(self.frequency_hz - other.frequency_hz) < half_widths

    def demodulates(self, other: Modulation) -> bool:
        """A receiver tuned like self decodes packets sent like `other`."""
        return (
            self.sf == other.sf
            and self.bw_hz == other.bw_hz
            and self.sync_word == other.sync_word
            and self.implicit_header == other.implicit_header
            and abs(self.frequency_hz - other.frequency_hz) <= self.bw_hz * _OFFSET_TOLERANCE
        )


@dataclass(frozen=True, slots=True)
class Transmission:
    sender: str
    payload: bytes
    modulation: Modulation
    start: float
    end: float
    tx_power_dbm: float = 17.0
    lora: bool = True  # False: a non-LoRa carrier, seen by RSSI but not by CAD or receivers
    rssi_dbm: float | None = None  # fixed level everywhere (interferers); None: per link

    @property
    def preamble_end(self) -> float:
        return self.start + (self.modulation.preamble + 4.25) * self.modulation.symbol_time

    def on_air(self, at: float) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Reception:
    """A packet as one receiver got it."""

    transmission: Transmission
    payload: bytes  # a corrupted copy when crc_error
    rssi_dbm: float
    snr_db: float
    crc_error: bool
    at: float  # when the last symbol arrived


@dataclass(frozen=True, slots=True)
class Link:
    """Quality of the path from one radio to another."""

    rssi_dbm: float = -90.0
    snr_db: float = 8.0
    loss: float | None = None  # None: the medium's loss probability
    corruption: float = 0.0  # probability a packet arrives with bit errors


class Endpoint(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def modulation(self) -> Modulation: ...

    def listening_since(self) -> float | None:
        """Since when the receiver has listened without a break, or None if it is not."""
        ...

    def deliver(self, reception: Reception) -> None: ...


@dataclass(slots=True)
class MediumStats:
    transmissions: int = 0
    delivered: int = 0
    lost: int = 0
    collided: int = 0
    corrupted: int = 0


@dataclass(order=True, slots=True)
class _Event:
    at: float
    seq: int
    action: Callable[[], None] = field(compare=False)


class RadioMedium:
    """The shared air. `loss` is the default probability that a receiver misses a packet."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        loss: float = 0.0,
        noise_floor_dbm: float = -120.0,
        default_link: Link | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.loss = loss
        self.noise_floor_dbm = noise_floor_dbm
        self.default_link = default_link if default_link is not None else Link()
        self.stats = MediumStats()
        self.air_log: deque[Transmission] = deque(maxlen=10_000)
        self.rng = random.Random(seed)
        self._endpoints: list[Endpoint] = []
        self._links: dict[tuple[str, str], Link] = {}
        self._events: list[_Event] = []
        self._seq = itertools.count()
        self._recent: list[Transmission] = []
        self._drops: list[str | None] = []
        self._advancing = False

    # -- topology ---------------------------------------------------------------------------

    def attach(self, endpoint: Endpoint) -> None:
        if any(e.name == endpoint.name for e in self._endpoints):
            raise DriverUsageError(f"a radio named {endpoint.name!r} is already on the medium")
        self._endpoints.append(endpoint)

    def set_link(self, a: str, b: str, link: Link, *, both_ways: bool = True) -> None:
        self._links[(a, b)] = link
        if both_ways:
            self._links[(b, a)] = link

    def link(self, sender: str, receiver: str) -> Link:
        return self._links.get((sender, receiver), self.default_link)

    def drop_next(self, count: int = 1, *, to: str | None = None) -> None:
        """Lose the next `count` packets that would reach `to` (anyone if None): scripted loss."""
        self._drops.extend([to] * count)

    # -- time -------------------------------------------------------------------------------

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, _Event(at, next(self._seq), action))

    def advance(self) -> None:
        """Run every event whose time has come, in time order (events may schedule more)."""
        if self._advancing:  # an event touching a chip must not recurse into the heap
            return
        self._advancing = True
        try:
            now = self.clock.monotonic()
            while self._events and self._events[0].at <= now:
                heapq.heappop(self._events).action()
        finally:
            self._advancing = False

    # -- the air ----------------------------------------------------------------------------

    def transmit(
        self,
        sender: str,
        payload: bytes,
        modulation: Modulation,
        *,
        tx_power_dbm: float = 17.0,
        start: float | None = None,
    ) -> Transmission:
        begin = self.clock.monotonic() if start is None else start
        transmission = Transmission(
            sender=sender,
            payload=bytes(payload),
            modulation=modulation,
            start=begin,
            end=begin + modulation.time_on_air(len(payload)),
            tx_power_dbm=tx_power_dbm,
        )
        self._put_on_air(transmission)
        self.schedule(transmission.end, lambda: self._deliver(transmission))
        return transmission

    def occupy(
        self,
        frequency_hz: int,
        duration: float,
        *,
        bw_hz: int = 125_000,
        rssi_dbm: float = -60.0,
        start: float | None = None,
        sender: str = "interferer",
    ) -> Transmission:
        """A non-LoRa signal holding the channel: RSSI sees it, CAD and receivers do not."""
        begin = self.clock.monotonic() if start is None else start
        transmission = Transmission(
            sender=sender,
            payload=b"",
            modulation=Modulation(frequency_hz=frequency_hz, sf=7, bw_hz=bw_hz),
            start=begin,
            end=begin + duration,
            lora=False,
            rssi_dbm=rssi_dbm,
        )
        self._put_on_air(transmission)
        return transmission

    def preamble_detected(self, listener: str, tuned: Modulation, start: float, end: float) -> bool:
        """Channel activity detection on an SX127x: it correlates on preamble chirps only."""
        return any(
            t.lora
            and t.sender != listener
            and tuned.demodulates(t.modulation)
            and t.start < end
            and start < t.preamble_end
            for t in self._recent
        )

    def rssi_at(self, listener: str, tuned: Modulation, at: float) -> float:
        """Strongest signal on the listener's channel at `at`, or the noise floor."""
        levels = [
            self._level(t, listener)
            for t in self._recent
            if t.sender != listener and t.on_air(at) and tuned.overlaps(t.modulation)
        ]
        return max(levels, default=self.noise_floor_dbm)

    def channel_busy(
        self, listener: str, tuned: Modulation, at: float, threshold_dbm: float
    ) -> bool:
        return self.rssi_at(listener, tuned, at) >= threshold_dbm or self.preamble_detected(
            listener, tuned, at, at + 2 * tuned.symbol_time
        )

    def _put_on_air(self, transmission: Transmission) -> None:
        horizon = transmission.start - _ON_AIR_MEMORY_S
        self._recent = [t for t in self._recent if t.end >= horizon]
        self._recent.append(transmission)
        self.air_log.append(transmission)
        self.stats.transmissions += 1

    def _level(self, transmission: Transmission, receiver: str) -> float:
        if transmission.rssi_dbm is not None:
            return transmission.rssi_dbm
        return self.link(transmission.sender, receiver).rssi_dbm

    def _deliver(self, transmission: Transmission) -> None:
        for endpoint in list(self._endpoints):
            if endpoint.name == transmission.sender:
                continue
            if not endpoint.modulation.demodulates(transmission.modulation):
                continue
            since = endpoint.listening_since()
            if since is None or since > transmission.start:
                continue  # half-duplex, asleep, or tuned in after the preamble began
            self._deliver_to(endpoint, transmission)

    def _deliver_to(self, endpoint: Endpoint, transmission: Transmission) -> None:
        link = self.link(transmission.sender, endpoint.name)
        # Draw for every candidate receiver, lost or not, so one receiver's fate never shifts
        # another's random sequence.
        lost_draw, corrupt_draw = self.rng.random(), self.rng.random()
        if self._collided(transmission, endpoint.name, link.rssi_dbm):
            self.stats.collided += 1
            return
        if self._take_drop(endpoint.name):
            self.stats.lost += 1
            return
        if lost_draw < (self.loss if link.loss is None else link.loss):
            self.stats.lost += 1
            return
        payload, crc_error = transmission.payload, False
        if payload and corrupt_draw < link.corruption:
            flipped = bytearray(payload)
            flipped[self.rng.randrange(len(flipped))] ^= 0x5A
            payload, crc_error = bytes(flipped), transmission.modulation.crc
            self.stats.corrupted += 1
        self.stats.delivered += 1
        endpoint.deliver(
            Reception(
                transmission=transmission,
                payload=payload,
                rssi_dbm=link.rssi_dbm,
                snr_db=link.snr_db,
                crc_error=crc_error,
                at=transmission.end,
            )
        )

    def _collided(self, transmission: Transmission, receiver: str, level: float) -> bool:
        return any(
            other is not transmission
            and other.sender != receiver
            and other.start < transmission.end
            and transmission.start < other.end
            and transmission.modulation.overlaps(other.modulation)
            and self._level(other, receiver) > level - _CAPTURE_DB
            for other in self._recent
        )

    def _take_drop(self, receiver: str) -> bool:
        for index, target in enumerate(self._drops):
            if target is None or target == receiver:
                del self._drops[index]
                return True
        return False


class MeterNode:
    """A simulated meter behind a LoRa radio: each packet heard goes to its `Responder`, and
    each reply goes back as one packet after `turnaround_s`, listening before it talks."""

    def __init__(
        self,
        medium: RadioMedium,
        name: str,
        responder: Responder,
        config: RadioConfig,
        *,
        turnaround_s: float = 0.05,
        lbt_attempts: int = 6,
        backoff_s: tuple[float, float] = (0.05, 0.5),
    ) -> None:
        self._medium = medium
        self._name = name
        self._responder = responder
        self._config = config.validate()
        self._modulation = Modulation.from_config(config)
        self._turnaround_s = turnaround_s
        self._lbt_attempts = lbt_attempts
        self._backoff_s = backoff_s
        self._listen_from = medium.clock.monotonic()
        self.heard: list[bytes] = []
        self.sent: list[bytes] = []
        self.gave_up = 0  # replies dropped because the channel never came free
        medium.attach(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def modulation(self) -> Modulation:
        return self._modulation

    def listening_since(self) -> float:
        return self._listen_from

    def deliver(self, reception: Reception) -> None:
        if reception.crc_error:
            return  # the meter's radio drops it, as the chip would
        self.heard.append(reception.payload)
        replies = self._responder.feed(reception.payload)
        if replies:
            self._send_at(reception.at + self._turnaround_s, list(replies), 0)

    def _send_at(self, at: float, replies: list[bytes], busy_count: int) -> None:
        self._medium.schedule(at, lambda: self._send(at, replies, busy_count))

    def _send(self, at: float, replies: Iterable[bytes], busy_count: int) -> None:
        pending = list(replies)
        if self._medium.channel_busy(
            self._name, self._modulation, at, self._config.lbt_threshold_dbm
        ):
            if busy_count + 1 >= self._lbt_attempts:
                self.gave_up += len(pending)
                return
            backoff = self._medium.rng.uniform(*self._backoff_s)
            self._send_at(at + backoff, pending, busy_count + 1)
            return
        reply, rest = pending[0], pending[1:]
        transmission = self._medium.transmit(
            self._name,
            reply,
            self._modulation,
            tx_power_dbm=self._config.tx_power_dbm,
            start=at,
        )
        self.sent.append(reply)
        self._listen_from = transmission.end  # half-duplex: deaf while it talks
        if rest:
            self._send_at(transmission.end + self._turnaround_s, rest, 0)


class MediumRadio:
    """A `Radio` backend straight on the medium, without registers: the demo's simple path.

    The SX127x stand-in under the real pyLoRa is the faithful path; this one is for sites
    and benchmarks that do not need the library in the loop.
    """

    def __init__(self, medium: RadioMedium, name: str, config: RadioConfig) -> None:
        self._medium = medium
        self._name = name
        self._config = config.validate()
        self._modulation = Modulation.from_config(config)
        self._listen_from: float | None = None
        self._inbox: deque[Reception] = deque()
        self.crc_errors = 0
        medium.attach(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def modulation(self) -> Modulation:
        return self._modulation

    @property
    def config(self) -> RadioConfig:
        return self._config

    def listening_since(self) -> float | None:
        return self._listen_from

    def deliver(self, reception: Reception) -> None:
        self._inbox.append(reception)

    def channel_busy(self) -> bool:
        clock = self._medium.clock
        start = clock.monotonic()
        window = 2 * self._modulation.symbol_time  # a CAD takes about two symbols
        clock.sleep(window)
        self._medium.advance()
        return self._medium.preamble_detected(
            self._name, self._modulation, start, start + window
        ) or (
            self._medium.rssi_at(self._name, self._modulation, clock.monotonic())
            >= self._config.lbt_threshold_dbm
        )

    def transmit(self, packet: bytes) -> None:
        if len(packet) > self._config.max_payload:
            raise DriverUsageError(
                f"{len(packet)} bytes exceed max_payload {self._config.max_payload}"
            )
        transmission = self._medium.transmit(
            self._name, packet, self._modulation, tx_power_dbm=self._config.tx_power_dbm
        )
        self._medium.clock.sleep(transmission.end - self._medium.clock.monotonic())
        self._medium.advance()

    def receive(self, timeout: float) -> RadioPacket | None:
        clock = self._medium.clock
        deadline = clock.monotonic() + timeout
        self._inbox.clear()
        self._listen_from = clock.monotonic()
        try:
            while True:
                self._medium.advance()
                while self._inbox:
                    reception = self._inbox.popleft()
                    if reception.crc_error:
                        self.crc_errors += 1
                        continue
                    return RadioPacket(reception.payload, reception.rssi_dbm, reception.snr_db)
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    return None
                clock.sleep(min(self._modulation.symbol_time, remaining))
        finally:
            self._listen_from = None
