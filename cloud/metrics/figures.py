"""The cloud's state as Prometheus gauges, read from the database at every scrape.

A custom collector (`prometheus_client`'s `Collector`): nothing is counted in memory, so the
figures equal the database, survive a restart and are the same from every API process.

    voltbook_node_online{node}                      1 while its retained status says online
    voltbook_node_silent{node}                      1 while that status says online but
                                                    nothing came for `silent_after`
                                                    (`cloud.db.presence`): count it offline
    voltbook_node_quarantined{node}                 1 while it is quarantined
    voltbook_node_last_seen_timestamp_seconds{node} its last batch or status (Unix time)
    voltbook_ledger_head_seq{node}                  its chain head as the cloud holds it
    voltbook_ingest_newest_reading_timestamp_seconds{node}   its newest reading stored
    voltbook_ingest_lag_seconds{node}               now - that reading: how far the view lags
    voltbook_ingest_batches_refused_total{node}     batches refused: one `refused_batch` alarm
                                                    each (node `unregistered`: a name the
                                                    registry does not hold)
    voltbook_commands{state}                        signed commands by state (CommandStatus)
    voltbook_commands_oldest_seconds{state}         age of the oldest pending / delivered one
    voltbook_payment_orders{provider, state}        payment orders by state (OrderState)
    voltbook_payment_paid_uncredited_oldest_seconds age of the oldest order paid, not credited
    voltbook_payment_refunds{state}                 refunds to the original payment by state
    voltbook_payment_refund_processing_oldest_seconds   the oldest refund still processing
    voltbook_restore_drill_success                  1 passed; 0 failed, or its file unreadable
    voltbook_restore_drill_last_run_timestamp_seconds   when it finished (0: never)
    voltbook_metrics_database_up                    0: the database could not be read (the
                                                    figures above are then absent)

The ingest lag uses the newest reading's own time, as the edge stamped it: a node offline, a
broker down or an ingest stuck all make it grow; a node whose meters all stopped answering
does too (the edge's `bus_down` alarm says which). Ages are 0 when nothing waits. Every state
of a kind is reported, 0 when none is in it, so an alert on a state never meets "no data".
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models import Alarm, Command, CommandStatus, Concentrator, MeterState, NodeStatus
from cloud.db.payments import PaymentOrder, PaymentRefund
from cloud.db.presence import Presence, presence
from cloud.metrics.restore_drill import DrillStatusError, read_drill

log = logging.getLogger(__name__)

CLOUD_NODE = "cloud"  # the cloud's own chain (`cloud.keys.CLOUD_NODE`): not a concentrator
UNREGISTERED = "unregistered"  # the label of refusals whose node the registry does not hold
REFUSED_BATCH = "refused_batch"  # the alarm `cloud.ingest.handler` raises per refused batch
OPEN_COMMANDS = (CommandStatus.PENDING.value, CommandStatus.DELIVERED.value)
# `cloud.payments.states.OrderState` and the providers (this layer sits below payments; a test
# holds these to them).
ORDER_STATES = ("created", "paid", "credited", "closed", "refunding", "refunded", "failed")
PROVIDERS = ("wechat", "alipay")
REFUND_STATES = ("processing", "success", "closed", "abnormal")

Clock = Callable[[], dt.datetime]


def _unix(moment: dt.datetime) -> float:
    return moment.timestamp()


def _age(now: dt.datetime, since: dt.datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


class DatabaseFigures(Collector):
    """The gauges above, from `sessions` (read-only ones) at every `collect()`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        now: Clock,
        restore_drill: Path | None,
        silent_after: dt.timedelta,
    ) -> None:
        self.sessions = sessions
        self.now = now
        self.restore_drill = restore_drill
        self.silent_after = silent_after

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "voltbook_metrics_database_up", "1 when the database could be read for this scrape"
        )
        try:
            with self.sessions() as session:
                families = [*_nodes(session, self.now(), self.silent_after),
                            *_commands(session, self.now()),
                            *_payments(session, self.now())]  # fmt: skip
        except SQLAlchemyError:
            log.exception("metrics: the database could not be read")
            up.add_metric([], 0)
            families = []
        else:
            up.add_metric([], 1)
        yield up
        yield from families
        yield from _restore_drill(self.restore_drill)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no description at registration: it would query the database


