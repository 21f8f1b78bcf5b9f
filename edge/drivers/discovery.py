"""Finding the meters on a bus, and setting their clocks.

An installer connects a concentrator to a bus and needs the addresses of the meters on it.

One meter (DL/T 645-2007 and CJ/T 188): ask the wildcard address (DL/T 645: function 13 to
`AAAAAAAAAAAA`) and the meter answers with its address.

Several meters on one DL/T 645 bus (both versions): every meter answers the wildcard at once
and the replies collide (garbage, bad checksums), so the search narrows the address instead.
DL/T 645 lets a request name meters by their low digits only (high bytes AA), and a meter
answers only if its low digits match:

1. (2007 only) Probe read-address (13) to the wildcard. Silence twice: nobody is there. One
   clean reply and no garbage: one meter, done (unless `exhaustive`).
2. Probe the suffixes one byte long, `AAAAAAAAAA00` … `AAAAAAAAAA99`, with a read of forward
   active energy (a DI every meter has). For each suffix:
   - silence: no meter ends in these digits; the subtree is skipped;
   - one clean reply and no garbage: one meter; it is confirmed with a read to its full
     address (which is what polling will use) before it counts;
   - garbage (replies that collided), several replies, or a failed confirmation: several
     meters share the suffix: the 100 suffixes one byte longer are probed, and so on.
   A full address (no AA left) names one meter; garbage there is line noise and is probed
   again up to `noise_retries` times.
3. Every probe listens for the whole reply window, because a second meter may answer later
   than the first. A probe costs at most request + window + a reply on the wire; the search
   stops at `time_limit` and says it is incomplete.

Cost: 100 probes for the first level plus 100 for every suffix shared by several meters (and
one confirmation per meter). 32 meters with random serials share a few low bytes; at 2400
baud and the standard's 500 ms window that is a few minutes, the price of the standard's
timing. Known limit: a meter whose reply is lost while a sibling with the same suffix answers
cleanly stays hidden until the next scan.

Broadcast time sync (08 to `999999999999`) sets every meter's clock; nobody answers.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

from edge.drivers.base import Conversation
from edge.drivers.dlt645 import (
    BROADCAST,
    WILDCARD,
    Decoder,
    address_matches,
    encode_frame,
)
from edge.drivers.dlt645_meter import REPLY_WINDOW, Dlt645Driver
from edge.drivers.dlt645_requests import read_address_request, read_request
from edge.drivers.errors import DriverUsageError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Forward active energy total: every meter of either version has it.
PROBE_DI: Final = {2007: 0x00010000, 1997: 0x9010}
DIGIT_PAIRS: Final = 100  # one address byte: 00..99 in BCD
ADDRESS_BYTES: Final = 6
DEFAULT_TIME_LIMIT: Final = 900.0


class ProbingBus(Protocol):
    """A bus that can run a conversation without retries (`SerialBus`)."""

    def run(self, conversation: Conversation[T], *, address: str, retries: int | None = None) -> T:
        """Drive `conversation`; `retries=0`: a probe's silence is an answer, not a fault."""
        ...


@dataclass(frozen=True, slots=True)
class ProbeResult:
    addresses: frozenset[str]  # meters that replied cleanly
    garbled: bool  # a bad checksum, a bad frame or half a frame: replies collided

    @property
    def silent(self) -> bool:
        return not self.addresses and not self.garbled

    @property
    def single(self) -> str | None:
        """The one meter that answered, if exactly one did and nothing else was heard."""
        if self.garbled or len(self.addresses) != 1:
            return None
        return next(iter(self.addresses))


@dataclass(slots=True, eq=False)
class SuffixProbe:
    """A request to every meter matching `pattern`; hears every reply in the whole window.

    Never `done()`: the bus listens until the window (or the gap after the last byte) passes.
    """

    request: bytes
    pattern: str  # printed form with AA pairs
    function: int
    reply_timeout: float
    expects_reply: bool = True
    decoder: Decoder = field(default_factory=Decoder)
    heard: set[str] = field(default_factory=set)

    def feed(self, data: bytes) -> None:
        self.decoder.feed(data)
        while (frame := self.decoder.next_frame()) is not None:
            # An error reply still names a meter that is there.
            if (
                frame.is_reply
                and frame.function == self.function
                and address_matches(self.pattern, frame.address)
            ):
                self.heard.add(frame.address)

    def done(self) -> bool:
        return False

    def result(self) -> ProbeResult:
        d = self.decoder
        # Stray bytes before a clean reply are line noise; a broken frame is a collision.
        garbled = bool(d.checksum_errors or d.frame_errors or d.pending)
        return ProbeResult(frozenset(self.heard), garbled)


@dataclass(frozen=True, slots=True)
class Discovery:
    addresses: tuple[str, ...]
    probes: int
    collisions: int  # suffixes that more than one meter answered
    elapsed_s: float
    complete: bool  # False: stopped at the time limit


