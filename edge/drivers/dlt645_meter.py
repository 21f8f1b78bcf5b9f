"""DL/T 645 meter drivers: `DLT645_2007` and `DLT645_1997` as sans-I/O conversations.

Each operation is a generator that yields transactions (`edge.drivers.base`) and returns its
result: `read` a named reading block → `Reading`, `relay` → confirmed `RelayState`,
`write_item` (14, with the driver's credentials) and `write_malicious_load` (a model's vendor
parameters, `dlt645_vendor`), `read_address` → the address of the one meter on the bus,
`broadcast_time`, `freeze`, `change_baud`. A driver made `with_block_reads(capability)` reads
single items through the block DIs its meters answer (`dlt645_blocks`) and remembers, per
meter, the blocks a meter refused. An error reply is `MeterRefused` with its decoded
bits, `MeterUnauthorised` when they say the credentials are wrong (`refusal`). A transaction
decodes with its own `Decoder` and takes only a reply to its own function from the addressed
meter: frames of other meters, echoes of requests and late replies for another DI are counted
in `ignored_frames` and never taken as this meter's answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal

from edge.drivers.base import Conversation, SerialSettings
from edge.drivers.dlt645 import (
    BROADCAST,
    DEFAULT_PREAMBLE,
    MAX_DATA_LENGTH,
    OVERHEAD,
    Decoder,
    Frame,
    address_from_wire,
    address_matches,
    encode_frame,
    error_reasons,
    normalize_address,
)
from edge.drivers.dlt645_blocks import (
    PlannedRead,
    ReadPlans,
    RefusedBlocks,
    plan_reads,
    supported_blocks,
)
from edge.drivers.dlt645_items import (
    BLOCKS,
    ITEMS_BY_NAME,
    DataItem,
    ReadingBlock,
    Value,
    block_items,
    build_reading,
    decode_reply,
    encode_value,
)
from edge.drivers.dlt645_requests import (
    BAUD_FEATURES,
    DIALECTS,
    PLAINTEXT_LEVEL,
    Dialect,
    RelayAction,
    RelayCipher,
    broadcast_time_request,
    change_baud_request,
    di_bytes,
    follow_up_request,
    freeze_request,
    read_address_request,
    read_request,
    relay_request,
    write_request,
)
from edge.drivers.dlt645_vendor import MaliciousLoadMap, MaliciousLoadSettings
from edge.drivers.errors import (
    ChecksumError,
    DriverUsageError,
    FrameError,
    MeterRefused,
    MeterTimeout,
    MeterUnauthorised,
    RelayNotConfirmed,
    UnsupportedOperation,
)
from edge.drivers.reading import Reading, RelayState

if TYPE_CHECKING:
    from edge.drivers.base import Exchange, MeterDriver

REPLY_WINDOW: Final = 0.5  # the meter answers within 500 ms (Td), then bytes follow at line rate
FAR_FUTURE: Final = dt.datetime(2099, 12, 31, 23, 59, 59)


@dataclass(slots=True, eq=False)
class Dlt645Transaction:
    """One request and the reply it waits for: function `function` from meter `address`."""

    request: bytes
    address: str  # the addressed meter; AA pairs accept any byte there
    function: int
    reply_timeout: float
    item: str
    di: bytes = b""  # a normal reply must start with the requested DI
    expects_reply: bool = True
    decoder: Decoder = field(default_factory=Decoder)
    ignored_frames: int = 0
    reply: Frame | None = None

    def feed(self, data: bytes) -> None:
        if self.reply is not None:
            return
        self.decoder.feed(data)
        while (frame := self.decoder.next_frame()) is not None:
            if (
                frame.is_reply
                and frame.function == self.function
                and address_matches(self.address, frame.address)
                and (frame.is_error or frame.data.startswith(self.di))
            ):
                self.reply = frame
                return
            self.ignored_frames += 1

    def done(self) -> bool:
        return self.reply is not None

    def result(self) -> Frame:
        """The reply frame; raises MeterRefused for an error reply, else why nothing came."""
        reply, where = self.reply, {"address": self.address, "item": self.item}
        if reply is None:
            if self.decoder.checksum_errors:
                raise ChecksumError("no valid reply: a frame had a bad checksum", **where)
            if self.decoder.frame_errors:
                raise FrameError("no valid reply: a frame had a bad end marker", **where)
            raise MeterTimeout(
                f"no reply ({self.decoder.skipped_bytes} bytes of noise, "
                f"{self.ignored_frames} frames for others)",
                **where,
            )
        if reply.is_error:
            raise refusal(reply.data[0] if reply.data else 0, **where)
        return reply


def refusal(code: int, *, address: str | None, item: str | None) -> MeterRefused:
    """The error for an error reply's error byte: `MeterUnauthorised` if bit 2 (password or
    operator code) is set, else `MeterRefused` with the decoded bits."""
    reasons = error_reasons(code)
    kind = MeterUnauthorised if "unauthorised" in reasons else MeterRefused
    return kind(reasons, code=code, address=address, item=item)


def check_write_reply(reply: Frame, *, address: str, item: str) -> None:
    """A normal reply to a write (94) carries no data (L = 0); anything else is not one."""
    if reply.data:
        raise FrameError(
            f"write reply carries {len(reply.data)} data bytes, L must be 0",
            address=address,
            item=item,
        )


@dataclass(slots=True, eq=False)
class Dlt645Broadcast:
    """A request nobody answers (broadcast time, broadcast freeze): written, then done."""

    request: bytes
    item: str
    reply_timeout: float = 0.0
    expects_reply: bool = False

    def feed(self, data: bytes) -> None:
        """Meters stay silent after a broadcast; anything heard is not ours to decode."""

    def done(self) -> bool:
        return True

    def result(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Dlt645Driver:
    """One version of DL/T 645, with its credentials and relay codes; see the module docs."""

    name: str
    version: Literal[2007, 1997]
    default_settings: SerialSettings
    settings: SerialSettings | None = None  # the bus's actual line settings, for timeouts
    relay_actions: tuple[tuple[str, RelayAction], ...] = (
        ("trip", "trip"),
        ("close", "close_direct"),  # not "close_allowed": nobody is there to press the button
    )
    password_level: int = PLAINTEXT_LEVEL
    password: int = 0
    operator: int = 0
    # The driver never reads a clock (sans-I/O): relay commands are valid until this unless
    # the caller passes `valid_until` (now + margin) for meters that check it.
    relay_valid_until: dt.datetime = FAR_FUTURE
    cipher: RelayCipher | None = None
    custom_blocks: tuple[ReadingBlock, ...] = ()
    preamble: int = DEFAULT_PREAMBLE
    max_follow_ups: int = 32
    # Block rows the meters answer (`dlt645_blocks`; empty: one DI an exchange) and the memory
    # of blocks each meter refused (None: no memory, a refused block is asked every read).
    block_support: tuple[DataItem, ...] = ()
    block_support_by_meter: tuple[tuple[str, tuple[DataItem, ...]], ...] = ()  # overrides
    refused_blocks: RefusedBlocks | None = None
    plans: ReadPlans = field(default_factory=ReadPlans, compare=False, repr=False)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.version]

    @property
    def blocks(self) -> frozenset[str]:
        return frozenset(self._blocks())

    def _blocks(self) -> dict[str, ReadingBlock]:
        return BLOCKS[self.version] | {block.name: block for block in self.custom_blocks}

    @property
    def items(self) -> frozenset[str]:
        return block_items(self.version)

    def with_blocks(self, blocks: Mapping[str, tuple[str, ...]]) -> Dlt645Driver:
        """This driver with site-defined blocks too (item names from `items`, checked)."""
        for name, reads in blocks.items():
            unknown = sorted(set(reads) - self.items)
            if unknown or not reads:
                raise DriverUsageError(
                    f"DL/T 645-{self.version} cannot read {unknown or 'nothing'} in a block",
                    item=name,
                )
        added = tuple(ReadingBlock(name, tuple(reads)) for name, reads in blocks.items())
        return replace(self, custom_blocks=self.custom_blocks + added)

    def with_settings(self, settings: SerialSettings) -> Dlt645Driver:
        return replace(self, settings=settings)

    def with_block_reads(
        self, capability: str, per_meter: Mapping[str, str] | None = None
    ) -> Dlt645Driver:
        """This driver reading through the blocks of `capability` (`dlt645_blocks`), or of
        `per_meter[address]` for the meters named there, with a fresh memory of refusals; the
        blocks this version has no DI for are left out."""

        def rows(name: str) -> tuple[DataItem, ...]:
            return tuple(b for b in supported_blocks(name) if b.di_for(self.version) is not None)

        by_meter = tuple(
            (normalize_address(address), rows(name)) for address, name in (per_meter or {}).items()
        )
        return replace(
            self,
            block_support=rows(capability),
            block_support_by_meter=by_meter,
            refused_blocks=RefusedBlocks(),
        )

    def blocks_of(self, address: str) -> tuple[DataItem, ...]:
        """The block rows the meter at (normalised) `address` answers."""
        for meter, rows in self.block_support_by_meter:
            if meter == address:
                return rows
        return self.block_support

    def reply_timeout(self, data_length: int) -> float:
        """500 ms + the reply's bytes at this line's byte time (reference timing)."""
        settings = self.settings or self.default_settings
        wire_bytes = DEFAULT_PREAMBLE + OVERHEAD + min(data_length, MAX_DATA_LENGTH)
        return REPLY_WINDOW + wire_bytes * settings.byte_time

    def _transaction(
        self, frame: Frame, *, item: str, reply_data: int, di: bytes = b""
    ) -> Dlt645Transaction:
        return Dlt645Transaction(
            request=encode_frame(frame, self.preamble),
            address=frame.address,
            function=frame.function,
            reply_timeout=self.reply_timeout(reply_data),
            item=item,
            di=di,
        )

    # --- reads -----------------------------------------------------------------------------

    def read(self, address: str, block: str = "basic") -> Conversation[Reading]:
        """Read a named block; returns a `Reading` with the fields the block fills."""
        try:
            found = self._blocks()[block]
        except KeyError:
            raise DriverUsageError(
                f"DL/T 645-{self.version} has no block {block!r}", address=address, item=block
            ) from None
        return self._read_planned(
            address, lambda blocks, refused: self.plans.plan(found, blocks, refused)
        )

    def read_items(self, address: str, rows: Iterable[DataItem]) -> Conversation[Reading]:
        """Read rows (items or block items), one round trip each plus follow-ups; single items
        a supported block carries are read through it (`dlt645_blocks.plan_reads`)."""
        wanted = tuple(rows)
        return self._read_planned(
            address, lambda blocks, refused: plan_reads(wanted, blocks, refused)
        )

    def _read_planned(
        self,
        address: str,
        plan: Callable[[tuple[DataItem, ...], frozenset[str]], tuple[PlannedRead, ...]],
    ) -> Conversation[Reading]:
        """Read what `plan` gives for the meter's supported blocks and its refusals."""
        address = normalize_address(address)  # once: every frame below uses this form
        memory = self.refused_blocks
        refused = memory.refused(address) if memory is not None else frozenset()
        values: list[tuple[DataItem, Value]] = []
        for planned in plan(self.blocks_of(address), refused):
            if planned.is_substitute:
                values += yield from self._read_through_block(address, planned)
            else:
                values += yield from self.read_item(address, planned.row)
        return build_reading(address, values, self.version)

    def _read_through_block(
        self, address: str, planned: PlannedRead
    ) -> Conversation[list[tuple[DataItem, Value]]]:
        """The wanted items of a block read in their place; the block's other parts are dropped
        (the reading is the one single reads give). Refused ("no such data"), or answered with
        a valid frame whose data do not split into the parts (a make whose block layout differs
        from the standard's) → remembered, read singly; a wanted part missing from a shorter
        reply is read singly too."""
        block, wanted = planned.row, planned.wanted
        try:
            data = yield from self._read_data(address, block)
        except MeterRefused as exc:
            if "no_such_data" not in exc.reasons:
                raise
            self._remember_refusal(address, block)
            data = None
        got: dict[str, Value] = {}
        if data is not None:
            try:
                parts = decode_reply(block, data, self.version, address=address)
            except FrameError:  # checksum and DI were right: the layout is not the table's
                self._remember_refusal(address, block)
            else:
                got = {part.name: value for part, value in parts}
        values: list[tuple[DataItem, Value]] = []
        for item in wanted:
            if item.name in got:
                values.append((item, got[item.name]))
            else:
                values += yield from self.read_item(address, item)
        return values

    def _remember_refusal(self, address: str, block: DataItem) -> None:
        if self.refused_blocks is not None:
            self.refused_blocks.remember(address, block.name)

    def _has_refused(self, address: str, block: DataItem) -> bool:
        memory = self.refused_blocks
        return memory is not None and block.name in memory.refused(address)

    def read_item(self, address: str, item: DataItem) -> Conversation[list[tuple[DataItem, Value]]]:
        """One row's values. A refused block DI is read part by part instead, in order, until
        the meter refuses a part (block replies are prefixes: a meter with 4 tariffs stops);
        with a memory, a block the meter refused once is read part by part straight away."""
        if not (item.is_block and self._has_refused(address, item)):
            try:
                data = yield from self._read_data(address, item)
            except MeterRefused as exc:
                if not (item.is_block and "no_such_data" in exc.reasons):
                    raise
                self._remember_refusal(address, item)
            else:
                return decode_reply(item, data, self.version, address=address)
        values: list[tuple[DataItem, Value]] = []
        for name in item.parts:
            try:
                values += yield from self.read_item(address, ITEMS_BY_NAME[name])
            except MeterRefused:
                if not values:
                    raise
                break
        return values

    def _read_data(self, address: str, item: DataItem) -> Conversation[bytes]:
        """The data of an item's reply (DI removed), joined across follow-up frames."""
        di = item.di_for(self.version)
        if di is None:
            raise DriverUsageError(
                f"no DL/T 645-{self.version} DI", address=address, item=item.name
            )
        dialect, wire_di = self.dialect, di_bytes(di, self.dialect)
        expected = len(wire_di) + _max_length(item, self.version)
        tx = self._transaction(
            read_request(address, di, dialect), item=item.name, reply_data=expected, di=wire_di
        )
        yield tx
        reply = tx.result()
        data = reply.data[len(wire_di) :]
        sequence = 0
        while reply.more_follows:
            sequence += 1
            if sequence > self.max_follow_ups:
                raise FrameError(
                    f"more than {self.max_follow_ups} follow-up frames",
                    address=address,
                    item=item.name,
                )
            request = follow_up_request(address, di, sequence, dialect)
            tx = self._transaction(request, item=item.name, reply_data=expected, di=wire_di)
            yield tx
            reply = tx.result()
            chunk = reply.data[len(wire_di) :]
            if dialect.follow_up_sequence:
                if not chunk or chunk[-1] != sequence:
                    raise FrameError(
                        f"follow-up frame {sequence} is numbered "
                        f"{chunk[-1] if chunk else 'nothing'}",
                        address=address,
                        item=item.name,
                    )
                chunk = chunk[:-1]
            data += chunk
        return data

    # --- relay -----------------------------------------------------------------------------

    def relay(
        self,
        address: str,
        action: Literal["trip", "close"],
        *,
        valid_until: dt.datetime | None = None,
    ) -> Conversation[RelayState]:
        """Send 1C, then read status word 3 back; RelayNotConfirmed if the state differs."""
        address = normalize_address(address)
        code = dict(self.relay_actions).get(action)
        if code is None or self.dialect.relay is None:
            raise UnsupportedOperation(
                f"DL/T 645-{self.version} cannot {action!r} a relay", address=address, item=action
            )
        frame = relay_request(
            address,
            code,
            valid_until=valid_until or self.relay_valid_until,
            password_level=self.password_level,
            password=self.password,
            operator=self.operator,
            cipher=self.cipher,
        )
        tx = self._transaction(frame, item=f"relay {action}", reply_data=0)
        yield tx
        tx.result()
        values = yield from self.read_item(address, ITEMS_BY_NAME["status_word_3"])
        state = build_reading(address, values, self.version).relay
        wanted = RelayState.OPEN if action == "trip" else RelayState.CLOSED
        if state is not wanted:
            raise RelayNotConfirmed(
                f"commanded {action}, status word 3 says the relay is {state}",
                address=address,
                item="status_word_3",
            )
        return wanted

    # --- writes ----------------------------------------------------------------------------

    def write_item(self, address: str, item: DataItem, value: Value) -> Conversation[None]:
        """Write one item's register (14; 1997: 04) with this driver's credentials."""
        address = normalize_address(address)
        di = item.di_for(self.version)
        if di is None or item.is_block:
            raise DriverUsageError(
                f"no DL/T 645-{self.version} DI to write", address=address, item=item.name
            )
        frame = write_request(
            address,
            di,
            encode_value(item, value, self.version),
            password_level=self.password_level,
            password=self.password,
            operator=self.operator,
            dialect=self.dialect,
        )
        tx = self._transaction(frame, item=item.name, reply_data=0)
        yield tx
        check_write_reply(tx.result(), address=address, item=item.name)

    def write_malicious_load(
        self, address: str, row: MaliciousLoadMap, settings: MaliciousLoadSettings
    ) -> Conversation[None]:
        """Write a model's malicious-load window and delay, item by item; the first refusal
        stops it (the meter may then hold a mix: write them all again)."""
        for item, register in row.registers(settings):
            yield from self.write_item(address, item, register)

    # --- other functions -------------------------------------------------------------------

    def read_address(self) -> Conversation[str]:
        """Address of the single meter on the bus (13 to the wildcard address)."""
        frame = read_address_request(self.dialect)
        tx = self._transaction(frame, item="address", reply_data=6)
        yield tx
        reply = tx.result()
        if len(reply.data) != 6:
            raise FrameError(
                f"address reply has {len(reply.data)} bytes", address=reply.address, item="address"
            )
        return address_from_wire(reply.data)

    def broadcast_time(self, when: dt.datetime) -> Conversation[None]:
        """Set every meter's clock; no meter answers."""
        frame = broadcast_time_request(when, self.dialect)
        yield Dlt645Broadcast(encode_frame(frame, self.preamble), item="broadcast time")

    def freeze(
        self,
        address: str = BROADCAST,
        *,
        minute: int | None = None,
        hour: int | None = None,
        day: int | None = None,
        month: int | None = None,
    ) -> Conversation[None]:
        """Freeze (all None: at once); to `BROADCAST` nobody answers, else the meter acks."""
        frame = freeze_request(
            address, minute=minute, hour=hour, day=day, month=month, dialect=self.dialect
        )
        if frame.address == BROADCAST:
            yield Dlt645Broadcast(encode_frame(frame, self.preamble), item="freeze")
            return
        tx = self._transaction(frame, item="freeze", reply_data=0)
        yield tx
        tx.result()

    def change_baud(self, address: str, baudrate: int) -> Conversation[SerialSettings]:
        """Switch the meter's baud rate; returns the line settings to talk to it from now on."""
        frame = change_baud_request(address, baudrate, self.dialect)
        tx = self._transaction(frame, item=f"baud {baudrate}", reply_data=1)
        yield tx
        reply = tx.result()
        if reply.data != bytes((BAUD_FEATURES[baudrate],)):
            raise FrameError(
                f"meter confirmed feature byte {reply.data.hex()}",
                address=frame.address,
                item=f"baud {baudrate}",
            )
        return replace(self.settings or self.default_settings, baudrate=baudrate)


def _max_length(item: DataItem, version: int) -> int:
    """Data bytes a reply for `item` may carry (for the reply timeout)."""
    if not item.is_block:
        return item.format_for(version).length
    return sum(ITEMS_BY_NAME[name].format_for(version).length for name in item.parts)


DLT645_2007: Final = Dlt645Driver(
    name="dlt645", version=2007, default_settings=SerialSettings(baudrate=2400, parity="E")
)
DLT645_1997: Final = Dlt645Driver(
    name="dlt645-1997", version=1997, default_settings=SerialSettings(baudrate=1200, parity="E")
)

if TYPE_CHECKING:
    _drivers: tuple[MeterDriver, ...] = (DLT645_2007, DLT645_1997)
    _transactions: tuple[Exchange, ...] = (
        Dlt645Transaction(b"", "", 0, 0.0, ""),
        Dlt645Broadcast(b"", ""),
    )
