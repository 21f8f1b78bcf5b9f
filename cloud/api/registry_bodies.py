"""Request and response bodies of `/registry/…` (`cloud.api.registry`).

A creation body (`…In`) names every field; an update (PATCH) sends only the fields it changes
(`patch_of` derives that body, without the fields a row is keyed by). Amounts are integers:
energy Wh, money fen, prices 0.0001 CNY/kWh; areas an integer or decimal text ("32.5").
Free text refuses control characters; identifiers that reach a concentrator's documents
(shop numbers, account ids, tariff codes, bus names) are restricted to `[A-Za-z0-9_.-]`.
"""

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

from cloud.api.common import NodeId, Out, Owner, StrictBody

MAX_ID = 2**31 - 1
RowId = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
Name = Annotated[
    StrictStr, Field(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f][^\x00-\x1f]*$")
]
Label = Annotated[StrictStr, Field(max_length=200, pattern=r"^[^\x00-\x1f]*$")]
Place = Annotated[
    StrictStr, Field(min_length=1, max_length=32, pattern=r"^[^\s\x00-\x1f][^\x00-\x1f]*$")
]
Code = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,32}$", examples=["merchant"])]
TariffCode = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
ShopNumber = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", examples=["S101"])]
Category = Annotated[
    StrictStr, Field(pattern=r"^[^\s\x00-\x1f][^\x00-\x1f]{0,63}$", examples=["food"])
]
BusName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", examples=["rs485-1"])]
Address = Annotated[StrictStr, Field(pattern=r"^[0-9]{1,14}$", examples=["000000000001"])]
TimeOfDay = Annotated[StrictStr, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Date = Annotated[StrictStr, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
Zone = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_+\-/]{1,64}$")]
Decimal2 = Annotated[StrictStr, Field(pattern=r"^[0-9]{1,8}(\.[0-9]{1,2})?$", examples=["32.5"])]
Wh = Annotated[StrictInt, Field(ge=0, le=10**12, description="Wh")]
Fen = Annotated[StrictInt, Field(ge=0, le=10**12, description="fen")]
Price = Annotated[StrictInt, Field(ge=1, le=10**8, description="0.0001 CNY per kWh")]
Watts = Annotated[StrictInt, Field(ge=0, le=10**7)]
PowerFactor = Annotated[StrictFloat, Field(ge=0, le=1, allow_inf_nan=False)]
Param = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# `cloud.registry.values.PROTOCOLS` (a test holds them equal).
Protocol = Literal["dlt645", "dlt645-1997", "cjt188", "sdm120", "sdm630", "ddsu666"]


class SiteIn(StrictBody):
    name: Name
    time_zone: Zone = "Asia/Shanghai"
    print_receipts: StrictBool = False
    tariff: TariffCode | None = Field(None, description="the default tariff (billing rule)")


class SiteOut(Out):
    id: int
    name: str
    time_zone: str
    print_receipts: bool
    tariff: str | None


class BuildingIn(StrictBody):
    site_id: RowId
    name: Place


class BuildingOut(Out):
    id: int
    site_id: int
    name: str


class FloorIn(StrictBody):
    building_id: RowId
    name: Place


class FloorOut(Out):
    id: int
    building_id: int
    name: str


class ShopIn(StrictBody):
    floor_id: RowId
    number: ShopNumber
    category: Category = "general"
    area_m2: Annotated[StrictInt, Field(ge=0, le=10**8)] | Decimal2 | None = None
    node: NodeId | None = Field(None, description="the concentrator that serves the shop")


class ShopOut(Out):
    id: int
    site_id: int
    floor_id: int
    number: str
    category: str
    area_m2: str | None = Field(description="m², decimal text")
    node: str | None


class MerchantIn(StrictBody):
    name: Name
    phone: Annotated[StrictStr, Field(pattern=r"^\+?[0-9\- ]{3,31}$")] | None = None
    wechat_openid: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] | None = None
    id_number: Annotated[StrictStr, Field(pattern=r"^[0-9A-Za-z]{6,32}$")] | None = Field(
        None, description="identity card number: shown in full only when reading one merchant"
    )


class MerchantOut(Out):
    id: int
    name: str
    phone: str | None
    wechat_openid: str | None
    id_number: str | None


class AccountTypeIn(StrictBody):
    code: Code
    name: Name


class AccountTypeOut(Out):
    code: str
    name: str


class TariffIn(StrictBody):
    """The shapes of the concentrator's tariff documents: flat `price`; tou `prices` (period →
    price) and `ranges` (["08:00", "11:00", "peak"], covering the day); tiered `tiers`
    ([[up_to_wh, price], …, [null, price]])."""

    code: TariffCode
    name: Label = ""
    kind: Literal["flat", "tou", "tiered"]
    price: Price | None = None
    prices: dict[Literal["sharp", "peak", "flat", "valley"], Price] | None = None
    ranges: Annotated[list[list[StrictStr]], Field(max_length=48)] | None = None
    tiers: Annotated[list[list[Wh | None]], Field(max_length=16)] | None = None


