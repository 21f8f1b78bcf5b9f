"""A payment order's life, as one transition table (`cloud.operations.states.Machine`).

    created ─paid→ paid ─credited→ credited          the notice (or a query) said paid; the
                                                      recharge was booked in the same commit
    created ─expired→ closed                          unpaid past `expires` (closed at the
    created ─cancelled→ closed                        provider too), or cancelled
    created ─failed→ failed                           the provider refused the order
    closed ─paid_late→ refunding                      paid after we closed it: sent back
    paid ─refund→ refunding                           paid but cannot be credited
    credited ─refund→ refunding                       refund to the original payment
    credited ─recharge_refused→ refunding             the concentrator refused the recharge
    refunding ─refunded→ refunded ─refund→ refunding  (partial refunds: `refunded_fen`)
    refunding ─refund_failed→ failed                  the provider could not refund (alarm)

Every change is also a `payment_transitions` row with its cause (`cloud.payments.orders`).
"""

from __future__ import annotations

from enum import StrEnum

from cloud.operations.states import Machine


class OrderState(StrEnum):
    CREATED = "created"
    PAID = "paid"
    CREDITED = "credited"
    CLOSED = "closed"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    FAILED = "failed"


class OrderEvent(StrEnum):
    PAID = "paid"
    CREDITED = "credited"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    PAID_LATE = "paid_late"
    REFUND = "refund"
    RECHARGE_REFUSED = "recharge_refused"
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"


S, E = OrderState, OrderEvent
ORDER = Machine(
    "payment order", OrderState, OrderEvent, frozenset({S.CREATED}),
    {
        S.CREATED: {E.PAID: S.PAID, E.EXPIRED: S.CLOSED, E.CANCELLED: S.CLOSED,
                    E.FAILED: S.FAILED},
        S.PAID: {E.CREDITED: S.CREDITED, E.REFUND: S.REFUNDING},
        S.CREDITED: {E.REFUND: S.REFUNDING, E.RECHARGE_REFUSED: S.REFUNDING},
        S.CLOSED: {E.PAID_LATE: S.REFUNDING},
        S.REFUNDING: {E.REFUNDED: S.REFUNDED, E.REFUND_FAILED: S.FAILED},
        S.REFUNDED: {E.REFUND: S.REFUNDING},
        S.FAILED: {},
    },
)  # fmt: skip
