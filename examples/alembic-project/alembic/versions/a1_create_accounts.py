"""create accounts

Revision ID: a1
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "a1"
down_revision = None


def upgrade():
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
    )
    op.execute("INSERT INTO accounts (email) VALUES ('ops@example.com')")


def downgrade():
    op.drop_table("accounts")
