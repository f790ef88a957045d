"""Reflection work saved around alembic's comparison: kept between calls while the schema is
unchanged (SQLite, MariaDB/MySQL, PostgreSQL); PostgreSQL's sequence owners read once per call.

alembic reflects every table of the database on each comparison (on SQLite, several catalog
queries per table; on MariaDB/MySQL a SHOW CREATE TABLE per table, parsed). A cheap, exact
fingerprint of the schema says whether an earlier reflection still holds: on SQLite a hash of the
rows of each attached database's ``sqlite_master`` (where SQLite keeps its entire schema); on
MariaDB/MySQL a hash of the schema-defining columns of the database's information_schema rows
(tables, columns, indexes, constraints, foreign keys, checks, views), read in one query; on
PostgreSQL a hash of the row versions (xmin, ctid) of the catalog rows reflection reads, which
change with any DDL, also read in one query. A repeated
``diff``/``check``/``revision`` on an unchanged database then skips reflecting again; a change made
from anywhere (another connection, another process) changes the fingerprint. alembic's comparison
itself runs as always, on a fresh copy of what was reflected.

It is wired in as an alembic autogenerate plugin that runs before alembic's table comparison and
fills the inspector's cache the way alembic's own pre-caching does.

On PostgreSQL alembic asks, column by column, which column owns the sequence in a ``nextval()``
default (to recognise SERIAL): one query per table. The owners of all sequences are read in one
query instead; a sequence not found there is still looked up alembic's own way.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Connection, Inspector

PLUGIN_NAME = "framefox_magic.reused_reflection"
CACHE_OPTION = "framefox_magic_reflection"
# what Inspector.get_multi_<kind> reflects; alembic pre-caches each under "alembic_<kind>"
REFLECTED_KINDS = (
    "columns", "pk_constraint", "foreign_keys", "indexes", "unique_constraints",
    "table_comment", "check_constraints", "table_options",
)
# "mariadb" is the dialect's name when the URL says mariadb://, "mysql" for mysql:// on either server
REUSING_DIALECTS = ("sqlite", "mysql", "mariadb", "postgresql")
_plugin: Any = None


class ReflectionCache:
    """The last reflection of one database, with the fingerprint of the catalog it was read from."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._frozen = b""

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        """A fresh copy of the reflection made for `key`, or None."""
        return pickle.loads(self._frozen) if key == self._key else None

    def put(self, key: tuple[Any, ...], reflected: dict[str, Any]) -> None:
        """Keep a copy of `reflected` (the caller may go on changing its own)."""
        self._frozen = pickle.dumps(reflected, protocol=pickle.HIGHEST_PROTOCOL)
        self._key = key


def reuse_in(migration_context: MigrationContext, cache: ReflectionCache) -> None:
    """Save reflection work in the next autogenerate on this context (SQLite, MariaDB/MySQL and
    PostgreSQL)."""
    dialect = migration_context.dialect.name
    if dialect in REUSING_DIALECTS:
        _reuse_reflection(migration_context, cache)
    if dialect == "postgresql":
        _read_sequence_owners_once(migration_context)


def _reuse_reflection(migration_context: MigrationContext, cache: ReflectionCache) -> None:
    """Name the plugin in this context's options and hand it the cache."""
    _register_plugin()
    opts = migration_context.opts
    plugins = list(opts.get("autogenerate_plugins") or ["alembic.autogenerate.*"])
    opts["autogenerate_plugins"] = [*plugins, PLUGIN_NAME]
    opts[CACHE_OPTION] = cache


def _register_plugin() -> None:
    global _plugin
    if _plugin is not None:
        return
    from alembic.runtime.plugins import Plugin
    from alembic.util import DispatchPriority

    _plugin = Plugin(PLUGIN_NAME)
    for dialect in REUSING_DIALECTS:
        _plugin.add_autogenerate_comparator(_fill_inspector, "schema", qualifier=dialect,
                                            priority=DispatchPriority.FIRST)


def unregister_plugin() -> None:
    """Take the plugin out of alembic's registry (the next comparison registers it again)."""
    global _plugin
    if _plugin is not None:
        _plugin.remove()
        _plugin = None


