"""Tables of `cloud.db.registry`: sites, buildings, floors, shops, merchants, account types,
tariffs, registry accounts and meters, subsidy/alarm/arrears policies, node config versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)


def _site(unique: bool = False) -> sa.Column[int]:
    return sa.Column(
        "site_id", sa.Integer(), sa.ForeignKey("registry_sites.id"), nullable=False, unique=unique
    )


def upgrade() -> None:
    op.create_table(
        "registry_tariffs",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
    )
    op.create_table(
        "registry_sites",
        _id(),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("print_receipts", sa.Boolean(), nullable=False),
        sa.Column("tariff", sa.String(64), sa.ForeignKey("registry_tariffs.code"), nullable=True),
    )
    op.create_table(
        "registry_buildings",
        _id(),
        _site(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.UniqueConstraint("site_id", "name"),
    )
    op.create_table(
        "registry_floors",
        _id(),
        sa.Column(
            "building_id", sa.Integer(), sa.ForeignKey("registry_buildings.id"), nullable=False
        ),
        sa.Column("name", sa.String(32), nullable=False),
        sa.UniqueConstraint("building_id", "name"),
    )
    op.create_table(
        "registry_shops",
        _id(),
        _site(),
        sa.Column("floor_id", sa.Integer(), sa.ForeignKey("registry_floors.id"), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("area_m2", sa.String(20), nullable=True),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=True),
        sa.UniqueConstraint("site_id", "number"),
    )
    op.create_table(
        "registry_merchants",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("wechat_openid", sa.String(64), nullable=True),
        sa.Column("id_number", sa.String(32), nullable=True),
    )
    op.create_table(
        "registry_account_types",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "registry_accounts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "merchant_id", sa.Integer(), sa.ForeignKey("registry_merchants.id"), nullable=False
        ),
        sa.Column(
            "shop_id", sa.Integer(), sa.ForeignKey("registry_shops.id"), nullable=True, unique=True
        ),
        sa.Column(
            "account_type",
            sa.String(32),
            sa.ForeignKey("registry_account_types.code"),
            nullable=False,
        ),
        sa.Column("tariff", sa.String(64), sa.ForeignKey("registry_tariffs.code"), nullable=True),
        sa.Column("credit_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("keep_power", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "registry_meters",
        _id(),
        sa.Column("address", sa.String(32), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("bus", sa.String(64), nullable=False),
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), nullable=True),
        sa.Column("shop_id", sa.Integer(), sa.ForeignKey("registry_shops.id"), nullable=False),
        sa.Column("multiplier", sa.Integer(), nullable=False),
        sa.UniqueConstraint("node", "address"),
    )
    op.create_table(
        "registry_subsidy_policies",
        _id(),
        _site(unique=True),
        sa.Column("by_type", sa.JSON(), nullable=False),
        sa.Column("by_category", sa.JSON(), nullable=False),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("rule_params", sa.JSON(), nullable=False),
        sa.Column("issue_day", sa.Integer(), nullable=False),
        sa.Column("issue_at", sa.String(5), nullable=False),
        sa.Column("month_end", sa.String(16), nullable=False),
        sa.Column("carry_cap_wh", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "registry_alarm_rules",
        _id(),
        _site(unique=True),
        sa.Column("alarm_at", sa.String(5), nullable=False),
        sa.Column("below_fen", sa.BigInteger(), nullable=True),
        sa.Column("below_days", sa.Integer(), nullable=True),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("overload_w", sa.Integer(), nullable=True),
        sa.Column("over_voltage_v", sa.Integer(), nullable=True),
    )
    op.create_table(
        "registry_arrears_policies",
        _id(),
        _site(unique=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("cut_off", sa.String(5), nullable=False),
        sa.Column("friendly_hours", sa.JSON(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
    )
    op.create_table(
        "registry_nodes",
        sa.Column("node", sa.String(64), sa.ForeignKey("concentrators.node"), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("changed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pushed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("command_id", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "registry_nodes",
        "registry_arrears_policies",
        "registry_alarm_rules",
        "registry_subsidy_policies",
        "registry_meters",
        "registry_accounts",
        "registry_account_types",
        "registry_merchants",
        "registry_shops",
        "registry_floors",
        "registry_buildings",
        "registry_sites",
        "registry_tariffs",
    ):
        op.drop_table(table)
