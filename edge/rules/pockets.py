"""An account's spendable pockets, as the rules see them (read from the book by the shell).

Balances are the book's *available* balances (posted less pending debits): what a transfer can
still take. `credit_limit_fen` is how far the prepaid pocket may go below zero (the book's floor
is `-credit_limit_fen`). `debt_fen` is what the account owes for energy it used with no money
left (the debt pocket's balance, negated: ≥ 0). `water_subsidy_l` is the free water left
(litres); water is paid from the same prepaid pocket and owed to the same debt pocket.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ledger.accounts import AccountId, Pocket, pocket_id
from ledger.book import Book
from ledger.units import Fen, Wh

NO_WH = Wh(0)
NO_FEN = Fen(0)
_READ = (Pocket.SUBSIDY, Pocket.PREPAID, Pocket.GRACE, Pocket.DEBT, Pocket.WATER_SUBSIDY)


@lru_cache(maxsize=65536)
def _pocket_ids(owner: str) -> tuple[AccountId, ...]:
    """The ids of the pockets `from_book` reads, in `_READ` order: checked and built once per
    owner, not at every cycle's look at the book."""
    return tuple(pocket_id(owner, pocket) for pocket in _READ)


@dataclass(frozen=True, slots=True)
class Pockets:
    subsidy_wh: Wh = NO_WH
    prepaid_fen: Fen = NO_FEN
    grace_wh: Wh = NO_WH
    credit_limit_fen: Fen = NO_FEN
    debt_fen: Fen = NO_FEN
    water_subsidy_l: int = 0

    @property
    def spendable_fen(self) -> int:
        """Fen the prepaid pocket can still pay before it reaches its floor."""
        return self.prepaid_fen + self.credit_limit_fen

    @property
    def exhausted(self) -> bool:
        """Nothing left to pay energy with: no subsidy, no grace, prepaid at its floor."""
        return self.subsidy_wh <= 0 and self.grace_wh <= 0 and self.spendable_fen <= 0

    @property
    def water_exhausted(self) -> bool:
        """Nothing left to pay water with: no free water, prepaid at its floor."""
        return self.water_subsidy_l <= 0 and self.spendable_fen <= 0

    @classmethod
    def from_book(cls, book: Book, owner: str) -> Pockets:
        """The pockets of `owner` in `book` (an unopened prepaid pocket has no credit)."""
        subsidy, prepaid, grace, debt, water_subsidy = _pocket_ids(owner)
        account = book.account(prepaid)
        floor = account.floor if account is not None and account.floor is not None else 0
        return cls(
            subsidy_wh=Wh(book.available(subsidy)),
            prepaid_fen=Fen(book.available(prepaid)),
            grace_wh=Wh(book.available(grace)),
            credit_limit_fen=Fen(-floor),
            debt_fen=Fen(-book.available(debt)),
            water_subsidy_l=book.available(water_subsidy),
        )
