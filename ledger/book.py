"""The book: applies transfers to balances with TigerBeetle's semantics, in memory.

- **Idempotent ids.** A transfer whose id was accepted before is `EXISTS` (nothing happens) if its
  content is identical, and `ID_CONFLICT` if anything differs.
- **Linked chains.** A transfer with `linked=True` is chained to the next one in the batch; the
  chain commits entirely or not at all. The failing transfer gets its own outcome, the others
  `LINKED_EVENT_FAILED`; a batch ending inside a chain fails the chain with `LINKED_CHAIN_OPEN`.
- **Two-phase.** `pending` reserves the amount (debits_pending / credits_pending); `post` moves up
  to that amount to posted and releases the rest; `void` releases it all. A pending transfer is
  resolved at most once.
- **Floors.** A debit may not take an account's available balance (credits_posted −
  debits_posted − debits_pending) below its floor (0, or −credit limit): `EXCEEDS_FLOOR`.

The book holds no clock and does no I/O. The edge persists accepted transfers in its chain and
rebuilds the book from the chain at boot (`replay`).

**Memory.** By default the book remembers every transfer it accepted (to answer `exists`). A
long-lived holder whose transfers are durable elsewhere passes `lookup` (id -> stored transfer
or None) and calls `commit()` once they are stored: the book then keeps only balances, the
transfers since the last `commit()` (the undo journal) and two-phase transfers, so its memory
does not grow with the history. `mark()` / `rollback()` undo what was applied since a mark.
A holder that pruned old transfers (and resumed from a `state()`, `restore`) passes `pruned`
(id -> whether a transfer with that id was pruned): such an id is `exists`, never applied
again, though its content can no longer be compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ledger.accounts import Account, AccountId, unit_of
from ledger.errors import InvalidValue, TransferRefused
from ledger.transfers import Kind, Transfer


class Outcome(StrEnum):
    OK = "ok"
    EXISTS = "exists"
    ID_CONFLICT = "id_conflict"  # same id, different content
    ACCOUNT_NOT_FOUND = "account_not_found"
    EXCEEDS_FLOOR = "exceeds_floor"
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_MISMATCH = "pending_mismatch"  # post/void with other accounts or unit
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    AMOUNT_EXCEEDS_PENDING = "amount_exceeds_pending"
    VOID_AMOUNT_MISMATCH = "void_amount_mismatch"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_CHAIN_OPEN = "linked_chain_open"

    @property
    def accepted(self) -> bool:
        """True when the transfer is (now or already) part of the book."""
        return self in (Outcome.OK, Outcome.EXISTS)


@dataclass(frozen=True, slots=True)
class Balance:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def posted(self) -> int:
        """Credits minus debits, posted only: what the account holds."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can still be debited: posted balance less pending debits."""
        return self.posted - self.debits_pending


_DP, _DPOST, _CP, _CPOST = range(4)


@dataclass(frozen=True, slots=True)
class BookState:
    """A book without its history (`Book.state`): per account, in account order, debits
    pending, debits posted, credits pending, credits posted; the two-phase transfers still
    open; each resolved pending id with POST or VOID; how many transfers it applied."""

    balances: tuple[tuple[AccountId, int, int, int, int], ...]
    pendings: tuple[Transfer, ...]
    resolved: tuple[tuple[int, Kind], ...]
    count: int