def _fill_inspector(autogen_context: AutogenContext, upgrade_ops: Any, schemas: set) -> None:
    """Hand alembic's inspector the reflection of the main schema, from the cache when valid."""
    cache = autogen_context.migration_context.opts.get(CACHE_OPTION)
    if cache is None or schemas != {None}:
        return
    connection = autogen_context.connection
    inspector = autogen_context.inspector
    fingerprint = catalog_fingerprint(connection)
    if fingerprint is None:
        return  # alembic reflects as always
    names = _compared_table_names(autogen_context, inspector)
    key = (str(connection.engine.url), fingerprint, tuple(sorted(names)))
    reflected = cache.get(key)
    if reflected is None:
        available = len(inspector.get_table_names())  # read once above: from the inspector's cache
        reflected = {f"alembic_{kind}": _reflect(inspector, kind, names, available)
                     for kind in REFLECTED_KINDS}
        cache.put(key, reflected)
    inspector.info_cache.update(reflected)


def _compared_table_names(autogen_context: AutogenContext, inspector: Inspector) -> list[str]:
    """The tables alembic compares: all but its version table, through the include_name filter."""
    migration_context = autogen_context.migration_context
    names = set(inspector.get_table_names())
    if migration_context.version_table_schema is None:
        names.discard(migration_context.version_table)
    return [name for name in names
            if autogen_context.run_name_filters(name, "table", {"schema_name": None})]


def _reflect(inspector: Inspector, kind: str, names: list[str], available: int) -> Any:
    method = getattr(inspector, f"get_multi_{kind}")
    # alembic's own pre-cache choice: above 100 tables that are more than half of the schema's, a
    # dialect with a multi-table query of its own (PostgreSQL) reads every table, unfiltered, faster
    # than naming them all (500 tables: 107 ms against 143 ms); the compared ones are among them
    unfiltered = (len(names) > 100 and len(names) > available / 2
                  and _has_own(inspector.dialect, method.__name__))
    try:
        return method(schema=None, filter_names=None if unfiltered else names)
    except NotImplementedError:
        return NotImplementedError  # as alembic records a kind the dialect cannot reflect


def _has_own(dialect: Any, method_name: str) -> bool:
    """Whether the dialect reflects many tables in a query of its own, rather than table by table."""
    from sqlalchemy.engine.default import DefaultDialect

    return getattr(type(dialect), method_name) is not getattr(DefaultDialect, method_name)


def catalog_fingerprint(connection: Connection) -> str | None:
    """A hash that changes whenever the schema of the connection's database(s) does; None when
    there is none to trust."""
    dialect = connection.dialect
    if dialect.name == "sqlite":
        return _sqlite_fingerprint(connection)
    version = dialect.server_version_info or (0,)
    if dialect.name == "postgresql":  # pg_sequence: 10 and later
        return _postgresql_fingerprint(connection) if version >= (10,) else None
    if getattr(dialect, "is_mariadb", False) and version < (10, 2, 22):
        return None  # CHECK constraints without information_schema.CHECK_CONSTRAINTS
    return _mysql_fingerprint(connection)


def _sqlite_fingerprint(connection: Connection) -> str:
    """A hash of every schema row of every database attached to this SQLite connection."""
    quote = connection.dialect.identifier_preparer.quote
    digest = hashlib.blake2b(digest_size=16)
    for _, database, _ in connection.exec_driver_sql("PRAGMA database_list").fetchall():
        rows = connection.exec_driver_sql(
            f"SELECT type, name, tbl_name, sql FROM {quote(database)}.sqlite_master ORDER BY rowid"
        ).fetchall()
        digest.update(repr((database, rows)).encode())
    return digest.hexdigest()


