"""Units of the ledger: integer Wh, integer fen, prices, and exact cost (docs/architecture.md §4).

Energy is integer watt-hours, money integer fen (0.01 CNY). A price is an integer number of
0.0001 CNY per kWh (0.8365 CNY/kWh is `Price(8365)`). The exact cost of `e` Wh at price `p` is
`e * p` units of 1e-7 CNY (`ExactCost`). Money actually charged is derived from the *cumulative*
exact cost of an account, rounded once (half up), so that rounding never drifts: after any
sequence of charges the fen charged so far equals `round(cumulative exact cost)`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import NewType

from ledger.errors import InvalidValue

Wh = NewType("Wh", int)
Fen = NewType("Fen", int)
Price = NewType("Price", int)  # 0.0001 CNY per kWh
ExactCost = NewType("ExactCost", int)  # 1e-7 CNY

EXACT_PER_FEN = 100_000  # 1 fen = 0.01 CNY = 100 000 × 1e-7 CNY
MAX_AMOUNT = 2**53 - 1  # largest integer every JSON reader keeps exact (RFC 8785)


def require_int(value: object, what: str) -> int:
    """Return `value` if it is a true int (not bool, not float), else raise InvalidValue."""
    if type(value) is not int:
        raise InvalidValue(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    return value


def exact_cost(energy: Wh, price: Price) -> ExactCost:
    """Exact cost of `energy` Wh at `price`, in 1e-7 CNY."""
    require_int(energy, "energy")
    require_int(price, "price")
    if energy < 0 or price < 0:
        raise InvalidValue(f"energy and price must be >= 0, got {energy} Wh at {price}")
    return ExactCost(energy * price)


def fen_rounded(cost: ExactCost) -> Fen:
    """Round a non-negative exact cost to fen, half up (四舍五入)."""
    require_int(cost, "exact cost")
    if cost < 0:
        raise InvalidValue(f"exact cost must be >= 0, got {cost}")
    return Fen((cost + EXACT_PER_FEN // 2) // EXACT_PER_FEN)


def charge_step(cumulative_before: ExactCost, step: ExactCost) -> tuple[Fen, ExactCost]:
    """Fen to charge for `step`, given the account's cumulative exact cost before it.

    Returns the fen for this step and the new cumulative exact cost. Summing the fen of every
    step always gives `fen_rounded(cumulative)`: rounding happens once, on the running total.
    """
    after = ExactCost(cumulative_before + step)
    return Fen(fen_rounded(after) - fen_rounded(cumulative_before)), after


def kwh_to_wh(kwh: Decimal | str) -> Wh:
    """Convert an exact decimal kWh (as printed on a meter) to integer Wh; refuses floats."""
    if isinstance(kwh, float):
        raise InvalidValue("kWh must be given as Decimal or str, never float")
    wh = Decimal(kwh) * 1000
    if wh != wh.to_integral_value():
        raise InvalidValue(f"{kwh} kWh is not a whole number of Wh")
    return Wh(int(wh))


def yuan_to_fen(yuan: Decimal | str) -> Fen:
    """Parse a yuan amount such as '19.90' to fen exactly; refuses floats and sub-fen digits."""
    if isinstance(yuan, float):
        raise InvalidValue("yuan must be given as Decimal or str, never float")
    fen = Decimal(yuan) * 100
    if fen != fen.to_integral_value():
        raise InvalidValue(f"{yuan} yuan has more than two decimal places")
    return Fen(int(fen))


def fen_to_yuan(fen: Fen) -> str:
    """Format fen as a yuan string with two decimals ('1990' → '19.90')."""
    require_int(fen, "fen")
    return str((Decimal(fen) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
