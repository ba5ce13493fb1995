"""Alembic environment: one transaction per revision (transaction_per_migration),
so when the last revision fails the earlier ones have already committed --
exactly the half-applied state safe-migrate's snapshot protects against."""
import os

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run_migrations_online():
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None,
                          transaction_per_migration=True)
        context.run_migrations()


run_migrations_online()
