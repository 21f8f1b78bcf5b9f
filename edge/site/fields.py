"""Typed access to one hand-written table (a TOML table or a configuration document).

Every getter checks the type and the range and raises `SiteConfigError` naming the file, the
table or document and the field, so that a typo in `site.toml` or a bad document pushed from
the cloud stops the runtime with a sentence an installer can act on, not a KeyError.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from edge.site.errors import SiteConfigError

E = TypeVar("E")

_MISSING: Final[Any] = object()


class Fields:
    """The fields of one table; `where` names it in errors (e.g. "rules document 'subsidy'")."""

    def __init__(self, path: Path, where: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise SiteConfigError(path, f"{where} is not a table of fields")
        self.path = path
        self.where = where
        self.data: Mapping[str, Any] = data
        self._used: set[str] = set()

    def problem(self, name: str, wanted: str, found: object = _MISSING) -> SiteConfigError:
        got = "it is missing" if found is _MISSING else f"got {found!r}"
        return SiteConfigError(self.path, f"{self.where}: {name} must be {wanted}, {got}")

    def _get(self, name: str, default: object, wanted: str) -> Any:
        self._used.add(name)
        if name in self.data and self.data[name] is not None:
            return self.data[name]
        if default is _MISSING:
            raise self.problem(name, wanted)
        return default

    def raw(self, name: str, default: Any = None) -> Any:
        """The field as written (None or `default` when absent); the caller checks it."""
        return self._get(name, default, "present")

    def text(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default, "a text")
        if value is not default and (not isinstance(value, str) or not value.strip()):
            raise self.problem(name, "a non-empty text", value)
        return value

    def integer(
        self, name: str, default: Any = _MISSING, *, low: int | None = None, high: int | None = None
    ) -> Any:
        wanted = "an integer" + _range(low, high)
        value = self._get(name, default, wanted)
        if value is default:
            return value
        if type(value) is not int or (low is not None and value < low):
            raise self.problem(name, wanted, value)
        if high is not None and value > high:
            raise self.problem(name, wanted, value)
        return value

    def number(self, name: str, default: Any = _MISSING, *, low: float | None = None) -> Any:
        wanted = "a number" + ("" if low is None else f" ≥ {low:g}")
        value = self._get(name, default, wanted)
        if value is default:
            return value
        if type(value) not in (int, float) or (low is not None and value < low):
            raise self.problem(name, wanted, value)
        return float(value)

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default, "true or false")
        if value is not default and not isinstance(value, bool):
            raise self.problem(name, "true or false", value)
        return value

    def choice(self, name: str, choices: Sequence[str], default: Any = _MISSING) -> Any:
        wanted = "one of " + ", ".join(choices)
        value = self._get(name, default, wanted)
        if value is not default and value not in choices:
            raise self.problem(name, wanted, value)
        return value

    def time_of_day(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default, 'a time of day like "09:00"')
        if value is default or isinstance(value, dt.time):
            return value
        return self.parse_time(name, value)

    def parse_time(self, name: str, value: object) -> dt.time:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return dt.time.fromisoformat(value)
        except ValueError:
            raise self.problem(name, 'a time of day like "09:00"', value) from None

    def date(self, name: str, value: object) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.problem(name, 'a date like "2026-10-01"', value) from None

    def seconds(self, name: str, default: Any = _MISSING) -> Any:
        """A duration given in seconds (integer ≥ 0), as a timedelta."""
        value = self.integer(name, default, low=0)
        return value if value is default or value is None else dt.timedelta(seconds=value)

    def table(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default, "a table")
        if value is not default and not isinstance(value, Mapping):
            raise self.problem(name, "a table", value)
        return value

    def items(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default, "a list")
        if value is not default and not isinstance(value, list):
            raise self.problem(name, "a list", value)
        return value

    def unknown(self, ignore: Sequence[str] = ()) -> None:
        """Refuse fields nobody read: a misspelt `poll_intervall_s` must not pass silently."""
        extra = sorted(set(self.data) - self._used - set(ignore))
        if extra:
            raise SiteConfigError(
                self.path, f"{self.where}: unknown field {extra[0]!r} (misspelt?)"
            )


def _range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" ≥ {low}"
    return ""