class TariffOut(Out):
    code: str
    name: str
    kind: str
    price: int | None = None
    prices: dict[str, int] | None = None
    ranges: list[list[str]] | None = None
    tiers: list[list[int | None]] | None = None


class AccountIn(StrictBody):
    id: Owner
    merchant_id: RowId
    shop_id: RowId | None = None
    account_type: Code
    tariff: TariffCode | None = Field(None, description="none: the site's default tariff")
    credit_limit_fen: Fen = 0
    keep_power: StrictBool = False


class AccountOut(Out):
    id: str
    merchant_id: int
    shop_id: int | None
    account_type: str
    tariff: str | None
    credit_limit_fen: int
    keep_power: bool


class MeterIn(StrictBody):
    address: Address
    protocol: Protocol
    bus: BusName
    node: NodeId | None = None
    shop_id: RowId
    multiplier: Annotated[StrictInt, Field(ge=1, le=100_000)] = 1
    kind: Literal["electricity", "water"] | None = Field(None, description="from the protocol")


class MeterOut(Out):
    id: int
    address: str
    protocol: str
    kind: str
    bus: str
    node: str | None
    shop_id: int
    multiplier: int


class SubsidyPolicyIn(StrictBody):
    site_id: RowId
    by_type: Annotated[dict[Code, Wh], Field(max_length=100)] = Field(default_factory=dict)
    by_category: Annotated[dict[Category, Wh], Field(max_length=100)] = Field(default_factory=dict)
    rule: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] | None = Field(
        None, description="a registered subsidy rule (e.g. per_m2), asked first"
    )
    rule_params: Annotated[
        dict[Param, Annotated[StrictInt, Field(ge=-(10**12), le=10**12)] | Label],
        Field(max_length=20),
    ] = Field(default_factory=dict)
    issue_day: Annotated[StrictInt, Field(ge=1, le=31)] = 1
    issue_at: TimeOfDay = "00:00"
    month_end: Literal["clear", "carry_over"] = "clear"
    carry_cap_wh: Wh | None = None


class SubsidyPolicyOut(Out):
    id: int
    site_id: int
    by_type: dict[str, int]
    by_category: dict[str, int]
    rule: str | None
    rule_params: dict[str, Any]
    issue_day: int
    issue_at: str
    month_end: str
    carry_cap_wh: int | None


class LoadWindowIn(StrictBody):
    """Malicious load: a power range and a power-factor range (a resistive heater: pf near 1)."""

    min_w: Watts
    max_w: Watts
    min_pf: PowerFactor
    max_pf: PowerFactor


class AlarmRuleIn(StrictBody):
    site_id: RowId
    alarm_at: TimeOfDay = "09:00"
    below_fen: Fen | None = Field(None, description="low balance: below this many fen")
    below_days: Annotated[StrictInt, Field(ge=0, le=3650)] | None = Field(
        None, description="low balance: fewer days of credit left"
    )
    windows: Annotated[list[LoadWindowIn], Field(max_length=20)] = Field(default_factory=list)
    overload_w: Annotated[StrictInt, Field(ge=1, le=10**7)] | None = None
    over_voltage_v: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None


class AlarmRuleOut(Out):
    id: int
    site_id: int
    alarm_at: str
    below_fen: int | None
    below_days: int | None
    windows: list[dict[str, float]]
    overload_w: int | None
    over_voltage_v: int | None


class ArrearsPolicyIn(StrictBody):
    site_id: RowId
    mode: Literal["at_zero", "scheduled"] = "at_zero"
    cut_off: TimeOfDay = "10:00"
    friendly_hours: Annotated[
        list[Annotated[list[TimeOfDay], Field(min_length=2, max_length=2)]], Field(max_length=10)
    ] = Field(default_factory=list)
    holidays: Annotated[list[Date], Field(max_length=400)] = Field(default_factory=list)


class ArrearsPolicyOut(Out):
    id: int
    site_id: int
    mode: str
    cut_off: str
    friendly_hours: list[list[str]]
    holidays: list[str]


def patch_of(body: type[StrictBody], fixed: tuple[str, ...]) -> type[StrictBody]:
    """The PATCH body of a creation body: every field optional, the `fixed` ones absent."""
    fields: dict[str, Any] = {}
    for name, info in body.model_fields.items():
        if name in fixed:
            continue
        annotation = (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        fields[name] = (Optional[annotation], Field(None, description=info.description))  # noqa: UP045
    return create_model(body.__name__.removesuffix("In") + "Patch", __base__=StrictBody, **fields)
