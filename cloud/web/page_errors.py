"""Errors a page raises to be answered as a page (`cloud.web.errors` turns them into one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloud.errors import CloudError

if TYPE_CHECKING:
    from cloud.people.auth import Principal


class PageError(CloudError):
    """An error shown as a page: `key` is its catalogue message, `status` the HTTP status."""

    def __init__(self, key: str, status: int) -> None:
        super().__init__(key)
        self.key, self.status = key, status


class NotMerchant(CloudError):
    """A staff login on the merchant's page."""


class NotStaff(CloudError):
    """A merchant's login on the console: sent to its phone page."""


class Refused(CloudError):
    """A staff role on a console screen that is not its own: the refusal page, with its menu."""

    def __init__(self, who: Principal) -> None:
        super().__init__(f"{who.user} ({who.role.value}) may not open this screen")
        self.who = who
