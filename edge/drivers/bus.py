"""The RS-485 bus: carries sans-I/O conversations over a serial port, one request at a time.

A bus is half-duplex and slow (a DL/T 645 byte takes 4.58 ms at 2400 8E1), so each port has
exactly one worker thread and every request waits for the previous reply or its deadline.
For each `Exchange` the worker

1. throws away whatever is in the input buffer (a late reply, line noise),
2. writes the request (the driver put the FE wake-up preamble in it where the protocol wants
   one),
3. waits for the first reply byte until the request is on the wire (request bytes × byte
   time after the write) plus the transaction's `reply_timeout`; after each byte, until the
   `byte_gap` the protocol allows between bytes (DL/T 645: 500 ms) has passed in silence,
   never beyond room for a maximum-length reply. It stops the moment the transaction is
   `done()`: a reply's end is found by decoding, not by waiting for silence,
4. retries with exponential backoff on silence, a garbled frame or a bad checksum; an error
   reply (MeterRefused) is an answer and is not retried.

Waiting is `select()` on the port's descriptor with the remaining time, never a polling sleep.
Whether a reply comes from the addressed meter is the transaction's business (its `feed` skips
other meters' frames); the bus only moves bytes and keeps the score: per meter and per bus,
requests, good replies, timeouts, checksum and frame errors, retries, failed conversations,
and the success rate of each polling round (`start_round()` / `end_round()`).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import termios
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import serial

from edge.drivers.base import Conversation, Exchange, SerialSettings
from edge.drivers.errors import (
    ChecksumError,
    FrameError,
    MeterError,
    MeterRefused,
    MeterTimeout,
    PeerError,
    PortError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REPLY_BYTES: Final = 300  # longest frame of any of our protocols, preamble included
DEFAULT_BYTE_GAP: Final = 0.5  # DL/T 645: at most 500 ms between the bytes of a frame
DEFAULT_RETRIES: Final = 2
DEFAULT_BACKOFF: Final = 0.05  # seconds before the first retry; doubles each time

AttemptResult = Literal["reply", "refused", "timeout", "checksum", "garbled", "sent"]


@dataclass(slots=True)
class LinkStats:
    """Counters for one meter or a whole bus. A refusal is a reply: the line worked."""

    requests: int = 0  # requests written (attempts, retries included)
    replies: int = 0  # valid replies decoded, error replies included
    refused: int = 0
    timeouts: int = 0  # nothing at all came back
    checksum_errors: int = 0
    frame_errors: int = 0  # bytes came back but no valid frame from the meter
    retries: int = 0
    conversations: int = 0
    failures: int = 0  # conversations that ended in an error
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def success_rate(self) -> float | None:
        """Share of requests that got a valid reply; None before the first request."""
        expected = self.replies + self.timeouts + self.checksum_errors + self.frame_errors
        return self.replies / expected if expected else None

    def add(self, other: LinkStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int | float | None]:
        out: dict[str, int | float | None] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["success_rate"] = self.success_rate
        return out


@dataclass(slots=True)
class BusStats:
    """The score of one bus: totals and one `LinkStats` per meter address."""

    total: LinkStats = field(default_factory=LinkStats)
    meters: dict[str, LinkStats] = field(default_factory=dict)

    def meter(self, address: str) -> LinkStats:
        stats = self.meters.get(address)
        if stats is None:
            stats = self.meters[address] = LinkStats()
        return stats

    def count(self, address: str, update: Callable[[LinkStats], None]) -> None:
        update(self.total)
        update(self.meter(address))


@dataclass(frozen=True, slots=True)
class RoundReport:
    """One polling round of one bus: wall time and the score of the round alone."""

    port: str
    started: float  # time.monotonic()
    ended: float
    stats: BusStats

    @property
    def duration(self) -> float:
        return self.ended - self.started

    @property
    def success_rate(self) -> float | None:
        return self.stats.total.success_rate


def _outcome_counter(outcome: AttemptResult) -> Callable[[LinkStats], None]:
    def update(stats: LinkStats) -> None:
        if outcome in ("reply", "refused"):
            stats.replies += 1
            stats.refused += outcome == "refused"
        elif outcome == "timeout":
            stats.timeouts += 1
        elif outcome == "checksum":
            stats.checksum_errors += 1
        elif outcome == "garbled":
            stats.frame_errors += 1

    return update


class SerialBus:
    """One RS-485 port and its worker. Satisfies `edge.drivers.base.Bus`.

    `run()` may be called from any thread; conversations queue for the port's single worker.
    """

    def __init__(
        self,
        port: str,
        settings: SerialSettings | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        byte_gap: float = DEFAULT_BYTE_GAP,
    ) -> None:
        self.port = port
        self.settings = settings or SerialSettings()
        self.retries = retries
        self.backoff = backoff
        self.byte_gap = byte_gap
        self.stats = BusStats()
        self._round: BusStats | None = None
        self._round_started = 0.0
        # A pseudo-terminal (the simulator) has no parity bit: Linux clears PARENB and glibc
        # then fails the whole tcsetattr. Open it 8N1; deadlines still use the line's parity.
        parity = "N" if _is_pty(port) else self.settings.parity
        try:
            self._serial = serial.Serial(
                port=port,
                baudrate=self.settings.baudrate,
                parity=parity,
                bytesize=self.settings.bytesize,
                stopbits=self.settings.stopbits,
                timeout=0,  # reads never block: waiting is select() with a deadline
                exclusive=True,  # one worker per port, across processes too
            )
        except (serial.SerialException, termios.error, OSError, ValueError) as exc:
            raise PortError(f"cannot open serial port {port}: {_reason(exc)}") from exc
        self._fd = self._serial.fileno()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bus {port}")
        self._closed = threading.Event()

    # --- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued conversations, stop the worker and close the port."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._worker.shutdown(wait=True)
        self._serial.close()

    def __enter__(self) -> SerialBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.settings
        return f"SerialBus({self.port!r}, {s.baudrate} {s.bytesize}{s.parity}{s.stopbits})"

    # --- rounds ----------------------------------------------------------------------------

    def start_round(self) -> None:
        """Start counting a polling round (after what is already queued on the port)."""
        self._worker.submit(self._start_round).result()

    def end_round(self) -> RoundReport:
        """Close the round once everything queued before it is done; log and return it."""
        report = self._worker.submit(self._end_round).result()
        rate = report.success_rate
        log.info(
            "bus %s: round of %d meters in %.2f s, success rate %s",
            self.port,
            len(report.stats.meters),
            report.duration,
            "n/a" if rate is None else f"{rate:.0%}",
        )
        for address, stats in report.stats.meters.items():
            if stats.failures:
                log.warning(
                    "bus %s: meter %s failed this round (%d timeouts, %d checksum errors, "
                    "%d garbled replies)",
                    self.port,
                    address,
                    stats.timeouts,
                    stats.checksum_errors,
                    stats.frame_errors,
                )
        return report

    def _start_round(self) -> None:
        self._round = BusStats()
        self._round_started = time.monotonic()

    def _end_round(self) -> RoundReport:
        stats = self._round or BusStats()
        self._round = None
        return RoundReport(self.port, self._round_started, time.monotonic(), stats)

    def _count(self, address: str, update: Callable[[LinkStats], None]) -> None:
        self.stats.count(address, update)
        if self._round is not None:
            self._round.count(address, update)

    # --- conversations ---------------------------------------------------------------------

    def run(self, conversation: Conversation[T], *, address: str, retries: int | None = None) -> T:
        """Drive `conversation` for meter `address` to its end; raises its `MeterError`.

        `retries` overrides the bus default for this conversation (discovery probes use 0:
        silence is their usual answer).
        """
        attempts = 1 + (self.retries if retries is None else retries)
        try:
            job = self._worker.submit(self._drive, conversation, address, attempts)
        except RuntimeError:  # the executor refuses work once close() shut it down
            raise PortError(f"serial port {self.port} is closed", address=address) from None
        return job.result()

    def _drive(self, conversation: Conversation[T], address: str, attempts: int) -> T:
        self._count(address, _bump("conversations"))
        failure: tuple[AttemptResult, int] | None = None
        try:
            tx = next(conversation)
            while True:
                failure = self._exchange(tx, address, attempts)
                tx = conversation.send(tx)
        except StopIteration as stop:
            value: T = stop.value
            return value
        except MeterError as exc:
            self._count(address, _bump("failures"))
            explained = self._explained(exc, address, failure)
            if explained is exc:
                raise
            raise explained from exc
        finally:
            conversation.close()

    def _explained(
        self, exc: MeterError, address: str, failure: tuple[AttemptResult, int] | None
    ) -> MeterError:
        """The error to raise: the line's own account when the line was what failed."""
        if failure is None or isinstance(exc, MeterRefused) or not isinstance(exc, PeerError):
            return exc
        outcome, attempts = failure
        s = self.settings
        where = f"on {self.port} at {s.baudrate} baud {s.bytesize}{s.parity}{s.stopbits}"
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if outcome == "timeout":
            return MeterTimeout(f"no reply {where} after {tries}", address=address, item=exc.item)
        if outcome == "checksum":
            return ChecksumError(
                f"replies with bad checksums {where} after {tries}", address=address, item=exc.item
            )
        return FrameError(
            f"garbled or incomplete replies {where} after {tries}", address=address, item=exc.item
        )

    def _exchange(
        self, tx: Exchange, address: str, attempts: int
    ) -> tuple[AttemptResult, int] | None:
        """Send `tx` until it gets an answer or attempts run out.

        Returns None when the meter answered (well or not: the conversation judges), else the
        line's last fault and how many attempts it took.
        """
        fault: AttemptResult = "timeout"
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._count(address, _bump("retries"))
                time.sleep(self.backoff * 2 ** (attempt - 2))
            outcome = self._attempt(tx, address)
            self._count(address, _outcome_counter(outcome))
            if outcome in ("reply", "refused", "sent") or tx.done():
                # A done transaction whose reply is wrong in itself (e.g. the wrong register
                # count) would get the same again: the conversation raises its own error.
                return None
            fault = outcome
            log.debug(
                "bus %s: meter %s: %s (attempt %d of %d)",
                self.port,
                address,
                outcome,
                attempt,
                attempts,
            )
        return fault, attempts

    def _attempt(self, tx: Exchange, address: str) -> AttemptResult:
        request = tx.request
        byte_time = self.settings.byte_time
        try:
            self._serial.reset_input_buffer()
            written_at = time.monotonic()
            self._serial.write(request)
            self._serial.flush()
        except LINE_ERRORS as exc:  # an unplugged adapter: EIO, ENXIO, from termios or write
            raise PortError(
                f"writing to {self.port} failed: {_reason(exc)}", address=address
            ) from exc
        on_wire = max(time.monotonic(), written_at + len(request) * byte_time)
        self._count(address, _add("bytes_sent", len(request)))
        self._count(address, _bump("requests"))
        if not tx.expects_reply:
            # A pty or a USB adapter accepts the bytes at once; the next request must still
            # wait until this one has left the wire.
            _sleep_until(on_wire)
            return "sent"
        received = self._receive(tx, address, on_wire)
        return _judge(tx, received)

    def _receive(self, tx: Exchange, address: str, on_wire: float) -> int:
        """Feed arriving bytes to `tx` until it is done or the deadlines pass; bytes read."""
        first_byte_deadline = on_wire + tx.reply_timeout
        last_chance = first_byte_deadline + MAX_REPLY_BYTES * self.settings.byte_time
        deadline = first_byte_deadline
        received = 0
        while not tx.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                readable, _, _ = select.select([self._fd], [], [], remaining)
                if not readable:
                    continue
                data = self._serial.read(max(1, self._serial.in_waiting))
            except LINE_ERRORS as exc:
                raise PortError(
                    f"reading {self.port} failed: {_reason(exc)}", address=address
                ) from exc
            if not data:
                continue
            received += len(data)
            tx.feed(data)
            deadline = min(last_chance, max(deadline, time.monotonic() + self.byte_gap))
        self._count(address, _add("bytes_received", received))
        return received


