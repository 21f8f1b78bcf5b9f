"""A concentrator that applies the cloud's commands exactly as `ledger.signed.CommandKind`
specifies — the contract ids, accounts, codes and refusals — with a tiny balance model, and
uploads the entries and results through the real ingest (`Site.upload`). Only what the money
operations' tests need: no meters, no rules.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from cloud.db.engine import session_factory
from cloud.db.models import Command, CommandStatus
from ledger import entry_ids
from ledger.accounts import Pocket, System, pocket_id, system_id, unit_of
from ledger.ids import derive_id
from ledger.transfers import Code, Kind, TimeSource, Transfer
from ledger.wire import AckStatus
from tests.cloud.api.conftest import NODE, OTHER, Site
from tests.cloud.fake_edge import T0

CASH = system_id(System.CASH_IN_TRANSIT)
CORRECTIONS = system_id(System.CORRECTIONS_FEN)
REFUNDS = system_id(System.REFUNDS_PAYABLE)
TRANSIT = system_id(System.MOVES_IN_TRANSIT)


def prepaid(account: str) -> str:
    return pocket_id(account, Pocket.PREPAID)


def subsidy(account: str) -> str:
    return pocket_id(account, Pocket.SUBSIDY)


def edge_transfer(
    transfer_id: int,
    debit: str,
    credit: str,
    amount: int,
    code: Code,
    *,
    kind: Kind = Kind.SINGLE,
    pending_id: int | None = None,
    linked: bool = False,
    refs: dict[str, Any] | None = None,
) -> Transfer:
    return Transfer(
        id=transfer_id,
        debit=debit,  # type: ignore[arg-type]
        credit=credit,  # type: ignore[arg-type]
        amount=amount,
        unit=unit_of(debit),  # type: ignore[arg-type]
        code=code,
        time=T0.isoformat(),
        time_source=TimeSource.NTP,
        kind=kind,
        pending_id=pending_id,
        linked=linked,
        refs=refs or {},
    )


class Refusal(Exception):
    pass


@dataclass
class NodeModel:
    """What one concentrator holds: available prepaid and subsidy, open pendings."""

    prepaid: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    subsidy: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    pendings: dict[str, Transfer] = field(default_factory=dict)  # hex id → pending
    applied: set[str] = field(default_factory=set)
    periods: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # issued
    arriving: dict[str, str] = field(default_factory=dict)  # account → move: subsidy held
    arrived: set[str] = field(default_factory=set)  # the moves whose move_in was applied


def opening_models() -> dict[str, NodeModel]:
    """The site fixture's opening (`conftest.opening_transfers`) as balances."""
    models = {NODE: NodeModel(), OTHER: NodeModel()}
    models[NODE].prepaid["A0001"] = 10_000 - 837 - 1_000
    models[NODE].subsidy["A0001"] = 50_000 - 1_200
    models[NODE].subsidy["A0002"] = 50_000
    models[NODE].periods["A0001"] = {"2026-11"}
    models[NODE].periods["A0002"] = {"2026-11"}
    return models


