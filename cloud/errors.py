"""The cloud package's exception tree.

`CloudError` is the root. The API maps each branch to one HTTP answer (`cloud.app.STATUS_OF`):
`Unauthorized` 401, `Forbidden` 403, `TooManyAttempts` 429, `NotFound` 404, `Conflict` and
`Quarantined` 409, `Invalid` (and `Refused`) 422, any other `CloudError` 400. The ingest answers
`Refused` with a `refused` ack and `Quarantined` with a `quarantined` one. Every message says
what was wrong and, for `Invalid`, what to send instead. Database trouble is not in this tree:
SQLAlchemy's errors propagate, and the shell (the ingest worker, the API) decides to retry or
report.
"""

from __future__ import annotations


class CloudError(Exception):
    """Root of every error the cloud package raises on purpose."""


class NotFound(CloudError):
    """The thing named (a node, an account, a meter, a command) does not exist."""


class Invalid(CloudError):
    """Bad input from a caller; the message says what to fix."""


class Conflict(CloudError):
    """The request contradicts what is stored (e.g. a payment id reused with other content,
    or a different key for a known node)."""


class Unauthorized(CloudError):
    """No valid login: a missing, unknown, expired or revoked token, or a wrong password."""


class Forbidden(CloudError):
    """Logged in, but this role (or this merchant) may not do or see that."""


class TooManyAttempts(CloudError):
    """Logins throttled: too many attempts from one address (a locked user is answered as a
    wrong password is, `cloud.people.auth.login`)."""


class Quarantined(CloudError):
    """The node is (or must now be) quarantined — its chain forked, its key is wrong — so
    nothing goes to or comes from it until an operator clears it. `reason` is a short machine
    word (`fork`, `wrong_key`, `bad_signature`, …), `detail` the human explanation."""

    def __init__(self, node: str, reason: str, detail: str = "") -> None:
        text = f"node {node} is quarantined: {reason or 'no reason recorded'}"
        super().__init__(f"{text} ({detail})" if detail else text)
        self.node = node
        self.reason = reason
        self.detail = detail


class Refused(Invalid):
    """An uplink batch that is malformed (the peer sent garbage); nothing of it is stored."""


class IllegalTransition(Conflict):
    """An operation asked to change state in a way its table (`cloud.operations.states`) does
    not allow: `event` from `state` (`event` None: `state` is not one of its states)."""

    def __init__(self, operation: str, state: str, event: str | None) -> None:
        if event is None:
            text = f"a {operation} cannot be {state!r}: not one of its states"
        else:
            text = f"a {operation} that is {state} cannot take {event!r}"
        super().__init__(text)
        self.operation = operation
        self.state = state
        self.event = event


class PaymentRefused(Invalid):
    """A message from (or claiming to be from) a payment provider that fails its checks: a
    signature that does not verify, a stale timestamp, an unknown key serial, a resource that
    does not decrypt, an order or amount that is not ours. `reason` is a short machine word
    (`bad_signature`, `stale`, `unknown_serial`, `mismatch`, …); nothing was changed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProviderUnavailable(CloudError):
    """A payment provider (or the WeChat Official Account API) could not be reached, or
    answered with an error or a reply that fails our checks; nothing of ours changed, try
    again later."""
