"""The ledger's exception tree.

`LedgerError` is the root. `InvalidValue` means the caller built something the ledger cannot
hold (a float amount, a 129-bit id): a programming error. `TransferRefused` means a well-formed
transfer was refused by the book's rules and carries the `Outcome` saying why. `DecodeError` means
bytes or JSON from outside (an export, an uplink batch) are not a valid encoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.book import Outcome


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""


class InvalidValue(LedgerError, ValueError):
    """A value handed to the ledger is malformed (caller's mistake)."""


class DecodeError(LedgerError, ValueError):
    """Encoded data from outside is not a valid transfer, entry or checkpoint."""


class TransferRefused(LedgerError):
    """The book refused a transfer; `outcome` says why."""

    def __init__(self, transfer_id: int, outcome: Outcome) -> None:
        super().__init__(f"transfer {transfer_id:032x} refused: {outcome.value}")
        self.transfer_id = transfer_id
        self.outcome = outcome


class InvariantViolated(LedgerError):
    """A ledger invariant (docs/architecture.md §5.6) does not hold; `violations` lists each one."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("; ".join(violations))
        self.violations = violations
