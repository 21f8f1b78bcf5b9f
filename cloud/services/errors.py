"""The exceptions raised when a service cannot be found or started.

Every message says what to do about it (install a package, set a variable, read a log), because
the person who sees it is usually running `make test` or `make demo` on a new machine.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A service (broker, database) could not be provided."""


class ServiceNotFound(ServiceError):
    """The service's program is not installed on this machine."""


class ServiceStartFailed(ServiceError):
    """The program is installed but did not start (its log tail is in the message)."""