def _nodes(session: Session, now: dt.datetime, silent_after: dt.timedelta) -> list[Metric]:
    online = GaugeMetricFamily("voltbook_node_online", "1 while the node says it is online",
                               labels=["node"])  # fmt: skip
    silent = GaugeMetricFamily(
        "voltbook_node_silent",
        "1 while the node says it is online but has sent nothing for the silence limit",
        labels=["node"],
    )
    quarantined = GaugeMetricFamily(
        "voltbook_node_quarantined", "1 while the node is quarantined", labels=["node"]
    )
    seen = GaugeMetricFamily(
        "voltbook_node_last_seen_timestamp_seconds",
        "when the node's last batch or status arrived",
        labels=["node"],
    )
    head = GaugeMetricFamily(
        "voltbook_ledger_head_seq", "the node's chain head as the cloud holds it", labels=["node"]
    )
    newest = GaugeMetricFamily(
        "voltbook_ingest_newest_reading_timestamp_seconds",
        "the time of the newest reading stored for the node",
        labels=["node"],
    )
    lag = GaugeMetricFamily(
        "voltbook_ingest_lag_seconds",
        "now minus the newest reading stored for the node",
        labels=["node"],
    )
    refused = CounterMetricFamily(
        "voltbook_ingest_batches_refused",
        "uplink batches refused (not a batch, another node's, an unregistered node)",
        labels=["node"],
    )
    readings = dict(
        session.execute(
            select(MeterState.node, func.max(MeterState.last_reading)).group_by(MeterState.node)
        ).all()
    )
    nodes = session.execute(
        select(Concentrator.node, Concentrator.status, Concentrator.online,
               Concentrator.last_seen, Concentrator.head_seq)
        .where(Concentrator.node != CLOUD_NODE)
        .order_by(Concentrator.node)
    ).all()  # fmt: skip
    known = set()
    for node, status, is_online, last_seen, head_seq in nodes:
        known.add(node)
        online.add_metric([node], int(bool(is_online)))
        heard = presence(bool(is_online), last_seen, now - silent_after)
        silent.add_metric([node], int(heard is Presence.SILENT))
        quarantined.add_metric([node], int(status == NodeStatus.QUARANTINED.value))
        head.add_metric([node], head_seq)
        if last_seen is not None:
            seen.add_metric([node], _unix(last_seen))
        reading = readings.get(node)
        if reading is not None:
            newest.add_metric([node], _unix(reading))
            lag.add_metric([node], _age(now, reading))
    counts: dict[str, int] = dict.fromkeys(sorted(known), 0)
    for alarm_node, count in session.execute(
        select(Alarm.node, func.count()).where(Alarm.kind == REFUSED_BATCH).group_by(Alarm.node)
    ).all():
        label = alarm_node if alarm_node in known else UNREGISTERED
        counts[label] = counts.get(label, 0) + count
    for label, count in counts.items():
        refused.add_metric([label], count)
    return [online, silent, quarantined, seen, head, newest, lag, refused]


def _commands(session: Session, now: dt.datetime) -> list[Metric]:
    by_state = GaugeMetricFamily("voltbook_commands", "signed commands by state", labels=["state"])
    oldest = GaugeMetricFamily(
        "voltbook_commands_oldest_seconds",
        "age of the oldest command still in this state (0: none)",
        labels=["state"],
    )
    counts = dict(
        session.execute(select(Command.status, func.count()).group_by(Command.status)).all()
    )
    for status in CommandStatus:
        by_state.add_metric([status.value], counts.get(status.value, 0))
    issued = dict(
        session.execute(
            select(Command.status, func.min(Command.issued))
            .where(Command.status.in_(OPEN_COMMANDS))
            .group_by(Command.status)
        ).all()
    )
    for state in OPEN_COMMANDS:
        oldest.add_metric([state], _age(now, issued.get(state)))
    return [by_state, oldest]


def _payments(session: Session, now: dt.datetime) -> list[Metric]:
    orders = GaugeMetricFamily(
        "voltbook_payment_orders", "payment orders by provider and state",
        labels=["provider", "state"],
    )  # fmt: skip
    counts = {
        (provider, state): count
        for provider, state, count in session.execute(
            select(PaymentOrder.provider, PaymentOrder.state, func.count())
            .group_by(PaymentOrder.provider, PaymentOrder.state)
        ).all()
    }  # fmt: skip
    providers = sorted({*PROVIDERS, *(p for p, _ in counts)})
    for provider in providers:
        for state in sorted({*ORDER_STATES, *(s for p, s in counts if p == provider)}):
            orders.add_metric([provider, state], counts.get((provider, state), 0))
    paid_since = session.scalar(
        select(func.min(func.coalesce(PaymentOrder.paid_at, PaymentOrder.created))).where(
            PaymentOrder.state == "paid"
        )
    )
    uncredited = GaugeMetricFamily(
        "voltbook_payment_paid_uncredited_oldest_seconds",
        "age of the oldest order paid and not yet credited (0: none)",
    )
    uncredited.add_metric([], _age(now, paid_since))
    refunds = GaugeMetricFamily(
        "voltbook_payment_refunds", "refunds to the original payment by state", labels=["state"]
    )
    refund_counts = dict(
        session.execute(
            select(PaymentRefund.state, func.count()).group_by(PaymentRefund.state)
        ).all()
    )
    for state in sorted({*REFUND_STATES, *refund_counts}):
        refunds.add_metric([state], refund_counts.get(state, 0))
    processing_since = session.scalar(
        select(func.min(PaymentRefund.created)).where(PaymentRefund.state == "processing")
    )
    processing = GaugeMetricFamily(
        "voltbook_payment_refund_processing_oldest_seconds",
        "age of the oldest refund still processing (0: none)",
    )
    processing.add_metric([], _age(now, processing_since))
    return [orders, uncredited, refunds, processing]


def _restore_drill(path: Path | None) -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "voltbook_restore_drill_success",
        "1: the last restore drill passed; 0: it failed or its result cannot be read",
    )
    last_run = GaugeMetricFamily(
        "voltbook_restore_drill_last_run_timestamp_seconds",
        "when the last restore drill finished (0: never)",
    )
    try:
        result = None if path is None else read_drill(path)
    except DrillStatusError as exc:
        log.warning("metrics: %s", exc)
        success.add_metric([], 0)
        last_run.add_metric([], 0)
    else:
        if result is not None:
            success.add_metric([], int(result.ok))
        last_run.add_metric([], 0 if result is None else _unix(result.finished))
    yield success
    yield last_run
