"""A simulated RS-485 bus on a pseudo-terminal, with the timing of a real wire.

The client (a `SerialBus`, the CLI, any serial tool) opens `PtyBus.port` (e.g. `/dev/pts/7`)
like a USB-RS485 adapter. One thread plays the line:

    master writes ──► [pty] ──► downstream: each byte takes `byte_time` on the wire; when the
                                last byte of a burst has "arrived", every responder is fed it
                                (all hear everything; none hears the others' replies)
    master reads  ◄── [pty] ◄── upstream: each reply starts `turnaround` after the request
                                ended and is written byte by byte at wire speed

A pty has no baud rate: without this pacing a 2400-baud bus would answer in microseconds and
every timing bug in the client would stay hidden. `byte_time` comes from `SerialSettings`
(11 bits a byte at 8E1, 10 at 8N1); `wire_timing=False` drops all delays for fast tests.

Replies that overlap in time collide, as on a real half-duplex pair where two drivers fight:
where both drive the same level the bit comes through, where they drive opposite levels the
differential voltage is near zero and the receiver reads either (a seeded coin flip). Equal
bytes (68 headers, FE preambles) survive; addresses, data and checksums are garbled, so a
collision shows up as checksum errors, not as one meter's clean reply. Discovery relies on it.
Simplifications: responders never hear each other's replies, and a master that talks over a
reply is not modelled (a correct master never does).

Faults (`LineFaults`, seeded, reproducible): stray bytes before a reply (noise), a flipped bit
inside a reply (checksum error), a dropped reply (loss).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from edge.drivers.base import Responder, SerialSettings

log = logging.getLogger(__name__)

DEFAULT_TURNAROUND = 0.025  # DL/T 645 allows 20..500 ms; quick meters answer in ~25 ms
MIN_WRITE_CHUNK = 0.002  # above ~5 kBd, write a few bytes per wake-up instead of one
READ_SIZE = 4096


@dataclass(frozen=True, slots=True)
class LineFaults:
    """Per-reply probabilities of line faults; `seed` makes a run reproducible."""

    noise: float = 0.0  # 1..4 stray bytes on the line just before the reply
    corrupt: float = 0.0  # one bit of the reply flipped (a checksum error at the master)
    loss: float = 0.0  # the reply never arrives
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("noise", "corrupt", "loss"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in 0..1, got {value}")


@dataclass(slots=True)
class PtyBusStats:
    """What the simulated line did; read it after `stop()` or accept slightly stale numbers."""

    bytes_from_master: int = 0
    bytes_to_master: int = 0
    requests_heard: int = 0  # bursts from the master delivered to the responders
    replies: int = 0  # replies the responders produced
    lost: int = 0
    corrupted: int = 0
    noise_bursts: int = 0
    collisions: int = 0  # replies that overlapped another reply on the line
    dropped_bytes: int = 0  # bytes the client did not read fast enough (pty buffer full)


@dataclass(slots=True)
class _Station:
    name: str
    responder: Responder
    turnaround: float | None  # None: the bus default


@dataclass(slots=True)
class _Transmission:
    """Bytes a station puts on the upstream line, from `start`, one per byte time."""

    start: float
    data: bytearray
    sources: set[str]
    written: int = 0

    def end(self, byte_time: float) -> float:
        return self.start + len(self.data) * byte_time


@dataclass(slots=True)
class _Periodic:
    interval: float
    callback: Callable[[], None]
    due: float = 0.0


@dataclass(slots=True)
class _Delivery:
    due: float
    data: bytes


class PtyBus:
    """One simulated RS-485 bus on a pty pair; `port` is the path a client opens.

    Responders are attached before or after `start()`; they are called from the bus thread
    only, as are the `every()` callbacks, so a load model advanced there never races a reply.
    """

    def __init__(
        self,
        settings: SerialSettings | None = None,
        *,
        wire_timing: bool = True,
        turnaround: float = DEFAULT_TURNAROUND,
        faults: LineFaults | None = None,
        name: str = "pty-bus",
    ) -> None:
        self.settings = settings or SerialSettings()
        self.wire_timing = wire_timing
        self.byte_time = self.settings.byte_time if wire_timing else 0.0
        self.turnaround = turnaround
        self.faults = faults or LineFaults()
        self.name = name
        self.stats = PtyBusStats()
        self._random = random.Random(self.faults.seed)
        self._stations: tuple[_Station, ...] = ()
        self._periodic: tuple[_Periodic, ...] = ()
        self._injected: deque[bytes] = deque()  # from other threads; deque ops are atomic
        self._downstream: deque[_Delivery] = deque()
        self._down_free = 0.0  # when the downstream line is free for the next master byte
        self._upstream: list[_Transmission] = []
        self._write_chunk = (
            max(1, math.ceil(MIN_WRITE_CHUNK / self.byte_time)) if self.byte_time else 0
        )
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF mangling: bytes pass unchanged
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- configuration ---------------------------------------------------------------------

    def attach(self, responder: Responder, *, name: str, turnaround: float | None = None) -> None:
        """Put a meter on the bus. `turnaround` overrides the bus default for this meter."""
        self._stations = (*self._stations, _Station(name, responder, turnaround))

    def every(self, interval: float, callback: Callable[[], None]) -> None:
        """Call `callback` every `interval` seconds on the bus thread (e.g. a load model)."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self._periodic = (
            *self._periodic,
            _Periodic(interval, callback, time.monotonic() + interval),
        )
        self._wake()

    def inject(self, data: bytes) -> None:
        """Put `data` on the line towards the client now, at wire speed: line noise, a late
        reply from a meter that was given up on, a rogue device."""
        self._injected.append(bytes(data))
        self._wake()

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> PtyBus:
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close every descriptor; safe to call twice."""
        if self._closed:
            return
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join()
        self._closed = True
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> PtyBus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wake(self) -> None:
        if not self._closed:
            # A full pipe already means a wake-up is pending.
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"\0")

    # --- the line --------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            self._run_due(now)
            next_event = self._next_event()
            timeout = None if next_event is None else max(0.0, next_event - time.monotonic())
            readable, _, _ = select.select([self._master, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                os.read(self._wake_r, READ_SIZE)
            if self._master in readable:
                self._read_master()

    def _read_master(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: no slave open; cannot happen while we hold one
            log.warning("%s: reading the pty master failed: %s", self.name, exc)
            return
        if not data:
            return
        self.stats.bytes_from_master += len(data)
        arrival = time.monotonic()
        # Bytes queue behind the ones still "on the wire", one byte time each.
        self._down_free = max(self._down_free, arrival) + len(data) * self.byte_time
        self._downstream.append(_Delivery(self._down_free, data))

    def _run_due(self, now: float) -> None:
        while self._injected:
            data = self._injected.popleft()
            self._put_on_line(_Transmission(now, bytearray(data), {"injected"}))
        while self._downstream and self._downstream[0].due <= now:
            delivery = self._downstream.popleft()
            self._deliver(delivery)
        self._write_upstream(now)
        for job in self._periodic:
            if job.due <= now:
                job.callback()
                # Catch up without a burst of calls after a stall.
                job.due = max(job.due + job.interval, now)

    def _next_event(self) -> float | None:
        candidates: list[float] = [job.due for job in self._periodic]
        if self._downstream:
            candidates.append(self._downstream[0].due)
        for tx in self._upstream:
            chunk = min(len(tx.data) - tx.written, self._write_chunk) if self.byte_time else 0
            candidates.append(tx.start + (tx.written + chunk) * self.byte_time)
        return min(candidates, default=None)

    def _deliver(self, delivery: _Delivery) -> None:
        self.stats.requests_heard += 1
        for station in self._stations:
            replies = station.responder.feed(delivery.data)
            if station.turnaround is not None:
                # Kept in fast mode too: meters with different turnarounds must not collide.
                turnaround = station.turnaround
            else:
                turnaround = self.turnaround if self.wire_timing else 0.0
            start = delivery.due + turnaround
            for reply in replies:
                self.stats.replies += 1
                start = self._emit(station.name, start, reply)

    def _emit(self, source: str, start: float, reply: bytes) -> float:
        """Queue one reply with its faults; returns when the line is free after it."""
        faults, rng = self.faults, self._random
        data = bytearray(reply)
        end = start + len(data) * self.byte_time
        if faults.loss and rng.random() < faults.loss:
            self.stats.lost += 1
            log.debug("%s: reply of %s lost", self.name, source)
            return end
        if faults.corrupt and data and rng.random() < faults.corrupt:
            self.stats.corrupted += 1
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if faults.noise and rng.random() < faults.noise:
            self.stats.noise_bursts += 1
            stray = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            data[:0] = stray
            start = max(time.monotonic(), start - len(stray) * self.byte_time)
        self._put_on_line(_Transmission(start, data, {source}))
        return end

    def _overlaps(self, a: _Transmission, b: _Transmission) -> bool:
        if self.byte_time == 0.0:
            return a.start == b.start
        return a.start < b.end(self.byte_time) and b.start < a.end(self.byte_time)

    def _put_on_line(self, new: _Transmission) -> None:
        for old in self._upstream:
            if old.written < len(old.data) and self._overlaps(old, new):
                self._collide(old, new)
                return
        self._upstream.append(new)
        self._upstream.sort(key=lambda tx: tx.start)

    def _collide(self, old: _Transmission, new: _Transmission) -> None:
        """Merge `new` into `old` where they overlap: both garbled, as two drivers would be."""
        self.stats.collisions += 1
        log.debug("%s: replies of %s and %s collide", self.name, old.sources, new.sources)
        offset = round((new.start - old.start) / self.byte_time) if self.byte_time else 0
        if offset < 0 and old.written == 0:  # the new one starts first: it sets the timing
            base, other = bytearray(new.data), bytes(old.data)
            old.start, offset = new.start, -offset
        else:
            base, other = old.data, bytes(new.data)
            offset = max(offset, old.written)  # bytes already delivered cannot change
        rng = self._random
        for i, byte in enumerate(other):
            j = offset + i
            if j < len(base):
                # Equal bits come through; opposite drivers leave the receiver guessing.
                mine = base[j]
                base[j] = (mine & byte) | (rng.randrange(256) & (mine ^ byte))
            else:
                base.append(byte)
        old.data = base
        old.sources |= new.sources

    def _write_upstream(self, now: float) -> None:
        finished = []
        for tx in self._upstream:
            if self.byte_time:
                due = min(len(tx.data), int((now - tx.start) / self.byte_time + 1e-9))
            else:
                due = len(tx.data) if tx.start <= now else 0
            if due > tx.written:
                chunk = bytes(tx.data[tx.written : due])
                tx.written = due
                self._write_master(chunk)
            if tx.written >= len(tx.data):
                finished.append(tx)
        for tx in finished:
            self._upstream.remove(tx)

    def _write_master(self, data: bytes) -> None:
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            log.warning("%s: writing the pty master failed: %s", self.name, exc)
            written = 0
        self.stats.bytes_to_master += written
        if written < len(data):
            # Nobody is reading the port: a real line would not wait for them either.
            self.stats.dropped_bytes += len(data) - written
