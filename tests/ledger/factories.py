"""Small builders for ledger tests (test code, not library code)."""

from __future__ import annotations

from ledger.accounts import Account, AccountId, Pocket, System, pocket_id, system_id, unit_of
from ledger.transfers import Code, Kind, RefValue, TimeSource, Transfer

T0 = "2026-11-01T08:00:00+08:00"
CASH = system_id(System.CASH_IN_TRANSIT)
SALES = system_id(System.ENERGY_SALES)
ISSUED = system_id(System.SUBSIDY_ISSUED)
USED = system_id(System.SUBSIDY_USED)


def prepaid(owner: str = "A0001") -> AccountId:
    return pocket_id(owner, Pocket.PREPAID)


def subsidy(owner: str = "A0001") -> AccountId:
    return pocket_id(owner, Pocket.SUBSIDY)


def accounts(*owners: str, credit_limit: int = 0) -> list[Account]:
    out = [Account.for_id(system_id(s)) for s in System]
    for owner in owners:
        out.append(Account.for_id(prepaid(owner), credit_limit))
        out += [Account.for_id(pocket_id(owner, p)) for p in Pocket if p is not Pocket.PREPAID]
    return out


def transfer(
    id: int,
    debit: AccountId,
    credit: AccountId,
    amount: int,
    code: Code = Code.CORRECTION,
    *,
    kind: Kind = Kind.SINGLE,
    pending_id: int | None = None,
    linked: bool = False,
    refs: dict[str, RefValue] | None = None,
) -> Transfer:
    return Transfer(
        id=id,
        debit=debit,
        credit=credit,
        amount=amount,
        unit=unit_of(debit),
        code=code,
        time=T0,
        time_source=TimeSource.NTP,
        kind=kind,
        pending_id=pending_id,
        linked=linked,
        refs=refs or {},
    )


def sample_transfers() -> list[Transfer]:
    """A small, varied history: recharge, subsidy, consumption, two-phase refund, linked legs."""
    from ledger.units import ExactCost, Price, Wh, charge_step, exact_cost

    fen, cum = charge_step(ExactCost(0), exact_cost(Wh(1230), Price(8365)))
    meter = {"meter": "123456789012", "reg_from": 1_000_000, "reg_to": 1_003_230}
    return [
        transfer(1, CASH, prepaid(), 5000, Code.RECHARGE, refs={"payment": "WX-0001"}),
        transfer(2, ISSUED, subsidy(), 2000, Code.SUBSIDY_ISSUE, refs={"period": "2026-11"}),
        transfer(
            3, subsidy(), USED, 2000, Code.CONSUME, linked=True, refs={**meter, "energy_wh": 2000}
        ),
        transfer(
            4,
            prepaid(),
            SALES,
            fen,
            Code.CONSUME,
            refs={**meter, "energy_wh": 1230, "cost_cum": cum},
        ),
        transfer(
            5, prepaid(), system_id(System.REFUNDS_PAYABLE), 1000, Code.REFUND, kind=Kind.PENDING
        ),
        transfer(
            6,
            prepaid(),
            system_id(System.REFUNDS_PAYABLE),
            1000,
            Code.REFUND,
            kind=Kind.POST,
            pending_id=5,
            refs={"command": "C-77"},
        ),
    ]


VECTOR_SEED = bytes(range(32))
VECTOR_NODE = "edge-0001"


def sample_records(checkpoint_every: int = 3, version: int = 1) -> list[object]:
    """The frozen vector chain: entries with a checkpoint every few entries and at the end,
    their bodies in format `version`."""
    from ledger.chain import Chain, NodeKey

    key = NodeKey.from_seed(VECTOR_SEED)
    chain = Chain(VECTOR_NODE, version=version)
    records: list[object] = []
    transfers = sample_transfers()
    for i, t in enumerate(transfers, 1):
        records.append(chain.append(t))
        if i % checkpoint_every == 0 or i == len(transfers):
            records.append(chain.checkpoint(key))
    return records
