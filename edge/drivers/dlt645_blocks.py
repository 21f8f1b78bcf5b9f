"""Which DL/T 645 block DIs a meter answers, as data, and the read plan that uses them.

DL/T 645 has no multi-DI read: one request carries one DI. A block DI (a DI with FF in a byte,
e.g. 02 01 FF 00, voltage A/B/C) is the only way to get several registers in one exchange; the
reply concatenates its parts in DI order, each in its own format. Meters differ in which blocks
they answer, so support is one row per meter model or capability (`BLOCK_SUPPORT`):

    capability       blocks it answers
    none             nothing: every item is read with its own DI (the old way, DL/T 645-1997)
    standard         the 2007 standard's energy, voltage, current, active power, status blocks
    voltbook-sim     standard + the simulated model's vendor block of every `basic` item

A block pays only where it replaces several exchanges: the standard's blocks are one class of
value each (all phases of the voltage, all tariffs of the energy), so on a single-phase `basic`
read (one value of each of seven classes) they save nothing and `plan_reads` leaves the singles.
A vendor block spanning classes (a row of `dlt645_items.ITEMS` marked `vendor`) is what brings
`basic` to one exchange; a real model gets such a row only from its vendor's document.

`plan_reads` is pure: the items a reading block wants, the blocks the meter answers and the
blocks it has refused → the rows to request. `RefusedBlocks` is the memory the driver keeps per
meter: a block answered with an error reply ("no such data") is not asked of that meter again.
`ReadPlans` keeps the plans of reading blocks: a meter's billing read asks the same every cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from edge.drivers.dlt645_items import ITEMS_BY_NAME, DataItem, ReadingBlock
from edge.drivers.dlt645_vendor import SIMULATED_MODEL
from edge.drivers.errors import DriverUsageError

NO_BLOCKS: Final = "none"
STANDARD_BLOCKS: Final = "standard"

_STANDARD: Final = (
    "forward_active_block",
    "voltage_block",
    "current_block",
    "active_power_block",
    "status_words_block",
)

# Capability → block rows the meter answers, in the order the plan prefers them.
BLOCK_SUPPORT: Final[dict[str, tuple[str, ...]]] = {
    NO_BLOCKS: (),
    STANDARD_BLOCKS: _STANDARD,
    SIMULATED_MODEL: ("basic_vendor_block", *_STANDARD),
}


def supported_blocks(capability: str) -> tuple[DataItem, ...]:
    """The block rows of `capability`; DriverUsageError names the known ones."""
    try:
        names = BLOCK_SUPPORT[capability]
    except KeyError:
        known = ", ".join(BLOCK_SUPPORT)
        raise DriverUsageError(f"no block capability {capability!r} (known: {known})") from None
    return tuple(ITEMS_BY_NAME[name] for name in names)


@dataclass(frozen=True, slots=True)
class PlannedRead:
    """One exchange of a plan: the row to request and the wanted items its reply carries."""

    row: DataItem
    wanted: tuple[DataItem, ...]

    @property
    def is_substitute(self) -> bool:
        """A block asked for in place of single items (its other parts are dropped)."""
        return self.row.is_block and self.wanted != (self.row,)


def plan_reads(
    wanted: Iterable[DataItem],
    supported: Iterable[DataItem],
    refused: Iterable[str] = (),
) -> tuple[PlannedRead, ...]:
    """The exchanges that read `wanted`: a supported, not refused block that carries two or more
    wanted single items replaces them (at the place of the first); everything else is read as
    asked. Blocks in `wanted` stay themselves."""
    rows = tuple(wanted)
    singles = {item.name for item in rows if not item.is_block}
    refused_names = frozenset(refused)
    cover: dict[str, DataItem] = {}  # single item → the block that reads it
    for block in supported:
        if block.name in refused_names:
            continue
        carried = [part for part in block.parts if part in singles and part not in cover]
        if len(carried) >= 2:
            cover.update((part, block) for part in carried)
    plan: list[PlannedRead] = []
    placed: dict[str, int] = {}  # block name → its index in `plan`
    for item in rows:
        via = cover.get(item.name)
        if via is None:
            plan.append(PlannedRead(item, (item,)))
        elif via.name in placed:
            index = placed[via.name]
            plan[index] = PlannedRead(via, (*plan[index].wanted, item))
        else:
            placed[via.name] = len(plan)
            plan.append(PlannedRead(via, (item,)))
    return tuple(plan)


@dataclass(slots=True)
class RefusedBlocks:
    """Blocks each meter refused ("no such data"); consulted before every plan."""

    by_address: dict[str, set[str]] = field(default_factory=dict)

    def remember(self, address: str, block: str) -> None:
        self.by_address.setdefault(address, set()).add(block)

    def refused(self, address: str) -> frozenset[str]:
        return frozenset(self.by_address.get(address, ()))

    def forget(self, address: str) -> None:
        """A meter replaced at this address (new firmware, new model): ask it again."""
        self.by_address.pop(address, None)


_Plan = tuple[PlannedRead, ...]


class ReadPlans:
    """`plan_reads` once per reading block, supported blocks and refusals, not once per read.

    Keyed by the identity of the block and of the supported rows (both made once, at
    configuration) and the refused names. Both are held with their plan, so an id cannot be
    reused by another object while the plan is kept.
    """

    LIMIT = 1024  # plans kept (a few per bus: its blocks × the refusals seen)

    def __init__(self) -> None:
        self._plans: dict[
            tuple[int, int, frozenset[str]], tuple[ReadingBlock, tuple[DataItem, ...], _Plan]
        ] = {}

    def plan(
        self, block: ReadingBlock, supported: tuple[DataItem, ...], refused: frozenset[str]
    ) -> _Plan:
        key = (id(block), id(supported), refused)
        kept = self._plans.get(key)
        if kept is not None and kept[0] is block and kept[1] is supported:
            return kept[2]
        plan = plan_reads(block.items, supported, refused)
        if len(self._plans) >= self.LIMIT:
            self._plans.clear()
        self._plans[key] = (block, supported, plan)
        return plan