# The information_schema rows behind what alembic reflects on MariaDB/MySQL (SHOW CREATE TABLE):
# view -> (its schema column, the columns that define the schema). Left out: row counts, sizes,
# AUTO_INCREMENT counters, times and index cardinality, which move with the data.
_MYSQL_CATALOG = {
    "TABLES": ("TABLE_SCHEMA", "TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION, CREATE_OPTIONS, "
               "TABLE_COMMENT"),
    "COLUMNS": ("TABLE_SCHEMA", "TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, "
                "COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_KEY, EXTRA, COLUMN_COMMENT, "
                "GENERATION_EXPRESSION"),
    "STATISTICS": ("TABLE_SCHEMA", "TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, "
                   "COLLATION, SUB_PART, NULLABLE, INDEX_TYPE, COMMENT, INDEX_COMMENT"),
    "TABLE_CONSTRAINTS": ("CONSTRAINT_SCHEMA", "TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE"),
    "KEY_COLUMN_USAGE": ("CONSTRAINT_SCHEMA", "TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, ORDINAL_POSITION, "
                         "POSITION_IN_UNIQUE_CONSTRAINT, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, "
                         "REFERENCED_COLUMN_NAME"),
    "REFERENTIAL_CONSTRAINTS": ("CONSTRAINT_SCHEMA", "TABLE_NAME, CONSTRAINT_NAME, UNIQUE_CONSTRAINT_NAME, "
                                "MATCH_OPTION, UPDATE_RULE, DELETE_RULE, REFERENCED_TABLE_NAME"),
    "CHECK_CONSTRAINTS": ("CONSTRAINT_SCHEMA", "TABLE_NAME, CONSTRAINT_NAME, LEVEL, CHECK_CLAUSE"),
    "VIEWS": ("TABLE_SCHEMA", "TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, DEFINER, SECURITY_TYPE"),
}
# MySQL 8 names the same things differently: its CHECK_CONSTRAINTS has no table (the table is in
# TABLE_CONSTRAINTS, with ENFORCED), and a functional index part is in STATISTICS.EXPRESSION
_MYSQL8_CHANGES = {
    "CHECK_CONSTRAINTS": ("CONSTRAINT_SCHEMA", "CONSTRAINT_NAME, CHECK_CLAUSE"),
    "TABLE_CONSTRAINTS": ("CONSTRAINT_SCHEMA", "TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE, ENFORCED"),
    "STATISTICS": ("TABLE_SCHEMA", _MYSQL_CATALOG["STATISTICS"][1] + ", EXPRESSION"),
}
# On MariaDB the server opens every table again for each view it lists, so rows that other views
# already determine are not read: TABLE_CONSTRAINTS (a primary key or unique constraint is a
# STATISTICS index with NON_UNIQUE = 0, a foreign key a REFERENTIAL_CONSTRAINTS row, a check a
# CHECK_CONSTRAINTS row, each with its table and name), and KEY_COLUMN_USAGE's rows of primary and
# unique keys (their columns are STATISTICS rows); its foreign key rows (the columns) are read.
_MARIADB_LEFT_OUT = ("TABLE_CONSTRAINTS",)
_MARIADB_ROWS = {"KEY_COLUMN_USAGE": " AND REFERENCED_TABLE_NAME IS NOT NULL"}


def _mysql_catalog_query(dialect: Any) -> str:
    """One query listing every schema-defining information_schema row of the current database, each
    as one text: its view, a tab, its values (QUOTE keeps NULL, '' and separators apart, so that
    the rows joined by newlines still tell each value apart)."""
    catalog = dict(_MYSQL_CATALOG)
    rows: dict[str, str] = {}
    if getattr(dialect, "is_mariadb", False):
        for view in _MARIADB_LEFT_OUT:
            del catalog[view]
        rows = _MARIADB_ROWS
    elif (dialect.server_version_info or (0,)) >= (8, 0, 16):
        catalog.update(_MYSQL8_CHANGES)
    else:  # MySQL before 8.0.16 parses CHECK constraints and keeps none
        del catalog["CHECK_CONSTRAINTS"]
    selects = []
    for view, (schema_column, columns) in catalog.items():
        quoted = ", ".join(f"QUOTE({column.strip()})" for column in columns.split(","))
        where = f"{schema_column} = DATABASE(){rows.get(view, '')}"
        selects.append(f"SELECT CONCAT('{view}\t', CONCAT_WS(',', {quoted})) "
                       f"FROM information_schema.{view} WHERE {where}")
    return "SELECT CONCAT('\t', QUOTE(DATABASE())) UNION ALL " + " UNION ALL ".join(selects)


