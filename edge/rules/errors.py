"""The rules' exception tree.

`RuleError` is the root. Rules never raise for what the world does (a register running
backwards, a load that trips, an empty balance): those are decisions. They raise only when the
shell hands them something no decision can be made from:

- `PolicyError`: a configuration that cannot be applied (a time-of-use table with a gap, a zero
  price, tiers out of order, a debounce with neither a count nor a hold time);
- `InputError`: a call the rules cannot answer (a naive `now`, a reading without the values the
  rule needs, a state that belongs to another meter).
"""

from __future__ import annotations


class RuleError(Exception):
    """Root of every error raised by `edge.rules`."""


class PolicyError(RuleError, ValueError):
    """The policy (tariff, subsidy, protection, arrears, alarm settings) is not usable."""


class InputError(RuleError, ValueError):
    """The caller passed a value the rule cannot decide from."""
