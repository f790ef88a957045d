"""Imports an application package that this environment does not have."""
from alembic import context
from sqlalchemy import engine_from_config, pool

from corpus_not_installed.models import metadata

config = context.config


def run_migrations_online():
    engine = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
