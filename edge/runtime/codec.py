"""A small dataclass ↔ JSON codec driven by type hints, for the rules' states.

The rules keep their state in frozen dataclasses of datetimes, dates, times, enums, tuples,
frozensets, mappings, `NewType`s over int (Wh, fen) and nested dataclasses. The runtime stores
them in the store's state table, in the same transaction as the transfers they produced, so the
form must be exact and stable:

    datetime  "2026-11-01T00:00:00+08:00"   (aware only: a naive time has no zone to restore)
    date      "2026-11-01"          time   "09:00:00"         timedelta  seconds as a number
    enum      its value             tuple[X, ...], tuple[X, Y]  a list
    frozenset a list, sorted by its JSON text (so equal sets encode equally)
    Mapping with string keys (str, StrEnum)  an object;  other keys  a list of [key, value]
    X | None  null or X             dataclass  an object of its fields (by name)

Decoding is checked against the type hints: anything that does not fit raises `CodecError`
naming the path of the field (`ProtectionState.suspicion.since`), never a bare KeyError. A field
missing from the stored object takes its default, so a state saved by an older release still
loads after a field with a default was added; a field a class has dropped is skipped when the
class lists it in `_retired_fields` (a `ClassVar[frozenset[str]]`), any other unknown field is
an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar, cast

T = TypeVar("T")

JsonValue = Any  # what json.loads gives: dict, list, str, int, float, bool, None


class CodecError(ValueError):
    """A value does not fit its type: says where (`path`) and what was found."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


def _unwrap_newtype(hint: Any) -> Any:
    while hasattr(hint, "__supertype__"):
        hint = hint.__supertype__
    return hint


@cache
def _hints(cls: type) -> dict[str, Any]:
    # Resolved once per class: the rules use `from __future__ import annotations`.
    return typing.get_type_hints(cls)


Encoder = Callable[[Any], JsonValue]


def encode(value: object) -> JsonValue:
    """The JSON form of `value` (a dataclass instance or anything a field may hold).

    A dataclass is encoded by an encoder built once per class from its type hints (the
    runtime encodes every changed rule state every cycle); each field's value is checked
    against its hint, so a state that would not decode again is refused when written, not
    discovered at the next boot.
    """
    kind = type(value)
    if dataclasses.is_dataclass(kind):
        return _dataclass_encoder(kind)(value)
    return _encode(value)


@cache
def _dataclass_encoder(cls: type) -> Encoder:
    hints = _hints(cls)
    parts = tuple((name, _encoder_for(hints[name])) for name in _field_names(cls))
    label = cls.__name__

    def encode_dataclass(value: Any) -> JsonValue:
        if type(value) is not cls:
            if not dataclasses.is_dataclass(value) or isinstance(value, type):
                raise CodecError("", f"expected a {label}, got {value!r} ({type(value).__name__})")
            return _dataclass_encoder(type(value))(value)
        try:
            return {name: encode_field(getattr(value, name)) for name, encode_field in parts}
        except CodecError:
            pass  # find the field again, outside the fast path, to name it
        for name, encode_field in parts:
            try:
                encode_field(getattr(value, name))
            except CodecError as exc:
                raise CodecError(f"{label}.{name}{_tail(exc.path)}", exc.reason) from None
        raise AssertionError("unreachable: a field failed above")  # pragma: no cover

    return encode_dataclass


def _checked(kinds: tuple[type, ...], what: str) -> Encoder:
    def encode_plain(value: Any) -> JsonValue:
        if type(value) not in kinds:
            raise CodecError("", f"expected {what}, got {type(value).__name__} {value!r}")
        return value

    return encode_plain