def _mysql_fingerprint(connection: Connection) -> str:
    """A hash of the schema rows information_schema holds for the connection's current database."""
    rows = connection.exec_driver_sql(_mysql_catalog_query(connection.dialect)).scalars().all()
    rows.sort()  # information_schema promises no order
    return hashlib.blake2b("\n".join(rows).encode(), digest_size=16).hexdigest()


# PostgreSQL: every catalog row a reflection reads, as (catalog, which rows). Objects made by users
# have OIDs from 16384 (FirstNormalObjectId); the rest belong to the system and do not change.
# A row's (xmin, ctid) changes whenever the row is inserted, updated or deleted by any transaction,
# so their multiset changes with any DDL (in any schema of the database: that only costs a new
# reflection). Only VACUUM/ANALYZE's in-place updates (row counts, pages) leave it unchanged,
# and reflection reads none of those columns. Rows this very transaction wrote would get new
# versions on every call (alembic creates its version table in it when missing): then no
# fingerprint is trusted (txid_current_if_assigned() is NULL until a transaction writes).
_POSTGRESQL_CATALOG = (
    ("pg_namespace", "true"), ("pg_class", "oid >= 16384"), ("pg_attribute", "attrelid >= 16384"),
    ("pg_attrdef", "true"), ("pg_constraint", "oid >= 16384"), ("pg_index", "indexrelid >= 16384"),
    ("pg_type", "oid >= 16384"), ("pg_enum", "true"), ("pg_description", "objoid >= 16384"),
    ("pg_sequence", "true"), ("pg_depend", "objid >= 16384"), ("pg_rewrite", "ev_class >= 16384"),
    ("pg_inherits", "true"), ("pg_collation", "oid >= 16384"),
)
_POSTGRESQL_FINGERPRINT = " UNION ALL ".join(
    ["SELECT 'search_path', txid_current_if_assigned(), "
     "current_schema() || ' ' || array_to_string(current_schemas(true), ',')"]
    + [f"SELECT '{catalog}', count(*), md5(string_agg(xmin::text || '@' || ctid::text, ',' ORDER BY ctid)) "
       f"FROM pg_catalog.{catalog} WHERE {rows}" for catalog, rows in _POSTGRESQL_CATALOG]
)


def _postgresql_fingerprint(connection: Connection) -> str | None:
    """A hash of the row versions of every catalog row PostgreSQL's reflection reads (one query);
    None inside a transaction that has written anything."""
    rows = connection.exec_driver_sql(_POSTGRESQL_FINGERPRINT).fetchall()
    if rows[0][1] is not None:
        return None
    return hashlib.blake2b(repr(rows).encode(), digest_size=16).hexdigest()


_SEQUENCE_OWNERS = """
SELECT c.oid::regclass::text, a.attname
FROM pg_class c
JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
     AND d.refclassid = 'pg_class'::regclass
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE c.relkind = 'S'
"""


def _read_sequence_owners_once(migration_context: MigrationContext) -> None:
    """Answer alembic's per-column SERIAL question from one read of every sequence's owner."""
    impl = migration_context.impl
    ask_alembic = impl.autogen_column_reflect
    owners: dict[str, str] | None = None

    def column_reflect(inspector: Inspector, table: Any, column_info: dict[str, Any]) -> None:
        nonlocal owners
        default = column_info.get("default") if _is_integer(column_info["type"]) else None
        found = re.match(r"nextval\('(.+?)'::regclass\)", default or "")
        if found is None:
            return ask_alembic(inspector, table, column_info)
        if owners is None:
            owners = _sequence_owners(migration_context.connection)
        owner = owners.get(found.group(1))
        if owner is None:
            return ask_alembic(inspector, table, column_info)
        if owner == column_info["name"]:
            del column_info["default"]  # a SERIAL column: its sequence default is not compared
        return None

    impl.autogen_column_reflect = column_reflect


def _sequence_owners(connection: Connection) -> dict[str, str]:
    from sqlalchemy import text

    owners: dict[str, str] = {}
    for sequence, column in connection.execute(text(_SEQUENCE_OWNERS)):
        owners.setdefault(sequence, column)
    return owners


def _is_integer(column_type: Any) -> bool:
    from sqlalchemy.dialects.postgresql import BIGINT, INTEGER

    return isinstance(column_type, (INTEGER, BIGINT))
