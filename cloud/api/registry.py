"""`/registry/…`: sites, buildings, floors, shops, merchants, account types, tariffs, accounts,
meters, and the subsidy, alarm and arrears policies of a site.

Every kind of row gets the same five endpoints, made here from its `cloud.registry.entities`
declaration and its bodies (`cloud.api.registry_bodies`):

    POST   /registry/{kind}          create (201); unknown references 404, duplicates 409
    GET    /registry/{kind}          a page, filtered (`site`, `building`, `floor`, `category`,
                                     `merchant`, `node`, … as the kind has them) and `sort`ed
    GET    /registry/{kind}/{key}    one row
    PATCH  /registry/{kind}/{key}    change the fields sent
    DELETE /registry/{kind}/{key}    204; 409 while another row still refers to it

Reads are for every staff role and installers; writes for admins and operators (meters, shops
and their concentrator mapping: installers too). Every write is in the operator log and marks
the configuration of the concentrators it feeds; `cloud.api.site_config` sends it.
"""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel

from cloud.api import registry_bodies as bodies
from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Limit,
    Now,
    Offset,
    Out,
    Page,
    StrictBody,
    answers,
    page,
)
from cloud.db.registry import Merchant, Tariff
from cloud.people.auth import FIELD, OPERATIONS, READ_ALL, Principal, Role
from cloud.registry import entities
from cloud.registry import rows as registry
from cloud.registry.rows import Entity

router = APIRouter(prefix="/registry", tags=["registry"])

Reader = Annotated[Principal, allow(*READ_ALL)]
IdFilter = Annotated[int | None, Query(ge=1, le=bodies.MAX_ID)]
TextFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
FILTERS: dict[str, tuple[Any, str]] = {
    "site": (IdFilter, "site id"),
    "building": (IdFilter, "building id"),
    "floor": (IdFilter, "floor id"),
    "shop": (IdFilter, "shop id"),
    "merchant": (IdFilter, "merchant id"),
    "category": (TextFilter, "shop category"),
    "node": (TextFilter, "concentrator"),
    "kind": (TextFilter, "kind"),
    "account_type": (TextFilter, "account type code"),
    "name": (TextFilter, "name, exactly"),
}


@dataclass(frozen=True, slots=True)
class Resource:
    entity: Entity
    body: type[StrictBody]
    out: type[Out]
    writers: tuple[Role, ...] = OPERATIONS
    convert: Callable[[Any], BaseModel] | None = None  # a row → its answer
    convert_listed: Callable[[Any], BaseModel] | None = None  # … in a list


def _tariff_out(row: Tariff) -> bodies.TariffOut:
    return bodies.TariffOut(code=row.code, name=row.name, kind=row.kind, **row.definition)


def _merchant_listed(row: Merchant) -> bodies.MerchantOut:
    out = bodies.MerchantOut.model_validate(row)
    return out.model_copy(update={"id_number": registry.mask(row.id_number)})


RESOURCES = (
    Resource(entities.SITES, bodies.SiteIn, bodies.SiteOut),
    Resource(entities.BUILDINGS, bodies.BuildingIn, bodies.BuildingOut),
    Resource(entities.FLOORS, bodies.FloorIn, bodies.FloorOut),
    Resource(entities.SHOPS, bodies.ShopIn, bodies.ShopOut, OPERATIONS),
    Resource(
        entities.MERCHANTS,
        bodies.MerchantIn,
        bodies.MerchantOut,
        convert_listed=_merchant_listed,
    ),
    Resource(entities.ACCOUNT_TYPES, bodies.AccountTypeIn, bodies.AccountTypeOut),
    Resource(entities.TARIFFS, bodies.TariffIn, bodies.TariffOut, convert=_tariff_out),
    Resource(entities.ACCOUNTS, bodies.AccountIn, bodies.AccountOut),
    Resource(entities.METERS, bodies.MeterIn, bodies.MeterOut, FIELD),
    Resource(entities.SUBSIDY_POLICIES, bodies.SubsidyPolicyIn, bodies.SubsidyPolicyOut),
    Resource(entities.ALARM_RULES, bodies.AlarmRuleIn, bodies.AlarmRuleOut),
    Resource(entities.ARREARS_POLICIES, bodies.ArrearsPolicyIn, bodies.ArrearsPolicyOut),
)


