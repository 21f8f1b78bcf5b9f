"""`/users`: the admin's management of logins (admin only, every change in the operator log).

    POST  /users                   create: name, role, password (≥ 10 characters); a merchant
                                   names its account, other roles none
    GET   /users, /users/{name}    list, one (never a password hash)
    PATCH /users/{name}            role, account, display name, active
    POST  /users/{name}/password   set a new password (the user's sessions end, a lock lifts)
    POST  /users/{name}/unlock     lift a lockout after repeated wrong passwords

A user changes its own password with `POST /auth/password`. Disabling a user, or changing its
role or account, ends its sessions at once; the last active admin can be neither disabled nor
demoted (409).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import Field, StrictBool, StrictStr
from sqlalchemy import select

from cloud.api.auth import allow
from cloud.api.common import (
    DbSession,
    Limit,
    Now,
    Offset,
    Out,
    Owner,
    Page,
    StoredTime,
    StrictBody,
    answers,
    page,
)
from cloud.db.auth import User
from cloud.people import auth
from cloud.people.auth import Principal, Role

router = APIRouter(prefix="/users", tags=["users"])

Admin = Annotated[Principal, allow(Role.ADMIN)]
UserName = Annotated[StrictStr, Field(pattern=auth.USER_NAME.pattern, examples=["op-li"])]
UserPath = Annotated[str, Path(description="the user's login name")]
Password = Annotated[
    StrictStr, Field(min_length=auth.MIN_PASSWORD, max_length=1024, description="plain text")
]
DisplayName = Annotated[StrictStr, Field(max_length=200)]
RoleName = Annotated[Role, Field(strict=False)]  # JSON has no enums: the role's name


class UserOut(Out):
    name: str
    role: Role
    account: str | None = Field(description="a merchant's own account")
    display_name: str
    active: bool = Field(description="false: may not log in")
    failed_logins: int = Field(description="wrong passwords in a row since the last login")
    locked_until: StoredTime | None = Field(description="locked out until then (if later)")
    created: StoredTime


class UserIn(StrictBody):
    name: UserName
    role: RoleName
    password: Password
    account: Owner | None = Field(None, description="required for a merchant, else absent")
    display_name: DisplayName = ""


class UserChange(StrictBody):
    role: RoleName | None = None
    account: Owner | None = Field(None, description="a merchant's account")
    display_name: DisplayName | None = None
    active: StrictBool | None = None


class PasswordReset(StrictBody):
    password: Password


def _out(rows: Sequence[User]) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in rows]


@router.get("", response_model=Page[UserOut], summary="List users (by name)")
def list_users(
    who: Admin, session: DbSession, limit: Limit = 100, offset: Offset = 0
) -> dict[str, object]:
    return page(session, select(User).order_by(User.name), limit, offset, _out)


@router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=answers(e409="the name is taken", e422="a bad role, account or password"),
)
def create_user(body: UserIn, who: Admin, session: DbSession, now: Now) -> UserOut:
    made = auth.create_user(
        session,
        body.name,
        body.role,
        body.password,
        account=body.account,
        display_name=body.display_name,
        actor=who.actor,
        now=now,
    )
    return UserOut.model_validate(made)


@router.get(
    "/{name}", response_model=UserOut, summary="One user", responses=answers(e404="no such user")
)
def get_user(name: UserPath, who: Admin, session: DbSession) -> UserOut:
    return UserOut.model_validate(auth.get_user(session, name))


@router.patch(
    "/{name}",
    response_model=UserOut,
    summary="Change a user's role, account, display name or whether it may log in",
    responses=answers(
        e404="no such user",
        e409="the last active admin would be demoted or disabled",
        e422="a merchant without an account, or an account for another role",
    ),
)
def update_user(
    name: UserPath, body: UserChange, who: Admin, session: DbSession, now: Now
) -> UserOut:
    changed = auth.update_user(
        session,
        name,
        role=body.role,
        account=body.account,
        display_name=body.display_name,
        active=body.active,
        actor=who.actor,
        now=now,
    )
    return UserOut.model_validate(changed)


@router.post(
    "/{name}/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a user's password (its sessions end; a lockout is lifted)",
    responses=answers(e404="no such user", e422="the password is too short"),
)
def reset_password(
    name: UserPath, body: PasswordReset, who: Admin, session: DbSession, now: Now
) -> None:
    auth.reset_password(session, name, body.password, actor=who.actor, now=now)


@router.post(
    "/{name}/unlock",
    response_model=UserOut,
    summary="Lift a lockout after repeated wrong passwords",
    responses=answers(e404="no such user"),
)
def unlock_user(name: UserPath, who: Admin, session: DbSession, now: Now) -> UserOut:
    return UserOut.model_validate(auth.unlock(session, name, actor=who.actor, now=now))