class Book:
    """Balances and the set of accepted transfers.

    `open_accounts=True` is for projecting balances from a chain that was already accepted
    elsewhere: unknown accounts open on first use with no floor.
    """

    def __init__(
        self,
        accounts: Iterable[Account] = (),
        *,
        open_accounts: bool = False,
        lookup: Callable[[int], Transfer | None] | None = None,
        pruned: Callable[[int], bool] | None = None,
    ) -> None:
        self._accounts: dict[AccountId, Account] = {}
        self._totals: dict[AccountId, list[int]] = {}
        self._transfers: dict[int, Transfer] = {}  # all, or (with lookup) since commit()
        self._pendings: dict[int, Transfer] = {}  # every PENDING transfer, to post or void
        self._resolved: dict[int, Kind] = {}  # pending id -> POST or VOID
        # What rollback() undoes: applied transfers with their changes, and opened accounts.
        self._journal: list[tuple[Transfer, list[tuple[AccountId, int, int]]] | AccountId] = []
        self._count = 0
        self._open_accounts = open_accounts
        self._lookup = lookup
        self._pruned = pruned
        for account in accounts:
            self.open_account(account)

    # -- accounts ---------------------------------------------------------------------------
    def open_account(self, account: Account) -> None:
        """Open an account, or change its floor (a new credit limit). Idempotent."""
        existing = self._accounts.get(account.id)
        if existing is not None and existing.unit is not account.unit:
            raise InvalidValue(f"account {account.id} already open in {existing.unit.value}")
        self._accounts[account.id] = account
        if existing is None:
            self._totals[account.id] = [0, 0, 0, 0]
            self._journal.append(account.id)

    def account(self, account: AccountId) -> Account | None:
        return self._accounts.get(account)

    def accounts(self) -> Iterator[Account]:
        return iter(self._accounts.values())

    def balance(self, account: AccountId) -> Balance:
        totals = self._totals.get(account)
        return Balance(*totals) if totals else Balance()

    def available(self, account: AccountId) -> int:
        """`balance(account).available`, without building the `Balance` (the edge reads an
        account's pockets several times a poll cycle)."""
        totals = self._totals.get(account)
        return totals[_CPOST] - totals[_DPOST] - totals[_DP] if totals else 0

    def balances(self) -> dict[AccountId, Balance]:
        return {account: Balance(*totals) for account, totals in self._totals.items()}

    # -- transfers --------------------------------------------------------------------------
    def get(self, transfer_id: int) -> Transfer | None:
        known = self._transfers.get(transfer_id) or self._pendings.get(transfer_id)
        if known is None and self._lookup is not None:
            known = self._lookup(transfer_id)
        return known

    def __len__(self) -> int:
        return self._count

    # -- two-phase ----------------------------------------------------------------------------
    def unresolved(self) -> Iterator[Transfer]:
        """Pending transfers not yet posted or voided, in the order they were accepted."""
        return (t for i, t in self._pendings.items() if i not in self._resolved)

    def resolution(self, pending_id: int) -> Kind | None:
        """How a pending transfer was resolved (POST or VOID), or None while it is open."""
        return self._resolved.get(pending_id)

    # -- state (a balance snapshot, `ledger.snapshot`) ------------------------------------------
    def state(self) -> BookState:
        """What a committed book holds besides its history: balances (of accounts that moved),
        open two-phase transfers and how resolved ones ended. With `lookup`, enough to resume
        from (`restore`)."""
        if any(isinstance(done, tuple) for done in self._journal):  # accounts opened: no matter
            raise InvalidValue("commit() or rollback() before taking the book's state")
        return BookState(
            balances=tuple(
                (account, dp, dpost, cp, cpost)
                for account, (dp, dpost, cp, cpost) in sorted(self._totals.items())
                if dp or dpost or cp or cpost  # an account opened and never used is no state
            ),
            pendings=tuple(self.unresolved()),
            resolved=tuple(sorted(self._resolved.items())),
            count=self._count,
        )

    def restore(self, state: BookState) -> None:
        """Start an empty book from `state` (accounts open with no floor, as in a replay)."""
        if self._totals or self._count:
            raise InvalidValue("restore() needs an empty book")
        for account, *totals in state.balances:
            self._accounts[account] = Account(account, unit_of(account), None)
            self._totals[account] = list(totals)
        self._pendings = {t.id: t for t in state.pendings}
        self._resolved = dict(state.resolved)
        self._count = state.count

    # -- journal ------------------------------------------------------------------------------
    def mark(self) -> int:
        """A point to `rollback()` to."""
        return len(self._journal)

    def rollback(self, mark: int = 0) -> None:
        """Undo every transfer applied since `mark` (default: since the last `commit()`)."""
        while len(self._journal) > mark:
            done = self._journal.pop()
            if isinstance(done, tuple):
                self._undo(*done)
            else:
                del self._accounts[done], self._totals[done]

    def commit(self) -> None:
        """The transfers applied so far are durable: forget the journal and, with `lookup`,
        the transfers themselves (`get` finds them through `lookup`)."""
        self._journal.clear()
        if self._lookup is not None:
            self._transfers.clear()

    def submit(self, batch: Sequence[Transfer]) -> list[Outcome]:
        """Apply a batch; one outcome per transfer, in order. Refusals change nothing."""
        outcomes: list[Outcome] = []
        chain: list[Transfer] = []
        for transfer in batch:
            chain.append(transfer)
            if not transfer.linked:
                outcomes.extend(self._submit_chain(chain))
                chain = []
        if chain:
            outcomes.extend([Outcome.LINKED_CHAIN_OPEN] * len(chain))
        return outcomes

    def post(self, *transfers: Transfer) -> list[Outcome]:
        """Submit and raise TransferRefused unless every transfer was accepted."""
        outcomes = self.submit(transfers)
        for transfer, outcome in zip(transfers, outcomes, strict=True):
            if not outcome.accepted:
                raise TransferRefused(transfer.id, outcome)
        return outcomes

    def _submit_chain(self, chain: list[Transfer]) -> list[Outcome]:
        start = self.mark()
        outcomes: list[Outcome] = []
        for index, transfer in enumerate(chain):
            outcome, changes = self._apply(transfer)
            outcomes.append(outcome)
            if outcome is Outcome.OK:
                self._journal.append((transfer, changes))
            elif not outcome.accepted:
                self.rollback(start)
                return [
                    outcome if i == index else Outcome.LINKED_EVENT_FAILED
                    for i in range(len(chain))
                ]
        return outcomes

    def _apply(self, t: Transfer) -> tuple[Outcome, list[tuple[AccountId, int, int]]]:
        known = self.get(t.id)
        if known is not None:
            return (Outcome.EXISTS if known == t else Outcome.ID_CONFLICT), []
        if self._pruned is not None and self._pruned(t.id):
            return Outcome.EXISTS, []  # its content is gone: a conflict cannot be told apart
        for account in (t.debit, t.credit):
            if account not in self._accounts:
                if not self._open_accounts:
                    return Outcome.ACCOUNT_NOT_FOUND, []
                self.open_account(Account(account, unit_of(account), None))
        changes: list[tuple[AccountId, int, int]]
        if t.kind in (Kind.SINGLE, Kind.PENDING):
            floor = self._accounts[t.debit].floor
            if floor is not None and self.balance(t.debit).available - t.amount < floor:
                return Outcome.EXCEEDS_FLOOR, []
            if t.kind is Kind.SINGLE:
                changes = [(t.debit, _DPOST, t.amount), (t.credit, _CPOST, t.amount)]
            else:
                changes = [(t.debit, _DP, t.amount), (t.credit, _CP, t.amount)]
        else:
            outcome, changes = self._resolve(t)
            if outcome is not Outcome.OK:
                return outcome, []
        for account, slot, delta in changes:
            self._totals[account][slot] += delta
        self._transfers[t.id] = t
        self._count += 1
        if t.kind is Kind.PENDING:
            self._pendings[t.id] = t
        if t.pending_id is not None:
            self._resolved[t.pending_id] = t.kind
        return Outcome.OK, changes

    def _resolve(self, t: Transfer) -> tuple[Outcome, list[tuple[AccountId, int, int]]]:
        assert t.pending_id is not None
        pending = self._pendings.get(t.pending_id) or self.get(t.pending_id)
        done = self._resolved.get(t.pending_id)
        if pending is None and done is None:
            return Outcome.PENDING_NOT_FOUND, []
        if pending is None:  # resolved, then pruned: how it ended is still known
            pass
        elif pending.kind is not Kind.PENDING:
            return Outcome.PENDING_NOT_FOUND, []
        elif (pending.debit, pending.credit, pending.unit) != (t.debit, t.credit, t.unit):
            return Outcome.PENDING_MISMATCH, []
        if done is Kind.POST:
            return Outcome.PENDING_ALREADY_POSTED, []
        if done is Kind.VOID or pending is None:
            return Outcome.PENDING_ALREADY_VOIDED, []
        release = [(t.debit, _DP, -pending.amount), (t.credit, _CP, -pending.amount)]
        if t.kind is Kind.VOID:
            if t.amount != pending.amount:
                return Outcome.VOID_AMOUNT_MISMATCH, []
            return Outcome.OK, release
        if t.amount > pending.amount:
            return Outcome.AMOUNT_EXCEEDS_PENDING, []
        return Outcome.OK, [*release, (t.debit, _DPOST, t.amount), (t.credit, _CPOST, t.amount)]

    def _undo(self, t: Transfer, changes: list[tuple[AccountId, int, int]]) -> None:
        for account, slot, delta in changes:
            self._totals[account][slot] -= delta
        del self._transfers[t.id]
        self._count -= 1
        self._pendings.pop(t.id, None)
        if t.pending_id is not None:
            del self._resolved[t.pending_id]


def linked_batches(transfers: Iterable[Transfer]) -> Iterator[list[Transfer]]:
    """Group a sequence of accepted transfers back into the linked chains they came in."""
    chain: list[Transfer] = []
    for transfer in transfers:
        chain.append(transfer)
        if not transfer.linked:
            yield chain
            chain = []
    if chain:
        yield chain


def replay(transfers: Iterable[Transfer], accounts: Iterable[Account] = ()) -> Book:
    """Rebuild a book from transfers in chain order; raises TransferRefused if one does not
    apply (which a verified chain never causes)."""
    book = Book(accounts, open_accounts=True)
    replay_into(book, transfers)
    return book


def replay_into(book: Book, transfers: Iterable[Transfer]) -> None:
    """Apply accepted transfers in chain order to `book`, committing each linked chain."""
    for batch in linked_batches(transfers):
        for transfer, outcome in zip(batch, book.submit(batch), strict=True):
            if outcome is not Outcome.OK:
                raise TransferRefused(transfer.id, outcome)
        book.commit()
