"""create invoices

Revision ID: a2
Revises: a1
"""
from alembic import op
import sqlalchemy as sa

revision = "a2"
down_revision = "a1"


def upgrade():
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
    )


def downgrade():
    op.drop_table("invoices")
