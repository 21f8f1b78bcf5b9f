"""Billing and protection rules: pure functions over typed values (docs/architecture.md §6.2).

Each rule takes `now` (aware, in the site's zone), the readings or balances it judges, its own
state and a policy, and returns `Decided(state, decisions)`: transfers to post, relay actions,
alarms. No I/O, no clock, no randomness: a month of billing runs in milliseconds in a test.

- `tariffs`: flat, time-of-use and tiered prices; exact cost of an interval's energy.
- `consumption`: a meter's register delta paid subsidy → prepaid → grace → credit; a swapped
  meter's final bill.
- `subsidy`: monthly issue exactly once per period, month-end clear or carry-over.
- `protection`: malicious load (total and step), overload, over-voltage; reclose, lockout.
- `arrears`: cut-off at zero or on schedule, never in friendly hours; close after a top-up.
- `low_balance`: alarms by money, energy or days left, grouped by building, floor and shop.
- `clock_check`: `judge_clock`, whether the system time is plausible on a box with no RTC.
- `operations`: the transfers of the cloud's money commands (correction, refund, settle, move
  out, move in), or the reason to refuse one.
- `decisions`, `pockets`, `times`, `errors`: the values the rules share.
"""
