"""LOCAL ONLY, never committed: stands in for another helper's 0018 so 0019 chains here."""

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
