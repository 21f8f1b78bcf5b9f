"""The registry screens' forms (`cloud.web.console_registry`): for each kind of row, the fields a
person fills in, how each typed text becomes the value the API's body takes
(`cloud.api.registry_bodies`), and how a stored row is shown back in the form.

A person types yuan, kWh and yuan/kWh; the bodies take fen, Wh and 0.0001 CNY/kWh: each field's
`parse` converts exactly (Decimal, never a float) or raises `FieldError` naming its catalogue
message. What the fields give is then checked by the API's own body model and written by the
registry's own service (`cloud.registry.rows`), so the console accepts exactly what the API
does. Lists (time-of-use ranges, tiers, holidays, …) are typed one item a line in a text area.

| form text                  | body value                                   |
|----------------------------|----------------------------------------------|
| `0.8365` (yuan/kWh)        | price 8365                                   |
| `50` / `1.5` (kWh)         | 50000 / 1500 Wh                              |
| `08:00-11:00 peak`         | `["08:00", "11:00", "peak"]` (a tou range)   |
| `100 0.6000` … `- 0.9000`  | tiers `[[100000, 6000], …, [null, 9000]]`    |
| `merchant = 50`            | `{"merchant": 50000}` (by type / category)   |
| `800 3000 0.95 1`          | a load window (W, W, PF, PF)                 |
| `20:00-08:00`              | a friendly-hours pair                        |
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cloud.registry.values import PERIODS, PROTOCOLS, TARIFF_KINDS
from cloud.web.forms import AmountError, fen_of_yuan, yuan_text

MAX_LINES = 400  # holidays of a year or two; every other list is shorter
NUMBER = re.compile(r"\d{1,9}(\.\d{1,4})?")
TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
SPAN = re.compile(r"(\d{1,2}:\d{2})\s*[-–~至到]\s*(\d{1,2}:\d{2})")
PAIR = re.compile(r"([^=\s:：]+)\s*[=:：]\s*(\S+)")
# A period may be typed in Chinese (尖峰平谷) as well as by its code.
PERIOD_WORDS = {"尖": "sharp", "峰": "peak", "平": "flat", "谷": "valley", "尖峰": "sharp",
                "峰时": "peak", "平时": "flat", "谷时": "valley"}  # fmt: skip


class FieldError(ValueError):
    """A field's text is not one we take: `key` is its catalogue message (with `values`)."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key, self.values = key, {k: str(v) for k, v in values.items()}


# -- typed text → body values -----------------------------------------------------------------


def text(value: str) -> str:
    """Any text (may be empty); leading and trailing spaces dropped."""
    return value.strip()


def required(value: str) -> str:
    if not value.strip():
        raise FieldError("f_required")
    return value.strip()


def optional(value: str) -> str | None:
    return value.strip() or None


def row_id(value: str) -> int:
    if not value.strip().isdigit():
        raise FieldError("f_choose")
    return int(value)


def optional_row_id(value: str) -> int | None:
    return row_id(value) if value.strip() else None


def integer(low: int, high: int, *, blank: bool = False) -> Callable[[str], int | None]:
    def parse(value: str) -> int | None:
        value = value.strip()
        if not value and blank:
            return None
        if not re.fullmatch(r"\d{1,12}", value) or not low <= int(value) <= high:
            raise FieldError("f_integer", low=low, high=high)
        return int(value)

    return parse


def _scaled(value: str, places: int, key: str) -> int:
    """`"1.5"` with 3 places → 1500: exact, or `FieldError(key)`."""
    found = NUMBER.fullmatch(value.strip())
    if not found or len(found[1] or ".") - 1 > places:
        raise FieldError(key)
    return int(Decimal(value.strip()).scaleb(places))


def price(value: str) -> int:
    """yuan/kWh with up to 4 decimals → 0.0001 CNY/kWh, above 0."""
    units = _scaled(value, 4, "f_price")
    if units <= 0:
        raise FieldError("f_price")
    return units


