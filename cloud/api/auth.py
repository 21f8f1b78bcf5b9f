"""`/auth`: log in and out; and `allow(...)`, the dependency every endpoint states its roles
with (the role table is in `cloud.people.auth`).

    who: Annotated[Principal, allow(*STAFF)]      # 401 without a valid token, 403 other roles

Send the token as `Authorization: Bearer <token>`. A merchant's requests are further limited to
its own account by the endpoints themselves (`Principal.require_account`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, StrictStr

from cloud.api.common import DbSession, Now, Out, StoredTime, StrictBody, answers
from cloud.api.guards import client_address
from cloud.errors import CloudError, Forbidden, Unauthorized
from cloud.people import auth
from cloud.people.auth import Principal, Role

router = APIRouter(prefix="/auth", tags=["auth"])

_bearer = HTTPBearer(auto_error=False, description="a token from POST /auth/login")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def allow(*roles: Role) -> Any:
    """A dependency: the caller's `Principal` if its role is one of `roles`."""
    allowed = frozenset(roles)
    names = ", ".join(sorted(r.value for r in allowed))

    def principal(
        request: Request, credentials: Credentials, session: DbSession, now: Now
    ) -> Principal:
        if credentials is None:
            raise Unauthorized("log in first: send Authorization: Bearer <token>")
        who = auth.authenticate(session, credentials.credentials, client_address(request), now)
        if who.role not in allowed:
            raise Forbidden(f"role {who.role.value} may not do this (allowed: {names})")
        return who

    return Depends(principal)


EVERYONE = tuple(Role)
Caller = Annotated[Principal, allow(*EVERYONE)]


class LoginIn(StrictBody):
    user: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=1024)


class LoginOut(Out):
    token: str
    token_type: str = "bearer"
    expires: StoredTime
    user: str
    role: Role
    account: str | None


class MeOut(Out):
    user: str
    role: Role
    account: str | None


@router.post(
    "/login",
    response_model=LoginOut,
    summary="Log in: a bearer token for the other endpoints",
    responses=answers(
        e401="wrong user name or password (or the user is locked or disabled)",
        e429="too many attempts from this address",
    ),
)
def login(body: LoginIn, request: Request, session: DbSession, now: Now) -> LoginOut:
    try:
        done = auth.login(session, body.user, body.password, client_address(request), now)
    except CloudError:
        session.commit()  # the attempt, the failure count and the log row stay
        raise
    return LoginOut(
        token=done.token,
        expires=done.expires,
        user=done.user.name,
        role=Role(done.user.role),
        account=done.user.account,
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out: the token stops working",
    responses=answers(e401="no valid token"),
)
def logout(who: Caller, credentials: Credentials, session: DbSession, now: Now) -> None:
    assert credentials is not None  # `Caller` has checked it
    auth.logout(session, credentials.credentials, who, now)


class PasswordIn(StrictBody):
    old: StrictStr = Field(min_length=1, max_length=1024, description="the current password")
    new: StrictStr = Field(
        min_length=auth.MIN_PASSWORD, max_length=1024, description="the new password"
    )


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change your own password (your other sessions end)",
    responses=answers(
        e401="no valid token",
        e403="the old password is wrong (repeated: the user is locked)",
        e422="the new password is too short or the same",
    ),
)
def change_password(
    body: PasswordIn, who: Caller, credentials: Credentials, session: DbSession, now: Now
) -> None:
    assert credentials is not None  # `Caller` has checked it
    try:
        auth.change_password(
            session, who, body.old, body.new, token=credentials.credentials, now=now
        )
    except CloudError:
        session.commit()  # the failure count and its log row stay
        raise


@router.get("/me", response_model=MeOut, summary="Who the token belongs to")
def me(who: Caller) -> MeOut:
    return MeOut(user=who.user, role=who.role, account=who.account)
