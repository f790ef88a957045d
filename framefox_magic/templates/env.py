"""Alembic environment written by framefox_magic; a standard env.py that plain alembic runs too.

Where the database comes from, first found wins:
  1. config.attributes["connection"]: a Connection (alembic's cookbook) or an Engine
     (as pytest-alembic passes it);
  2. the URL: the sqlalchemy.url option, ``alembic -x url=...``, or the DATABASE_URL variable.

A tenant schema (PostgreSQL): config.attributes["tenant_schema"], else ``alembic -x tenant=NAME``.
The version table lives in that schema and tables written without a schema land in it.

What autogenerate compares with: config.attributes["target_metadata"], else the
``target_metadata = module:attr`` option of alembic.ini, else nothing (autogenerate refuses).
"""

import importlib
import logging
import os

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection, make_url

config = context.config

# constraint names for models that set none, so that downgrades can drop what upgrades created
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def target_metadata():
    """The MetaData that autogenerate compares the database with."""
    return with_naming_convention(models_metadata())


def models_metadata():
    """The MetaData as the project defines it."""
    metadata = config.attributes.get("target_metadata")
    if metadata is not None:
        return metadata
    spec = config.get_main_option("target_metadata")
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    value = importlib.import_module(module_name)
    for name in (attribute or "metadata").split("."):
        value = getattr(value, name)
    return getattr(value, "metadata", value)


def with_naming_convention(metadata):
    """Give the models NAMING_CONVENTION when they have none; name their unnamed constraints."""
    if metadata is None or set(metadata.naming_convention) - {"ix"}:
        return metadata
    metadata.naming_convention = {**NAMING_CONVENTION, **metadata.naming_convention}
    for table in metadata.tables.values():
        for item in [*table.constraints, *table.indexes]:
            if item.name is None:
                item.dispatch.after_parent_attach(item, table)
    return metadata


def within_model_schemas(metadata, include_name=None):
    """Compare only the schemas the models use (the version table stays in the default schema);
    an include_name of the project's own still decides the rest."""
    schemas = {None} | {table.schema for table in getattr(metadata, "tables", {}).values()}

    def include(name, type_, parent_names):
        if type_ == "schema" and name not in schemas:
            return False
        return include_name is None or include_name(name, type_, parent_names)

    return include


def enable_postgresql_enums(dialect_name):
    """Native enums created, altered and dropped with their tables (alembic-postgresql-enum)."""
    if dialect_name != "postgresql":
        return
    try:
        import alembic_postgresql_enum  # noqa: F401  registers its comparators on import
    except ImportError:
        return
    # once imported it runs for every database in the process; it only warns that it skips others
    logging.getLogger("alembic.alembic_postgresql_enum").setLevel(logging.ERROR)


def database_url():
    """The URL to connect to when no connection is handed in."""
    url = (
        config.get_main_option("sqlalchemy.url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise RuntimeError("No database URL: set sqlalchemy.url, pass -x url=..., or set DATABASE_URL.")
    return url


def tenant_schema():
    """The tenant's schema to migrate, or None for the database's default schema."""
    tenant = config.attributes.get("tenant_schema")
    if tenant is None and getattr(config.cmd_opts, "x", None):
        tenant = context.get_x_argument(as_dictionary=True).get("tenant")
    return tenant


def for_tenant(connection, tenant):
    """Unqualified names mean the tenant's schema: in alembic's operations and in raw SQL."""
    connection = connection.execution_options(schema_translate_map={None: tenant})
    if connection.dialect.name == "postgresql":
        quoted = connection.dialect.identifier_preparer.quote_identifier(tenant)
        connection.exec_driver_sql(f"SET search_path TO {quoted}, public")
        connection.commit()  # a session setting; migrations then start their own transactions
    return connection


def skip_empty_autogenerate(migration_context, revision, directives):
    """An autogenerate that finds no change writes no file."""
    if not getattr(config.cmd_opts, "autogenerate", False) or not directives:
        return
    if all(ops.is_empty() for ops in directives[0].upgrade_ops_list):
        directives[:] = []


def configure_options(dialect_name):
    """The options every run shares; a caller may add hooks through config.attributes."""
    metadata = target_metadata()
    options = {
        "target_metadata": metadata,
        "compare_type": True,
        "transaction_per_migration": True,
        "render_as_batch": dialect_name == "sqlite",
        "process_revision_directives": skip_empty_autogenerate,
        "include_schemas": True,
        "version_table_schema": tenant_schema(),
    }
    enable_postgresql_enums(dialect_name)
    options.update(config.attributes.get("configure_options") or {})
    options["include_name"] = within_model_schemas(metadata, options.get("include_name"))
    return options


def run_migrations_offline():
    """Write SQL to the output instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection):
    tenant = tenant_schema()
    if tenant:
        connection = for_tenant(connection, tenant)
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run against the connection handed in, or one made from the URL."""
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        run_with(connectable)
        return
    engine = connectable or create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run_with(connection)
    finally:
        if connectable is None:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
