"""What the console's tests add to the market of `tests/web/world.py`: staff of every role, the
latest readings of its meters (M3's relay open) through the real ingest, and a way to take a
concentrator offline."""

from __future__ import annotations

import datetime as dt

from cloud.people.auth import Role
from ledger.wire import AckStatus
from tests.cloud.api.conftest import M1, M2, M3, NODE, OTHER, add_user, reading
from tests.web.world import NOW, World

STAFF_USERS = {
    Role.ADMIN: "admin-c",
    Role.OPERATOR: "op-1",  # the world's operator
    Role.FINANCE: "fin-c",
    Role.AUDITOR: "aud-c",
    Role.INSTALLER: "inst-c",
}


def add_staff_and_readings(world: World) -> None:
    for role, name in STAFF_USERS.items():
        if role is not Role.OPERATOR:
            add_user(world.engine, name, role)
    when = NOW - dt.timedelta(minutes=15)
    for node, rows in (
        (NODE, [reading(M1, when, 121_700), reading(M2, when, 5_400)]),
        (OTHER, [reading(M3, when, 7_300, relay=0)]),
    ):
        ack = world.site.upload(node, readings=rows)
        assert ack.status is AckStatus.OK, ack


def take_offline(world: World, node: str) -> None:
    world.site.status(node, online=False)