@dataclass
class ContractEdge:
    site: Site
    models: dict[str, NodeModel] = field(default_factory=opening_models)
    refuse: set[str] = field(default_factory=set)  # command ids to refuse whatever they are

    def pending_commands(self, node: str) -> list[Command]:
        with session_factory(self.site.engine)() as session:
            rows = session.scalars(
                select(Command)
                .where(Command.node == node, Command.status == CommandStatus.PENDING.value)
                .order_by(Command.seq)
            ).all()
            session.expunge_all()
        return [c for c in rows if c.id not in self.models[node].applied]

    def sync(self, node: str) -> int:
        """Apply the node's pending commands and upload the result; how many were applied."""
        model = self.models[node]
        transfers: list[Transfer] = []
        results = []
        commands = self.pending_commands(node)
        for command in commands:
            model.applied.add(command.id)
            try:
                if command.id in self.refuse:
                    raise Refusal("told to")
                booked = self.apply(model, command.kind, dict(command.args))
            except Refusal as exc:
                results.append({"command": command.id, "status": "refused", "seqs": [],
                                "outcomes": [], "reason": str(exc)})  # fmt: skip
                continue
            transfers += booked
            results.append({"command": command.id, "status": "applied", "seqs": [],
                            "outcomes": ["ok"] * len(booked)})  # fmt: skip
        if commands:
            ack = self.site.upload(node, transfers, results=results)
            assert ack.status is AckStatus.OK, ack
        return len(commands)

    def issue_subsidy(self, node: str, account: str, period: str, wh: int = 10_000) -> bool:
        """The node's monthly subsidy rule for `account`: once per period it knows of (its
        own issues and those a move_in brought); whether it issued."""
        model = self.models[node]
        if period in model.periods[account] or account in model.arriving:
            return False  # issued, or held until the move bringing the account is in
        model.periods[account].add(period)
        model.subsidy[account] += wh
        issue = edge_transfer(derive_id(Code.SUBSIDY_ISSUE.value, account, period),
                              system_id(System.SUBSIDY_ISSUED), subsidy(account), wh,
                              Code.SUBSIDY_ISSUE, refs={"period": period})  # fmt: skip
        assert self.site.upload(node, [issue]).status is AckStatus.OK
        return True

    def sync_all(self, rounds: int = 6) -> None:
        for _ in range(rounds):
            if not sum(self.sync(node) for node in (NODE, OTHER)):
                return

    def apply(self, model: NodeModel, kind: str, args: dict[str, Any]) -> list[Transfer]:
        if kind == "recharge":
            model.prepaid[args["account"]] += args["fen"]
            return [edge_transfer(entry_ids.recharge(args["payment"]), CASH,
                                  prepaid(args["account"]), args["fen"], Code.RECHARGE,
                                  refs={"payment": args["payment"]})]  # fmt: skip
        if kind == "correction":
            account, fen, ref = args["account"], args["fen"], args["correction"]
            if fen < 0 and model.prepaid[account] < -fen:
                raise Refusal("below the floor")
            model.prepaid[account] += fen
            legs = (CORRECTIONS, prepaid(account)) if fen > 0 else (prepaid(account), CORRECTIONS)
            return [edge_transfer(entry_ids.correction(ref), *legs, abs(fen), Code.CORRECTION,
                                  refs={"correction": ref})]  # fmt: skip
        if kind == "refund":
            account, ref = args["account"], args["refund"]
            available = model.prepaid[account]
            pockets = {(p.code, p.debit) for p in model.pendings.values()}
            if available <= 0 or (Code.REFUND, prepaid(account)) in pockets:
                raise Refusal("nothing refundable")
            pending = edge_transfer(entry_ids.refund(ref), prepaid(account), REFUNDS, available,
                                    Code.REFUND, kind=Kind.PENDING,
                                    linked=args["grace_wh"] > 0, refs={"refund": ref})  # fmt: skip
            model.prepaid[account] = 0
            model.pendings[f"{pending.id:032x}"] = pending
            out = [pending]
            if args["grace_wh"] > 0:
                out.append(edge_transfer(entry_ids.grace(ref), system_id(System.GRACE_ISSUED),
                                         pocket_id(account, Pocket.GRACE), args["grace_wh"],
                                         Code.GRACE_ISSUE, refs={"refund": ref}))  # fmt: skip
            return out
        if kind == "settle":
            pending = model.pendings.pop(args["pending"], None)
            if pending is None:
                raise Refusal("no such pending")
            action = Kind.POST if args["action"] == "post" else Kind.VOID
            if action is Kind.VOID:
                model.prepaid[pending.debit.partition(":")[0]] += pending.amount
            return [dataclasses.replace(
                pending, id=entry_ids.settle(args["pending"], args["action"]), kind=action,
                pending_id=pending.id, linked=False,
                refs={**pending.refs, "pending": args["pending"]})]  # fmt: skip
        if kind == "move_out":
            account, ref = args["account"], args["move"]
            out = []
            if model.prepaid[account] < 0:
                raise Refusal("debt")
            if model.prepaid[account] > 0:
                pending = edge_transfer(entry_ids.move_out(ref), prepaid(account), TRANSIT,
                                        model.prepaid[account], Code.MOVE, kind=Kind.PENDING,
                                        refs={"move": ref})  # fmt: skip
                model.pendings[f"{pending.id:032x}"] = pending
                out.append(pending)
            if model.subsidy[account] > 0:
                out.append(edge_transfer(entry_ids.move_expire(ref), subsidy(account),
                                         system_id(System.SUBSIDY_EXPIRED),
                                         model.subsidy[account], Code.SUBSIDY_EXPIRE,
                                         refs={"move": ref}))  # fmt: skip
            model.prepaid[account] = model.subsidy[account] = 0
            return [dataclasses.replace(t, linked=i < len(out) - 1) for i, t in enumerate(out)]
        if kind == "config":
            model.arriving = {a["id"]: a["arriving"] for a in args["documents"]["accounts"]
                              if a.get("arriving") not in (None, *model.arrived)}  # fmt: skip
            return []
        if kind == "move_in":
            account = args["account"]
            model.prepaid[account] += args["fen"]
            model.periods[account] |= set(args.get("subsidy_periods", ()))
            model.arrived.add(args["move"])
            if model.arriving.get(account) == args["move"]:
                del model.arriving[account]
            if not args["fen"]:
                return []  # nothing to carry: nothing booked
            return [edge_transfer(entry_ids.move_in(args["move"]), TRANSIT,
                                  prepaid(args["account"]), args["fen"], Code.MOVE,
                                  refs={"move": args["move"]})]  # fmt: skip
        return []  # meter_swap (billing not modelled), relay, time
