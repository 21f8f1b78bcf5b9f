"""Who may do what: roles, users, passwords, logins and bearer tokens.

| role        | may                                                                         |
|-------------|-----------------------------------------------------------------------------|
| `admin`     | everything, including users and saved report templates                      |
| `operator`  | read everything; registry; recharge, correct, refund, swap, move; relays    |
| `finance`   | read everything; recharge; pay out refunds; reports and exports             |
| `auditor`   | read everything (operator log and ledger included); change nothing          |
| `installer` | concentrators and meters (register, map, IR import, swap); read the registry |
| `merchant`  | its own account only: balance, usage, ledger, recharges, statements         |

Passwords are hashed with argon2id (argon2-cffi) at OWASP's minimum cost (19 MiB, 2 passes, 1
lane): strong against offline guessing, cheap enough for a small server. A login returns a
random bearer token (32 bytes, URL-safe) valid for `TOKEN_TTL`; only its SHA-256 is stored.

Guessing is slowed twice: after `MAX_FAILURES` wrong passwords in a row an account is locked
for `LOCKOUT` (an admin can unlock it; its sessions end, and a locked user is answered exactly
as a wrong password or an unknown name is), and one client address gets at most
`ADDRESS_ATTEMPTS` attempts per `ADDRESS_WINDOW` whatever the user names. Every attempt is
kept (`login_attempts`) and logins, failures, lockouts and logouts go to the operator log.

Users are managed by an admin (`create_user`, `update_user`, `reset_password`, `unlock`; the
API's `/users`, the CLI's `voltbook-cloud user`), and change their own password with
`change_password`. Each change is logged without the password or its hash; disabling a user,
changing its role or account, or resetting its password ends its sessions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cloud.db.auth import LoginAttempt, Token, User
from cloud.errors import Conflict, Forbidden, Invalid, NotFound, TooManyAttempts, Unauthorized
from cloud.people import oplog


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    FINANCE = "finance"
    AUDITOR = "auditor"
    INSTALLER = "installer"
    MERCHANT = "merchant"


# Groups the routers name (`cloud.api.auth.allow(*READ_ALL)`).
STAFF = (Role.ADMIN, Role.OPERATOR, Role.FINANCE, Role.AUDITOR)  # read everything
READ_ALL = (*STAFF, Role.INSTALLER)  # the registry and the field
MONEY_DESK = (Role.ADMIN, Role.OPERATOR, Role.FINANCE)  # take money
OPERATIONS = (Role.ADMIN, Role.OPERATOR)  # change accounts, relays, registry
FIELD = (Role.ADMIN, Role.OPERATOR, Role.INSTALLER)  # concentrators, meters, swaps
PAYOUT = (Role.ADMIN, Role.FINANCE)  # money leaving: refund payouts

TOKEN_TTL = dt.timedelta(hours=12)
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
ADDRESS_ATTEMPTS = 20
ADDRESS_WINDOW = dt.timedelta(minutes=1)
MIN_PASSWORD = 10
USER_NAME = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the user does not exist, so a wrong name costs as long as a wrong
# password and timing does not tell which names exist.
_DUMMY_HASH = HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request, as its token says."""

    user: str
    role: Role
    account: str | None = None  # a merchant's own account
    address: str = ""

    @property
    def actor(self) -> oplog.Actor:
        return oplog.Actor(self.user, self.role.value, self.address)

    def may_see(self, account: str) -> bool:
        return self.role is not Role.MERCHANT or account == self.account

    def require_account(self, account: str) -> None:
        """A merchant may only touch its own account (everyone else: any)."""
        if not self.may_see(account):
            raise Forbidden(f"user {self.user} may only see account {self.account}")


def hash_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise Invalid(f"a password needs at least {MIN_PASSWORD} characters")
    return HASHER.hash(password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_view(user: User) -> dict[str, object]:
    """What the operator log keeps of a user (never the hash)."""
    return {
        "name": user.name,
        "role": user.role,
        "account": user.account,
        "display_name": user.display_name,
        "active": user.active,
    }


def create_user(
    session: Session,
    name: str,
    role: Role | str,
    password: str,
    *,
    account: str | None = None,
    display_name: str = "",
    actor: oplog.Actor = oplog.SYSTEM,
    now: dt.datetime,
) -> User:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise Invalid(f"user name {name!r} must be 1-64 of A-Z a-z 0-9 _ . @ -")
    try:
        role = Role(role)
    except ValueError:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}") from None
    if (role is Role.MERCHANT) != bool(account):
        raise Invalid("a merchant user names its account; other roles name none")
    if session.get(User, name) is not None:
        raise Conflict(f"user {name!r} exists already")
    user = User(
        name=name,
        role=role.value,
        password_hash=hash_password(password),
        account=account,
        display_name=display_name,
        active=True,
        failed_logins=0,
        locked_until=None,
        created=now,
    )
    session.add(user)
    session.flush()
    oplog.record(session, actor, "user.create", f"user:{name}", None, user_view(user), now)
    return user


