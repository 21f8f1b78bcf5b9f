"""Subsidy rules: how many Wh each account's monthly subsidy is, and the hook sites extend it by.

The cloud decides every account's amount and sends it to the concentrator as the `by_account`
table of the subsidy rules document; the edge issues it (`edge/rules/subsidy.py`,
docs/architecture.md §6.2). The amount of one account, in this order:

1. the policy's **rule**, when it names one and the rule gives a number (not `None`);
2. else the policy's `by_category` amount for the shop's category;
3. else its `by_type` amount for the account type; else 0.

**Writing a rule.** A rule is a plain function of the shop and the account type:

    from decimal import Decimal
    from cloud.registry.subsidy_rules import ShopFacts

    def per_m2(shop: ShopFacts, account_type: str) -> int | None:
        rate = shop.params.get("wh_per_m2")
        if rate is None or shop.area_m2 is None:
            return None            # no opinion: the category/type tables decide
        return int(shop.area_m2 * rate)

It must be deterministic (the same registry gives the same Wh: the edge derives the issue's id
from account and month, so a different amount later is a conflict, never a second issue), must
not touch the database or the clock, and returns integer Wh ≥ 0 or `None`. `shop.params` are
the policy's `rule_params` (a JSON object of the operator's choosing, e.g. `{"wh_per_m2":
1000}`).

**Registering it.** A site's package declares it under the entry point group
`voltbook.subsidy`, e.g. in its `pyproject.toml`:

    [project.entry-points."voltbook.subsidy"]
    per_seat = "acme_mall.subsidy:per_seat"

and a policy names it: `{"rule": "per_seat", "rule_params": {…}}`. Tests (and code that ships
with the cloud) call `register_subsidy_rule("per_seat", fn)` instead. One rule is built in:
`per_m2`, `rule_params.wh_per_m2` Wh for each m² of the shop's area (rounded down).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any

from cloud.errors import Invalid

ENTRY_POINT_GROUP = "voltbook.subsidy"


@dataclass(frozen=True, slots=True)
class ShopFacts:
    """What a subsidy rule may look at: the shop, where it is, and the policy's parameters."""

    number: str
    site: str
    building: str
    floor: str
    category: str
    area_m2: Decimal | None
    params: Mapping[str, Any] = field(default_factory=dict)


SubsidyRule = Callable[[ShopFacts, str], "int | None"]

_RULES: dict[str, SubsidyRule] = {}


def register_subsidy_rule(name: str, rule: SubsidyRule) -> None:
    """Make `rule` available to policies as `name` (replacing one of that name)."""
    if not name or not callable(rule):
        raise ValueError("a subsidy rule needs a name and a callable")
    _RULES[name] = rule


def unregister_subsidy_rule(name: str) -> None:
    _RULES.pop(name, None)


def subsidy_rule(name: str) -> SubsidyRule:
    """The rule called `name`: registered in code, else an entry point; Invalid if neither."""
    if name in _RULES:
        return _RULES[name]
    for point in entry_points(group=ENTRY_POINT_GROUP, name=name):
        rule = point.load()
        if callable(rule):
            return rule  # type: ignore[no-any-return]
    known = ", ".join(known_subsidy_rules())
    raise Invalid(f"no subsidy rule named {name!r} (known: {known or 'none'})")


def known_subsidy_rules() -> list[str]:
    """The names a policy may give: registered in code or as entry points."""
    return sorted(set(_RULES) | set(entry_points(group=ENTRY_POINT_GROUP).names))


def per_m2(shop: ShopFacts, account_type: str) -> int | None:
    """`params.wh_per_m2` Wh per m² of the shop's area, rounded down; None without either."""
    rate = shop.params.get("wh_per_m2")
    if type(rate) is not int or shop.area_m2 is None:
        return None
    return int(shop.area_m2 * rate)


register_subsidy_rule("per_m2", per_m2)


def account_amount(
    shop: ShopFacts | None,
    account_type: str,
    rule: str | None,
    by_category: Mapping[str, int],
    by_type: Mapping[str, int],
) -> int:
    """One account's monthly subsidy in Wh: the rule, else the category, else the type."""
    if rule is not None and shop is not None:
        amount = subsidy_rule(rule)(shop, account_type)
        if amount is not None:
            if type(amount) is not int or amount < 0:
                raise Invalid(f"subsidy rule {rule!r} gave {amount!r} for shop {shop.number}")
            return amount
    if shop is not None and shop.category in by_category:
        return by_category[shop.category]
    return by_type.get(account_type, 0)