def _probe(
    frame_request: bytes, pattern: str, function: int, window: float
) -> Conversation[ProbeResult]:
    tx = yield SuffixProbe(frame_request, pattern, function, window)
    result: ProbeResult = tx.result()
    return result


class _Search:
    def __init__(
        self,
        bus: ProbingBus,
        driver: Dlt645Driver,
        *,
        window: float,
        time_limit: float,
        noise_retries: int,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.bus, self.driver = bus, driver
        self.window = window
        self.deadline = time.monotonic() + time_limit
        self.noise_retries = noise_retries
        self.progress = progress or (lambda message: None)
        self.probes = 0
        self.collisions = 0
        self.found: set[str] = set()
        self._di = PROBE_DI[driver.version]

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def probe(self, pattern: str) -> ProbeResult:
        self.probes += 1
        frame = read_request(pattern, self._di, self.driver.dialect)
        request = encode_frame(frame, self.driver.preamble)
        conversation = _probe(request, pattern, frame.function, self.window)
        return self.bus.run(conversation, address=pattern, retries=0)

    def read_address(self) -> ProbeResult:
        self.probes += 1
        frame = read_address_request(self.driver.dialect)
        request = encode_frame(frame, self.driver.preamble)
        conversation = _probe(request, WILDCARD, frame.function, self.window)
        return self.bus.run(conversation, address=WILDCARD, retries=0)

    def confirmed(self, address: str) -> bool:
        return self.probe(address).single == address

    def full_address(self, address: str) -> None:
        """A full address answers alone; garbage there is noise, so ask again."""
        for _ in range(1 + self.noise_retries):
            result = self.probe(address)
            if address in result.addresses:
                self.found.add(address)
                return
            if result.silent:
                return
        log.warning("meter %s: only garbled replies to its full address; skipped", address)

    def search(self, suffix: str) -> bool:
        """Probe every suffix one byte longer than `suffix`; False when time ran out."""
        for pair in range(DIGIT_PAIRS):
            if self.out_of_time():
                return False
            longer = f"{pair:02d}{suffix}"
            pattern = "AA" * (ADDRESS_BYTES - len(longer) // 2) + longer
            if len(longer) == 2 * ADDRESS_BYTES:
                self.full_address(pattern)
                continue
            result = self.probe(pattern)
            if result.silent:
                continue
            single = result.single
            if single is not None and self.confirmed(single):
                self.found.add(single)
                self.progress(f"found {single} ({len(self.found)} so far, {self.probes} probes)")
                continue
            self.collisions += 1
            self.progress(f"several meters end in {longer}: narrowing")
            if not self.search(longer):
                return False
        return True


def discover(
    bus: ProbingBus,
    driver: Dlt645Driver,
    *,
    window: float = REPLY_WINDOW,
    time_limit: float = DEFAULT_TIME_LIMIT,
    exhaustive: bool = False,
    noise_retries: int = 2,
    progress: Callable[[str], None] | None = None,
) -> Discovery:
    """Find every DL/T 645 meter on `bus` (see the module docs for the search).

    `window`: how long a probe listens after its request (the standard's 500 ms; a bus of
    quick meters may use less). `exhaustive`: search even when one meter answered the wildcard.
    """
    if window <= 0 or time_limit <= 0:
        raise DriverUsageError("discovery needs a positive window and time limit")
    started = time.monotonic()
    search = _Search(
        bus,
        driver,
        window=window,
        time_limit=time_limit,
        noise_retries=noise_retries,
        progress=progress,
    )

    def finish(complete: bool) -> Discovery:
        return Discovery(
            tuple(sorted(search.found)),
            search.probes,
            search.collisions,
            time.monotonic() - started,
            complete,
        )

    if driver.dialect.read_address is not None and not exhaustive:
        first = search.read_address()
        if first.silent:  # a lost reply looks the same: ask once more before giving up
            first = search.read_address()
            if first.silent:
                search.progress("nobody answered the wildcard address")
                return finish(True)
        single = first.single
        if single is not None:
            search.found.add(single)
            search.progress(f"one meter on the bus: {single}")
            return finish(True)
        search.progress("several meters answered the wildcard: searching by address suffix")
    complete = search.search("")
    return finish(complete)


def read_single_address(bus: ProbingBus, driver: Dlt645Driver) -> str:
    """The address of the only meter on the bus (DL/T 645-2007 read-address)."""
    return bus.run(driver.read_address(), address=WILDCARD)


def sync_time(bus: ProbingBus, driver: Dlt645Driver, when: dt.datetime) -> None:
    """Set every meter's clock to `when` (meter local time) with the broadcast time frame."""
    bus.run(driver.broadcast_time(when.replace(tzinfo=None)), address=BROADCAST)
