"""Block rounds: the site's `[[blocks]]` read between billing cycles and judged by protection.

    (runner, at the block's grid point) clock guard ─► read the block from the meters of the
    buses its protocols run ─► protection per meter (malicious load, overload; over-voltage
    where the block reads voltage) ─► nothing acted: new rule states in memory only
                                   └► a trip or a reclose: ONE store transaction (alarms,
                                      those meters' states, relay orders) ─► relays after it

A block round bills nothing and stores no reading: a 30-second `power` block on a hundred
meters must not write 2,880 rows a day per meter, nor a transaction a round. Its protection
states ride with the next cycle's commit (a crash forgets a suspicion, never a trip: a trip is
committed before its relay moves). Where a block's point meets the billing cycle's, the block is
read with the billing read instead (`edge.runtime.polling`, `also`) and its values are stored
and judged with it: two readings a second apart would count twice towards a debounce.

`judge_block` is the pure part: readings and states in, states and decisions out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.rules.decisions import Alarm, settle_relay
from edge.rules.protection import ProtectionPolicy, protect
from edge.runtime.accounting import scaled
from edge.runtime.polling import MeterRead
from edge.runtime.relays import RelayOrder, RelayOutcome
from edge.runtime.state import AccountRuntime, MeterRuntime


@dataclass(slots=True)
class BlockJudged:
    """What protection made of one block round."""

    quiet: dict[str, MeterRuntime] = field(default_factory=dict)  # new states, nothing decided
    acted: dict[str, MeterRuntime] = field(default_factory=dict)  # new states to commit
    alarms: list[Alarm] = field(default_factory=list)
    orders: list[RelayOrder] = field(default_factory=list)


@dataclass(slots=True)
class BlockReport:
    """One block round: how many meters answered, and what protection did about them."""

    block: str
    now: dt.datetime
    read: int = 0
    failed: int = 0
    alarms: int = 0
    outcomes: list[RelayOutcome] = field(default_factory=list)

    def summary(self) -> str:
        confirmed = sum(o.confirmed for o in self.outcomes)
        return (
            f"block {self.block} at {self.now:%H:%M:%S}: {self.read} meters read, "
            f"{self.failed} failed, {self.alarms} alarms, {len(self.outcomes)} relay commands "
            f"({confirmed} confirmed)"
        )


def judge_block(
    now: dt.datetime,
    reads: Mapping[str, MeterRead],
    meters: Mapping[str, MeterRuntime],
    accounts: Mapping[str, AccountRuntime],
    policy: ProtectionPolicy,
) -> BlockJudged:
    """Protection over a block round's readings (meters of tenants who moved out are held
    open and not judged, as in the billing cycle)."""
    out = BlockJudged()
    for address, read in reads.items():
        meter = read.meter
        if read.reading is None or accounts[meter.account].moved_out is not None:
            continue
        before = meters[address]
        protected = protect(now, scaled(read.reading, meter.multiplier), before.protection, policy)
        decisions = protected.decisions
        if not (decisions.relays or decisions.alarms):
            out.quiet[address] = dataclasses.replace(before, protection=protected.state)
            continue
        held, commands = settle_relay(before.relay.held, list(decisions.relays))
        relay = dataclasses.replace(before.relay, held=held)
        out.acted[address] = dataclasses.replace(before, protection=protected.state, relay=relay)
        out.alarms += decisions.alarms
        out.orders += [RelayOrder(meter, c.command, c.cause, c.reason, now) for c in commands]
    return out