def get_user(session: Session, name: str) -> User:
    user = session.get(User, name)
    if user is None:
        raise NotFound(f"user {name!r} does not exist")
    return user


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    expires: dt.datetime
    user: User


def _attempt(session: Session, name: str, address: str, ok: bool, now: dt.datetime) -> None:
    session.add(LoginAttempt(user=name[:64], address=address[:64], time=now, ok=ok))


def _throttled(session: Session, address: str, now: dt.datetime) -> bool:
    recent = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.address == address, LoginAttempt.time > now - ADDRESS_WINDOW)
    )
    return (recent or 0) >= ADDRESS_ATTEMPTS


class LoginRefused(Unauthorized):
    """Wrong name or password (the message never says which)."""


def login(session: Session, name: str, password: str, address: str, now: dt.datetime) -> Login:
    """Check the password and issue a token. Raises `TooManyAttempts` when the address is
    throttled, `LoginRefused` for a wrong name or password and for a locked or disabled user:
    the answer (and its cost: the password is checked either way) does not tell which, so it
    does not tell which names exist. Locking ends the user's sessions. The attempt is recorded
    either way; the caller commits even when this raises (`cloud.api.auth`)."""
    actor = oplog.Actor(str(name)[:64], "", address)
    if _throttled(session, address, now):
        _attempt(session, name, address, False, now)
        raise TooManyAttempts(
            f"too many login attempts from {address}; wait {ADDRESS_WINDOW.seconds // 60} min"
        )
    user = session.get(User, name, with_for_update=True)
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    try:
        HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        good = user is not None and user.active and not locked
    except (VerificationError, InvalidHashError):
        good = False
    _attempt(session, name, address, good, now)
    if not good:
        if user is not None and not locked:
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILURES:
                user.locked_until = now + LOCKOUT
                user.failed_logins = 0
                _revoke_tokens(session, user.name)
                oplog.record(session, actor, "login.locked", f"user:{name}", None,
                             {"until": user.locked_until.isoformat()}, now)  # fmt: skip
        oplog.record(session, actor, "login.failed", f"user:{name}", None,
                     {"locked": True} if locked else None, now)  # fmt: skip
        raise LoginRefused("wrong user name or password")
    assert user is not None
    user.failed_logins = 0
    user.locked_until = None
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    return _issue(session, user, address, now, None)


def _issue(
    session: Session, user: User, address: str, now: dt.datetime, method: str | None
) -> Login:
    token = secrets.token_urlsafe(32)
    expires = now + TOKEN_TTL
    session.add(Token(digest=_digest(token), user=user.name, created=now, expires=expires))
    principal = Principal(user.name, Role(user.role), user.account, address)
    how = None if method is None else {"method": method}
    oplog.record(session, principal.actor, "login", f"user:{user.name}", None, how, now)
    return Login(token, expires, user)


def login_as_merchant(
    session: Session, name: str, address: str, now: dt.datetime, *, method: str
) -> Login:
    """A token for merchant user `name`, whose identity another proof established (`method`:
    `wechat`, the openid bound to its merchant, `cloud.web.wechat_login`): no password, so only
    for an active, unlocked merchant; `LoginRefused` otherwise. Logged as a `login` with its
    method."""
    user = session.get(User, name, with_for_update=True)
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    if user is None or not user.active or locked or user.role != Role.MERCHANT.value:
        raise LoginRefused(f"{name} may not log in by {method}")
    _attempt(session, name, address, True, now)
    return _issue(session, user, address, now, method)


def authenticate(session: Session, token: str, address: str, now: dt.datetime) -> Principal:
    """The principal a bearer token stands for; `Unauthorized` if it is unknown, revoked,
    expired, or its user is disabled."""
    # On every request: the columns it needs, not two ORM objects (and never the hash).
    row = session.execute(
        select(Token.revoked, Token.expires, User.name, User.role, User.account, User.active)
        .join(User, User.name == Token.user)
        .where(Token.digest == _digest(token))
    ).one_or_none()
    if row is None:
        raise Unauthorized("unknown token: log in again (POST /auth/login)")
    revoked, expires, name, role, account, active = row
    if revoked or expires <= now:
        raise Unauthorized("the token expired or was revoked: log in again")
    if not active:
        raise Unauthorized(f"user {name} is disabled")
    return Principal(name, Role(role), account, address)


def logout(session: Session, token: str, principal: Principal, now: dt.datetime) -> None:
    session.execute(update(Token).where(Token.digest == _digest(token)).values(revoked=True))
    oplog.record(session, principal.actor, "logout", f"user:{principal.user}", None, None, now)


