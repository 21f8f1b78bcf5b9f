"""Every alarm kind the system raises, as data: who raises it, the pop-up group a user mutes it
by (`cloud.web.live`) and, for the cloud's own, its severity (`cloud.chains.alarms.raise_alarm`;
a concentrator sends its own with each alarm). Each has its words in `cloud.web.catalogue`
(`alarm_kind_<code>`, zh-CN and English); a kind not here (a concentrator of a newer version)
is shown by its code under a generic label.

The concentrators' kinds are listed by their codes: the cloud never imports the edge, and the
codes are the contract, as the ingest receives them (`ledger.wire`, events of category
`alarm`). `tests/cloud/test_alarm_kinds.py` reads both trees' source (every `raise_alarm`, every
alarm event the edge stores, every `edge.rules.decisions.KindRow`) and fails when a kind
raised anywhere is missing here or has no words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["cloud", "edge"]
Group = Literal["balance", "safety", "meters", "link", "system"]
Severity = Literal["info", "warning", "critical"]

# The groups a user mutes in the pop-up, in the settings page's order.
GROUPS: tuple[Group, ...] = ("balance", "safety", "meters", "link", "system")


@dataclass(frozen=True, slots=True)
class KindRow:
    code: str
    source: Source  # who raises it
    group: Group = "system"
    severity: Severity = "warning"  # the cloud's own only: an edge's alarm carries its own


def _cloud(code: str, group: Group = "system", severity: Severity = "warning") -> KindRow:
    return KindRow(code, "cloud", group, severity)


def _edge(code: str, group: Group = "system") -> KindRow:
    return KindRow(code, "edge", group)


KINDS: tuple[KindRow, ...] = (
    # The concentrators' rules (`edge.rules.decisions.KindRow`).
    _edge("low_balance", "balance"),
    _edge("arrears_trip", "balance"),
    _edge("arrears_close", "balance"),  # the power is back: info
    _edge("unpaid_energy", "balance"),
    _edge("subsidy_missed", "balance"),
    _edge("malicious_load", "safety"),
    _edge("overload", "safety"),
    _edge("over_voltage", "safety"),
    _edge("reclose", "safety"),
    _edge("lockout", "safety"),
    _edge("register_backwards", "meters"),
    _edge("register_jump", "meters"),
    # The concentrators' runtime (`edge.runtime.events.RuntimeKind` raised as alarms).
    _edge("meter_unreadable", "meters"),
    _edge("relay_failed", "meters"),
    _edge("energy_quantisation", "meters"),
    _edge("meter_window_failed", "meters"),
    _edge("bus_down", "link"),
    _edge("read_success_low", "link"),
    _edge("clock_implausible", "link"),
    _edge("cycle_overrun"),
    _edge("store_check_failed"),
    # The concentrators' sync, commands and updates (`edge.sync`).
    _edge("sync_ack_rejected"),
    _edge("sync_cloud_copy_differs"),
    _edge("sync_refused"),
    _edge("sync_quarantined"),
    _edge("sync_cloud_oplog_behind"),
    _edge("command_rejected"),
    _edge("update_handover_failed"),
    # The cloud's: the ingest, presence and inventory.
    _cloud("node_silent", "link"),  # `cloud.operations.silence`
    _cloud("refused_batch"),
    _cloud("refused_status"),
    _cloud("retired_upload"),  # a box taken over is alive: its store can be recovered
    _cloud("quarantined", severity="critical"),
    _cloud("quarantine_cleared", severity="info"),
    _cloud("inventory_mismatch"),
    _cloud("claim_refused"),
    # The cloud's: money the edge booked otherwise than the cloud asked.
    _cloud("recharge_refused", severity="critical"),  # the payer is owed money
    _cloud("recharge_after_void", severity="critical"),
    _cloud("recharge_mismatch", severity="critical"),
    _cloud("correction_mismatch", severity="critical"),
    _cloud("refund_mismatch", severity="critical"),
    _cloud("refund_settle_refused", severity="critical"),
    _cloud("move_mismatch", severity="critical"),
    _cloud("move_registry"),
    _cloud("takeover_refused", severity="critical"),  # a dead box's accounts are billed by nobody
    # The cloud's: payments and backups.
    _cloud("payment_mismatch"),
    _cloud("payment_not_credited"),
    _cloud("payment_refund_failed", severity="critical"),  # a payer has not got money back
    _cloud("reconciliation_mismatch", severity="critical"),  # the books and a bill disagree
    _cloud("restore_drill_failed", severity="critical"),  # the latest backup would not restore
)

BY_CODE: dict[str, KindRow] = {k.code: k for k in KINDS}


def severity_of(code: str) -> Severity:
    """The severity the cloud gives an alarm of its own (a warning when it is not listed)."""
    known = BY_CODE.get(code)
    return "warning" if known is None else known.severity


def group_of(code: str) -> Group:
    """The pop-up group of a kind; `system` for one not listed."""
    known = BY_CODE.get(code)
    return "system" if known is None else known.group
