"""backfill invoices (fails unless ALEMBIC_EXAMPLE_FIXED=1)

Revision ID: a3
Revises: a2

The failing form is the example's point: a1 and a2 have committed when this
revision fails, leaving a half-migrated database -- unless safe-migrate's
snapshot puts it back.
"""
import os

from alembic import op
import sqlalchemy as sa

revision = "a3"
down_revision = "a2"


def upgrade():
    op.add_column("accounts", sa.Column("plan", sa.String(20), nullable=True))
    if os.environ.get("ALEMBIC_EXAMPLE_FIXED") == "1":
        op.execute("INSERT INTO invoices (account_id, amount_cents) SELECT id, 100 FROM accounts")
    else:
        op.execute("INSERT INTO invoices (account_id, amount_cent) SELECT id, 100 FROM accounts")


def downgrade():
    op.drop_column("accounts", "plan")