def _encode_datetime(value: Any) -> JsonValue:
    if not isinstance(value, dt.datetime):
        raise CodecError("", f"expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise CodecError("", f"naive datetime {value.isoformat()} cannot be stored")
    return value.isoformat()


def _encode_date(value: Any) -> JsonValue:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise CodecError("", f"expected a date, got {value!r}")
    return value.isoformat()


def _encode_time(value: Any) -> JsonValue:
    if not isinstance(value, dt.time):
        raise CodecError("", f"expected a time of day, got {value!r}")
    return value.isoformat()


def _encode_timedelta(value: Any) -> JsonValue:
    if not isinstance(value, dt.timedelta):
        raise CodecError("", f"expected a timedelta, got {value!r}")
    return value.total_seconds()


_ENCODERS: dict[Any, Encoder] = {
    int: _checked((int,), "an integer"),
    float: _checked((float, int), "a number"),
    str: _checked((str,), "a string"),
    bool: _checked((bool,), "true or false"),
    dt.datetime: _encode_datetime,
    dt.date: _encode_date,
    dt.time: _encode_time,
    dt.timedelta: _encode_timedelta,
}


def _encoder_for(hint: Any) -> Encoder:
    """An encoder for values of type `hint` (falls back on `_encode` where hints are vague)."""
    hint = _unwrap_newtype(hint)
    known = _ENCODERS.get(hint)
    if known is not None:
        return known
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1 and len(args) == 2:
            inner = _encoder_for(arms[0])
            return lambda value: None if value is None else inner(value)
        return _encode
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: value.value if isinstance(value, hint) else _encode(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_encoder(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _encoder_for(args[0])
        return lambda value: [item(x) for x in value]
    if origin in (frozenset, set):
        item = _encoder_for(args[0])
        return lambda value: sorted(
            (item(x) for x in value), key=lambda x: json.dumps(x, sort_keys=True)
        )
    return _encode  # fixed tuples, lists, mappings, Any: by the values themselves


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode(value: object) -> JsonValue:
    # The runtime encodes every changed rule state every cycle: plain values first, and no
    # path bookkeeping unless something fails (3.11's try blocks cost nothing until then).
    kind: Any = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for name in _field_names(kind):
            try:
                out[name] = _encode(getattr(value, name))
            except CodecError as exc:
                raise CodecError(f"{kind.__name__}.{name}{_tail(exc.path)}", exc.reason) from None
        return out
    if isinstance(value, int | float | str):  # NewType values are plain; subclasses too
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise CodecError("", f"naive datetime {value.isoformat()} cannot be stored")
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, frozenset | set):
        items = [_encode(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {key: _encode(item) for key, item in value.items()}
        return [[_encode(key), _encode(item)] for key, item in value.items()]
    raise CodecError("", f"cannot encode a {kind.__name__}")


def _tail(path: str) -> str:
    return "" if not path else path if path.startswith("[") else "." + path


def decode(hint: type[T], data: JsonValue) -> T:
    """Rebuild a value of type `hint` (usually a dataclass) from its JSON form."""
    return cast(T, _decode(hint, data, getattr(hint, "__name__", str(hint))))


def dumps(value: object) -> str:
    return json.dumps(encode(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def loads(hint: type[T], text: str) -> T:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CodecError(getattr(hint, "__name__", str(hint)), f"not JSON ({exc})") from exc
    return decode(hint, data)


def _fail(path: str, expected: str, data: JsonValue) -> CodecError:
    return CodecError(path, f"expected {expected}, found {json.dumps(data)[:60]}")


_Scalar = Callable[[JsonValue, str], Any]


def _int(data: JsonValue, path: str) -> int:
    if type(data) is not int:
        raise _fail(path, "an integer", data)
    return data


def _float(data: JsonValue, path: str) -> float:
    if type(data) not in (int, float):
        raise _fail(path, "a number", data)
    return float(data)


def _str(data: JsonValue, path: str) -> str:
    if not isinstance(data, str):
        raise _fail(path, "a string", data)
    return data


def _bool(data: JsonValue, path: str) -> bool:
    if not isinstance(data, bool):
        raise _fail(path, "true or false", data)
    return data


def _parsed(parse: Callable[[str], Any], what: str) -> _Scalar:
    def decode_text(data: JsonValue, path: str) -> Any:
        try:
            return parse(_str(data, path))
        except ValueError as exc:
            raise _fail(path, what, data) from exc

    return decode_text


def _datetime(data: JsonValue, path: str) -> dt.datetime:
    moment: dt.datetime = _parsed(dt.datetime.fromisoformat, "an ISO datetime")(data, path)
    if moment.tzinfo is None:
        raise _fail(path, "a datetime with its UTC offset", data)
    return moment


def _timedelta(data: JsonValue, path: str) -> dt.timedelta:
    return dt.timedelta(seconds=_float(data, path))


_SCALARS: dict[Any, _Scalar] = {
    int: _int,
    float: _float,
    str: _str,
    bool: _bool,
    dt.datetime: _datetime,
    dt.date: _parsed(dt.date.fromisoformat, "an ISO date"),
    dt.time: _parsed(dt.time.fromisoformat, "an ISO time of day"),
    dt.timedelta: _timedelta,
}


def _decode(hint: Any, data: JsonValue, path: str) -> Any:
    hint = _unwrap_newtype(hint)
    if hint is Any:
        return data
    scalar = _SCALARS.get(hint)
    if scalar is not None:
        return scalar(data, path)
    if hint is type(None):
        if data is not None:
            raise _fail(path, "null", data)
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _decode_union(typing.get_args(hint), data, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except ValueError as exc:
            raise _fail(path, f"a {hint.__name__}", data) from exc
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, data, path)
    if origin is tuple:
        return _decode_tuple(typing.get_args(hint), data, path)
    if origin in (frozenset, set):
        (item,) = typing.get_args(hint)
        items = [_decode(item, x, f"{path}[]") for x in _list(data, path)]
        return frozenset(items) if origin is frozenset else set(items)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_decode(item, x, f"{path}[{i}]") for i, x in enumerate(_list(data, path))]
    if origin in (dict, Mapping):
        key, item = typing.get_args(hint)
        return _decode_mapping(key, item, data, path)
    raise CodecError(path, f"the codec does not know the type {hint!r}")


def _list(data: JsonValue, path: str) -> list[JsonValue]:
    if not isinstance(data, list):
        raise _fail(path, "a list", data)
    return data


def _decode_union(arms: tuple[Any, ...], data: JsonValue, path: str) -> Any:
    if data is None and type(None) in arms:
        return None
    problems = []
    for arm in arms:
        if arm is type(None):
            continue
        try:
            return _decode(arm, data, path)
        except CodecError as exc:
            problems.append(str(exc))
    raise CodecError(path, "fits none of its types: " + "; ".join(problems))


def _decode_tuple(args: tuple[Any, ...], data: JsonValue, path: str) -> tuple[Any, ...]:
    items = _list(data, path)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(args[0], x, f"{path}[{i}]") for i, x in enumerate(items))
    if args == ((),):  # tuple[()]
        args = ()
    if len(items) != len(args):
        raise _fail(path, f"a list of {len(args)} items", data)
    return tuple(
        _decode(a, x, f"{path}[{i}]") for i, (a, x) in enumerate(zip(args, items, strict=True))
    )


def _decode_mapping(key: Any, item: Any, data: JsonValue, path: str) -> dict[Any, Any]:
    if isinstance(data, dict):  # string keys (str, StrEnum)
        return {
            _decode(key, k, f"{path}<key>"): _decode(item, v, f"{path}.{k}")
            for k, v in data.items()
        }
    out: dict[Any, Any] = {}
    for i, pair in enumerate(_list(data, path)):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _fail(f"{path}[{i}]", "a [key, value] pair", pair)
        out[_decode(key, pair[0], f"{path}[{i}]<key>")] = _decode(item, pair[1], f"{path}[{i}]")
    return out


def _decode_dataclass(cls: type, data: JsonValue, path: str) -> Any:
    if not isinstance(data, dict):
        raise _fail(path, f"an object for {cls.__name__}", data)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _decode(hints[f.name], data[f.name], f"{path}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise CodecError(f"{path}.{f.name}", "missing and has no default")
    retired: frozenset[str] = getattr(cls, "_retired_fields", frozenset())
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)} - retired
    if unknown:
        raise CodecError(path, f"unknown fields {sorted(unknown)} for {cls.__name__}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CodecError(path, f"{cls.__name__} refused the values: {exc}") from exc