# -- managing users (the admin's `/users`, `voltbook-cloud user …`) ---------------------------


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def _revoke_tokens(session: Session, name: str, keep: str | None = None) -> None:
    """End every session of `name` (but the one whose token is `keep`)."""
    statement = update(Token).where(Token.user == name, Token.revoked.is_(False))
    if keep is not None:
        statement = statement.where(Token.digest != _digest(keep))
    session.execute(statement.values(revoked=True))


def _other_active_admins(session: Session, name: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN.value, User.active.is_(True), User.name != name)
    ) or 0  # fmt: skip


def update_user(
    session: Session,
    name: str,
    *,
    role: Role | str | None = None,
    account: str | None = None,
    display_name: str | None = None,
    active: bool | None = None,
    actor: oplog.Actor,
    now: dt.datetime,
) -> User:
    """Change a user's role (a merchant names its `account`), display name or whether it may
    log in. The last active admin can neither be demoted nor disabled. A user disabled or given
    another role keeps no session: its tokens are revoked."""
    user = session.get(User, name, with_for_update=True)
    if user is None:
        raise NotFound(f"user {name!r} does not exist")
    before = user_view(user)
    if role is not None:
        try:
            role = Role(role)
        except ValueError:
            raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}") from None
    new_role = role or Role(user.role)
    if account is not None:
        new_account: str | None = account
    else:  # a merchant keeps its account; any other role has none
        new_account = user.account if new_role is Role.MERCHANT else None
    if (new_role is Role.MERCHANT) != bool(new_account):
        raise Invalid("a merchant user names its account; other roles name none")
    demoted = user.role == Role.ADMIN.value and (new_role is not Role.ADMIN or active is False)
    if demoted and _other_active_admins(session, name) == 0:
        raise Conflict(f"{name} is the last active admin: make another admin first")
    user.role, user.account = new_role.value, new_account
    if display_name is not None:
        user.display_name = display_name
    if active is not None:
        user.active = active
    after = user_view(user)
    if after == before:
        return user
    if not user.active or after["role"] != before["role"] or after["account"] != before["account"]:
        _revoke_tokens(session, name)
    session.flush()
    oplog.record(session, actor, "user.update", f"user:{name}", before, after, now)
    return user


def reset_password(
    session: Session, name: str, password: str, *, actor: oplog.Actor, now: dt.datetime
) -> User:
    """An admin sets a new password: the user's sessions end and a lockout is lifted."""
    user = get_user(session, name)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    _revoke_tokens(session, name)
    session.flush()
    oplog.record(session, actor, "user.password_reset", f"user:{name}", None, None, now)
    return user


def change_password(
    session: Session, principal: Principal, old: str, new: str, *, token: str, now: dt.datetime
) -> None:
    """A user changes its own password, proving the old one; its other sessions end (the one
    making the change, `token`, stays). A wrong old password counts as a failed login: a stolen
    token cannot be used to guess the password either (`MAX_FAILURES` lock the user and end
    all its sessions). The caller commits even when this raises (`cloud.api.auth`)."""
    user = session.get(User, principal.user, with_for_update=True)
    if user is None:
        raise Unauthorized(f"user {principal.user} does not exist")
    try:
        HASHER.verify(user.password_hash, old)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        target = f"user:{user.name}"
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until, user.failed_logins = now + LOCKOUT, 0
            _revoke_tokens(session, user.name)
            oplog.record(session, principal.actor, "login.locked", target, None,
                         {"until": user.locked_until.isoformat()}, now)  # fmt: skip
        oplog.record(session, principal.actor, "password.refused", target, None, None, now)
        raise Forbidden("the old password is wrong") from None
    if old == new:
        raise Invalid("the new password must differ from the old one")
    user.password_hash = hash_password(new)
    _revoke_tokens(session, user.name, keep=token)
    session.flush()
    oplog.record(session, principal.actor, "password.change", f"user:{user.name}", None, None, now)


def unlock(session: Session, name: str, *, actor: oplog.Actor, now: dt.datetime) -> User:
    """Lift a lockout after repeated wrong passwords (and forget the failures so far)."""
    user = session.get(User, name, with_for_update=True)
    if user is None:
        raise NotFound(f"user {name!r} does not exist")
    before = {"failed_logins": user.failed_logins, "locked_until": user.locked_until}
    if before == {"failed_logins": 0, "locked_until": None}:
        return user  # nothing to lift
    user.failed_logins, user.locked_until = 0, None
    session.flush()
    oplog.record(session, actor, "user.unlock", f"user:{name}", before,
                 {"failed_logins": 0, "locked_until": None}, now)  # fmt: skip
    return user


__all__ = [
    "FIELD",
    "MONEY_DESK",
    "OPERATIONS",
    "PAYOUT",
    "READ_ALL",
    "STAFF",
    "Forbidden",
    "Login",
    "LoginRefused",
    "Principal",
    "Role",
    "authenticate",
    "change_password",
    "create_user",
    "hash_password",
    "list_users",
    "login",
    "logout",
    "reset_password",
    "unlock",
    "update_user",
]