def _bump(name: str) -> Callable[[LinkStats], None]:
    return _add(name, 1)


def _add(name: str, amount: int) -> Callable[[LinkStats], None]:
    def update(stats: LinkStats) -> None:
        setattr(stats, name, getattr(stats, name) + amount)

    return update


def _judge(tx: Exchange, received: int) -> AttemptResult:
    """What this attempt got, from the transaction's own verdict (`result()` names the fault:
    a bad checksum, a garbled frame, or nothing) and whether any byte came back at all."""
    try:
        tx.result()
    except MeterRefused:
        return "refused"
    except ChecksumError:
        # The decoder remembers a bad frame of an earlier attempt; this one may have heard none.
        return "checksum" if received else "timeout"
    except FrameError:
        return "garbled" if received or tx.done() else "timeout"
    except MeterTimeout:
        return "garbled" if received else "timeout"
    except PeerError:
        return "reply"  # a well-formed answer the conversation must judge (e.g. relay state)
    if tx.done():
        return "reply"
    # A transaction that listens for a whole window (a discovery probe) is never "done".
    return "garbled" if received else "timeout"


# Linux Unix98 pty slaves (/dev/pts/N) have majors 136..143.
PTY_MAJORS: Final = range(136, 144)


def _is_pty(port: str) -> bool:
    try:
        return os.major(os.stat(port).st_rdev) in PTY_MAJORS
    except OSError:
        return False  # let opening it report what is wrong


# What a port that fails under us raises: pyserial's own error, a bare OSError (EIO from a
# write or `in_waiting` once a USB adapter is gone) or termios.error (tcflush, tcdrain).
LINE_ERRORS: Final = (serial.SerialException, OSError, termios.error)


def _reason(exc: BaseException) -> str:
    """The operating system's words for why a port failed, without errno noise; a port held
    by another process says so (pyserial's exclusive lock reports EBUSY/EAGAIN)."""
    inner = exc.__context__ if isinstance(exc.__context__, OSError) else exc
    errno_ = inner.errno if isinstance(inner, OSError) else None
    if isinstance(exc, termios.error) and len(exc.args) == 2:
        errno_, text = exc.args[0], str(exc.args[1])
    elif isinstance(inner, OSError) and inner.strerror:
        text = inner.strerror
    else:
        text = str(exc)
    if errno_ in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text:
        return f"busy: held by another process ({text})"
    return text


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


if TYPE_CHECKING:
    from edge.drivers.base import Bus

    def _satisfies_bus(bus: SerialBus) -> Bus:
        return bus