def optional_price(value: str) -> int | None:
    return price(value) if value.strip() else None


def wh(value: str) -> int:
    """kWh with up to 3 decimals → Wh."""
    return _scaled(value, 3, "f_kwh")


def optional_wh(value: str) -> int | None:
    return wh(value) if value.strip() else None


def optional_fen(value: str) -> int | None:
    if not value.strip():
        return None
    try:
        return fen_of_yuan(value, min_fen=0, max_fen=10**11)
    except AmountError:
        raise FieldError("f_yuan") from None


def fen(value: str) -> int:
    """Yuan (blank: 0) → fen."""
    return optional_fen(value) or 0


def time_of_day(value: str) -> str:
    if not TIME.fullmatch(value.strip()):
        raise FieldError("f_time")
    return value.strip()


def area(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{1,8}(\.[0-9]{1,2})?", value):
        raise FieldError("f_area_bad")
    return value


def checked(value: str) -> bool:
    return value == "on"


def code_of(codes: tuple[str, ...], *, blank: bool = False) -> Callable[[str], str | None]:
    def parse(value: str) -> str | None:
        if not value and blank:
            return None
        if value not in codes:
            raise FieldError("f_choose")
        return value

    return parse


def _lines(value: str) -> list[tuple[int, str]]:
    lines = [(n, line.strip()) for n, line in enumerate(value.splitlines(), 1) if line.strip()]
    if len(lines) > MAX_LINES:
        raise FieldError("f_too_many", most=MAX_LINES)
    return lines


def _clock(value: str) -> str:
    """`8:00` → `08:00`; what is no time of day is left for the check to refuse."""
    return value.rjust(5, "0") if len(value) == 4 else value


def tou_ranges(value: str) -> list[list[str]] | None:
    ranges = []
    for n, line in _lines(value):
        found = re.fullmatch(SPAN.pattern + r"\s+(\S+)", line)
        period = PERIOD_WORDS.get(found[3], found[3]) if found else ""
        if not found or period not in PERIODS:
            raise FieldError("f_range_line", line=n)
        start, end = _clock(found[1]), _clock(found[2])
        if not (TIME.fullmatch(start) and TIME.fullmatch(end)):
            raise FieldError("f_range_line", line=n)
        ranges.append([start, end, period])
    return ranges or None


def tiers(value: str) -> list[list[int | None]] | None:
    out: list[list[int | None]] = []
    for n, line in _lines(value):
        parts = line.split()
        if len(parts) != 2:
            raise FieldError("f_tier_line", line=n)
        try:
            up_to = None if parts[0] in {"-", "—", "以上", "above"} else wh(parts[0])
            out.append([up_to, price(parts[1])])
        except FieldError:
            raise FieldError("f_tier_line", line=n) from None
    return out or None


def amounts(value: str) -> dict[str, int]:
    """`code = kWh` lines → {code: Wh}."""
    out = {}
    for n, line in _lines(value):
        found = PAIR.fullmatch(line)
        try:
            if not found or found[1] in out:
                raise FieldError("f_amount_line", line=n)
            out[found[1]] = wh(found[2])
        except FieldError:
            raise FieldError("f_amount_line", line=n) from None
    return out


def params(value: str) -> dict[str, int | str]:
    """`name = value` lines → {name: integer, or text}."""
    out: dict[str, int | str] = {}
    for n, line in _lines(value):
        found = PAIR.fullmatch(line)
        if not found or found[1] in out:
            raise FieldError("f_param_line", line=n)
        number = re.fullmatch(r"-?\d{1,12}", found[2])
        out[found[1]] = int(found[2]) if number else found[2]
    return out


def windows(value: str) -> list[dict[str, int | float]]:
    out: list[dict[str, int | float]] = []
    for n, line in _lines(value):
        parts = line.split()
        good = len(parts) == 4 and all(re.fullmatch(r"\d{1,8}", p) for p in parts[:2])
        good = good and all(re.fullmatch(r"[01](\.\d{1,3})?", p) for p in parts[2:])
        if not good:
            raise FieldError("f_window_line", line=n)
        low_pf, high_pf = (float(Decimal(p)) for p in parts[2:])  # a ratio, not money
        out.append({"min_w": int(parts[0]), "max_w": int(parts[1]), "min_pf": low_pf,
                    "max_pf": high_pf})  # fmt: skip
    return out


def hour_pairs(value: str) -> list[list[str]]:
    out = []
    for n, line in _lines(value):
        found = SPAN.fullmatch(line)
        pair = [_clock(found[1]), _clock(found[2])] if found else []
        if not pair or not all(TIME.fullmatch(p) for p in pair):
            raise FieldError("f_hours_line", line=n)
        out.append(pair)
    return out


def days(value: str) -> list[str]:
    out = []
    for item in re.split(r"[\s,，、;；]+", value.strip()):
        if not item:
            continue
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", item):
            raise FieldError("f_day", day=item[:20])
        out.append(item)
    if len(out) > MAX_LINES:
        raise FieldError("f_too_many", most=MAX_LINES)
    return out


# -- body values → the form's text --------------------------------------------------------------


def shown(value: Any) -> str:
    return "" if value is None else str(value)


def price_text(units: int | None) -> str:
    return "" if units is None else f"{units // 10000}.{units % 10000:04d}"


def kwh_text(amount: int | None) -> str:
    """Wh → kWh, exactly: 50000 → "50", 1500 → "1.5"."""
    if amount is None:
        return ""
    return format(Decimal(amount).scaleb(-3).normalize(), "f")


def fen_text(fen: int | None) -> str:
    return "" if fen is None else yuan_text(fen)


def check_text(value: bool) -> str:
    return "on" if value else ""


def ranges_text(ranges: list[list[str]] | None) -> str:
    return "\n".join(f"{a}-{b} {period}" for a, b, period in ranges or [])


def tiers_text(rows: list[list[int | None]] | None) -> str:
    return "\n".join(f"{'-' if up is None else kwh_text(up)} {price_text(p)}"
                     for up, p in rows or [])  # fmt: skip


def amounts_text(table: Mapping[str, int]) -> str:
    return "\n".join(f"{k} = {kwh_text(v)}" for k, v in table.items())


def params_text(table: Mapping[str, Any]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in table.items())


def windows_text(rows: list[Mapping[str, Any]]) -> str:
    return "\n".join(f"{w['min_w']} {w['max_w']} {w['min_pf']} {w['max_pf']}" for w in rows)


def pairs_text(rows: list[list[str]]) -> str:
    return "\n".join(f"{a}-{b}" for a, b in rows)


def days_text(rows: list[str]) -> str:
    return "\n".join(rows)


# -- the forms -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One input: `name` is the form's field (and the body's, unless the kind's `to_body`
    gathers it), `label` its catalogue key."""

    name: str
    label: str
    parse: Callable[[str], Any]
    show: Callable[[Any], str] = shown
    widget: str = "text"  # text | select | check | lines
    codes: tuple[str, ...] = ()  # a select of these codes, each shown as term(name, code)
    rows: str = ""  # a select of registry rows: "sites", "buildings", "floors", "tariffs", …
    blank: bool = False  # the select offers "none"
    hint: str = ""  # catalogue key of a hint under the input
    get: Callable[[Any], Any] | None = None  # the stored value (default: the row's attribute)
    kinds: tuple[str, ...] = ()  # a tariff's part: shown (with script) for these kinds only

    def stored(self, row: Any) -> str:
        return self.show(self.get(row) if self.get else getattr(row, self.name))


def _period_price(period: str) -> Callable[[Any], Any]:
    return lambda row: (row.definition.get("prices") or {}).get(period)


def _tariff_body(values: dict[str, Any]) -> dict[str, Any]:
    """The four period prices become `prices`; only the chosen kind's shape is sent, so a
    price left filled in for another kind does not refuse the form."""
    prices = {p: values.pop(f"price_{p}") for p in PERIODS}
    values["prices"] = {p: v for p, v in prices.items() if v is not None} or None
    shape = {"flat": ("price",), "tou": ("prices", "ranges"), "tiered": ("tiers",)}
    for name in ("price", "prices", "ranges", "tiers"):
        if name not in shape.get(values.get("kind") or "", ()):
            values[name] = None
    return values


@dataclass(frozen=True, slots=True)
class Form:
    plural: str  # the kind, as the API's path names it
    fields: tuple[Field, ...]
    to_body: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values


SITE_ID = Field("site_id", "f_site", row_id, widget="select", rows="sites")
FORMS: dict[str, Form] = {form.plural: form for form in (
    Form("sites", (
        Field("name", "f_name", required),
        Field("time_zone", "f_time_zone", required, hint="h_time_zone"),
        Field("tariff", "f_default_tariff", optional, widget="select", rows="tariffs",
              blank=True),
        Field("print_receipts", "f_print_receipts", checked, check_text, widget="check"),
    )),
    Form("buildings", (SITE_ID, Field("name", "f_name", required))),
    Form("floors", (
        Field("building_id", "f_building", row_id, widget="select", rows="buildings"),
        Field("name", "f_name", required),
    )),
    Form("shops", (
        Field("floor_id", "f_floor", row_id, widget="select", rows="floors"),
        Field("number", "f_shop_number", required, hint="h_code"),
        Field("category", "f_category", required, hint="h_category"),
        Field("area_m2", "f_area", area),
        Field("node", "f_node", optional, widget="select", rows="nodes", blank=True),
    )),
    Form("merchants", (
        Field("name", "f_name", required),
        Field("phone", "f_phone", optional, hint="h_phone"),
        Field("wechat_openid", "f_openid", optional, hint="h_openid"),
        Field("id_number", "f_id_number", optional, hint="h_id_number"),
    )),
    Form("account-types", (
        Field("code", "f_code", required, hint="h_code"),
        Field("name", "f_name", required),
    )),
    Form("tariffs", (
        Field("code", "f_code", required, hint="h_tariff_code"),
        Field("name", "f_name", text),
        Field("kind", "f_tariff_kind", code_of(TARIFF_KINDS), widget="select",
              codes=TARIFF_KINDS),
        Field("price", "f_flat_price", optional_price, price_text,
              get=lambda row: row.definition.get("price"), hint="h_price", kinds=("flat",)),
        *(Field(f"price_{p}", f"price_{p}", optional_price, price_text, get=_period_price(p),
                kinds=("tou",))
          for p in PERIODS),
        Field("ranges", "f_ranges", tou_ranges, ranges_text, widget="lines",
              get=lambda row: row.definition.get("ranges"), hint="h_ranges", kinds=("tou",)),
        Field("tiers", "f_tiers", tiers, tiers_text, widget="lines",
              get=lambda row: row.definition.get("tiers"), hint="h_tiers", kinds=("tiered",)),
    ), _tariff_body),
    Form("subsidy-policies", (
        SITE_ID,
        Field("by_type", "f_by_type", amounts, amounts_text, widget="lines", hint="h_amounts"),
        Field("by_category", "f_by_category", amounts, amounts_text, widget="lines",
              hint="h_amounts"),
        Field("rule", "f_rule", optional, widget="select", rows="rules", blank=True,
              hint="h_rule"),
        Field("rule_params", "f_rule_params", params, params_text, widget="lines",
              hint="h_rule_params"),
        Field("issue_day", "f_issue_day", integer(1, 31)),
        Field("issue_at", "f_issue_at", time_of_day),
        Field("month_end", "f_month_end", code_of(("clear", "carry_over")), widget="select",
              codes=("clear", "carry_over")),
        Field("carry_cap_wh", "f_carry_cap", optional_wh, kwh_text),
    )),
    Form("alarm-rules", (
        SITE_ID,
        Field("alarm_at", "f_alarm_at", time_of_day),
        Field("below_fen", "f_below_yuan", optional_fen, fen_text),
        Field("below_days", "f_below_days", integer(0, 3650, blank=True)),
        Field("overload_w", "f_overload_w", integer(1, 10**7, blank=True)),
        Field("over_voltage_v", "f_over_voltage_v", integer(1, 1000, blank=True)),
        Field("windows", "f_windows", windows, windows_text, widget="lines", hint="h_windows"),
    )),
    Form("arrears-policies", (
        SITE_ID,
        Field("mode", "f_arrears_mode", code_of(("at_zero", "scheduled")), widget="select",
              codes=("at_zero", "scheduled")),
        Field("cut_off", "f_cut_off", time_of_day, hint="h_cut_off"),
        Field("friendly_hours", "f_friendly_hours", hour_pairs, pairs_text, widget="lines",
              hint="h_friendly_hours"),
        Field("holidays", "f_holidays", days, days_text, widget="lines", hint="h_holidays"),
    )),
    Form("meters", (
        Field("address", "f_address", required, hint="h_address"),
        Field("protocol", "f_protocol", code_of(tuple(PROTOCOLS)), widget="select",
              codes=tuple(PROTOCOLS)),
        Field("bus", "f_bus", required, hint="h_bus"),
        Field("node", "f_node", optional, widget="select", rows="nodes", blank=True,
              hint="h_meter_node"),
        Field("shop_id", "f_shop_number", row_id, widget="select", rows="shops"),
        Field("multiplier", "f_multiplier", integer(1, 100_000)),
    )),
    Form("accounts", (
        Field("id", "account_id", required, hint="h_account_id"),
        Field("merchant_id", "f_merchant", row_id, widget="select", rows="merchants"),
        Field("shop_id", "f_shop_number", optional_row_id, widget="select", rows="shops",
              blank=True),
        Field("account_type", "f_account_type", required, widget="select",
              rows="account_types"),
        Field("tariff", "f_tariff", optional, widget="select", rows="tariffs", blank=True,
              hint="h_account_tariff"),
        Field("credit_limit_fen", "f_credit_limit", fen, fen_text),
        Field("keep_power", "f_keep_power", checked, check_text, widget="check"),
    )),
)}  # fmt: skip


def parse(form: Form, sent: Mapping[str, str], skip: tuple[str, ...] = ()) -> tuple[
    dict[str, Any], dict[str, FieldError]
]:  # fmt: skip
    """The body a form's text gives (its fields' values, gathered by `to_body`), and the
    fields whose text is refused (name → why). Fields in `skip` (a row's key) are left out."""
    values: dict[str, Any] = {}
    errors: dict[str, FieldError] = {}
    for field in form.fields:
        if field.name in skip:
            continue
        try:
            values[field.name] = field.parse(sent.get(field.name, ""))
        except FieldError as refused:
            errors[field.name] = refused
    return (form.to_body(values) if not errors else values), errors


def stored(form: Form, row: Any, lang: str = "en") -> dict[str, str]:
    """A row as its form shows it (in Chinese, a range's period as 尖, 峰, 平 or 谷)."""
    values = {field.name: field.stored(row) for field in form.fields}
    if lang == "zh" and values.get("ranges"):
        word = {code: word for word, code in PERIOD_WORDS.items() if len(word) == 1}
        values["ranges"] = re.sub(r" (\w+)$", lambda m: f" {word.get(m[1], m[1])}",
                                  values["ranges"], flags=re.M)  # fmt: skip
    return values