def _listing(resource: Resource, convert: Callable[[Any], BaseModel]) -> Callable[..., Any]:
    """The list endpoint, with one query parameter per filter the kind has."""
    entity = resource.entity
    sorts = tuple(s for name in entity.sorts for s in (name, f"-{name}"))
    sort = Annotated[
        Literal[sorts] | None,  # type: ignore[valid-type]
        Query(description="a field to sort by; '-' before it for descending"),
    ]

    def listing(**arguments: Any) -> dict[str, object]:
        chosen = {name: arguments[name] for name in entity.filters}
        query = registry.list_query(entity, chosen, arguments["sort"])

        def rows_out(rows: Sequence[Any]) -> list[BaseModel]:
            return [convert(row) for row in rows]

        return page(arguments["session"], query, arguments["limit"], arguments["offset"], rows_out)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("session", keyword, annotation=DbSession),
        inspect.Parameter("who", keyword, annotation=Reader),
        *(
            inspect.Parameter(
                name,
                keyword,
                annotation=Annotated[FILTERS[name][0], Query(description=FILTERS[name][1])],
                default=None,
            )
            for name in entity.filters
        ),
        inspect.Parameter("sort", keyword, annotation=sort, default=None),
        inspect.Parameter("limit", keyword, annotation=Limit, default=100),
        inspect.Parameter("offset", keyword, annotation=Offset, default=0),
    ]
    listing.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return listing


def _add(resource: Resource) -> None:
    entity = resource.entity
    body_model = resource.body
    patch_model = bodies.patch_of(body_model, (entity.key, *entity.immutable))
    out_model = resource.out
    convert = resource.convert or out_model.model_validate
    writer = Annotated[Principal, allow(*resource.writers)]
    key_path: Any = (
        Annotated[int, Path(ge=1, le=bodies.MAX_ID, description=f"the {entity.name}'s id")]
        if entity.key == "id" and body_model.model_fields.get("id") is None
        else Annotated[str, Path(min_length=1, max_length=64, description=f"the {entity.name}")]
    )
    what = entity.name.replace("_", " ")
    collection, item = f"/{entity.plural}", f"/{entity.plural}/{{key}}"

    def create(body: body_model, session: DbSession, now: Now, who: writer) -> Any:  # type: ignore[valid-type]
        return convert(registry.create(session, entity, body.model_dump(), who.actor, now))  # type: ignore[attr-defined]

    def read(key: key_path, session: DbSession, who: Reader) -> Any:
        return convert(registry.get(session, entity, key))

    def change(key: key_path, body: patch_model, session: DbSession, now: Now, who: writer) -> Any:  # type: ignore[valid-type]
        changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
        return convert(registry.update(session, entity, key, changes, who.actor, now))

    def remove(key: key_path, session: DbSession, now: Now, who: writer) -> None:
        registry.delete(session, entity, key, who.actor, now)

    name = entity.name
    router.add_api_route(
        collection,
        create,
        methods=["POST"],
        name=f"create_{name}",
        response_model=out_model,
        status_code=status.HTTP_201_CREATED,
        summary=f"Create a {what}",
        responses=answers(e404="a row it names does not exist", e409="it exists already"),
    )
    router.add_api_route(
        collection,
        _listing(resource, resource.convert_listed or convert),
        methods=["GET"],
        name=f"list_{entity.plural}",
        response_model=Page[out_model],  # type: ignore[valid-type]
        summary=f"List {entity.plural.replace('-', ' ')}",
    )
    router.add_api_route(
        item,
        read,
        methods=["GET"],
        name=f"get_{name}",
        response_model=out_model,
        summary=f"One {what}",
        responses=answers(e404=f"no such {what}"),
    )
    router.add_api_route(
        item,
        change,
        methods=["PATCH"],
        name=f"update_{name}",
        response_model=out_model,
        summary=f"Change a {what} (only the fields sent)",
        responses=answers(e404=f"no such {what}, or a row it names", e409="a duplicate"),
    )
    router.add_api_route(
        item,
        remove,
        methods=["DELETE"],
        name=f"delete_{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Delete a {what} nothing refers to",
        responses=answers(
            e404=f"no such {what}",
            e409="other rows still refer to it"
            + (
                ", or it holds money or has ledger entries (refund it, move it out)"
                if resource.entity.keeps is not None
                else ""
            ),
        ),
    )


for _resource in RESOURCES:
    _add(_resource)
