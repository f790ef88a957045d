"""Where the database URL and the migrations folder come from, and how a URL is shown."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MIGRATIONS_DIR = "migrations"
DEFAULT_SQLITE_FILE = "database.db"
ALEMBIC_INI = "alembic.ini"
PYPROJECT = "pyproject.toml"
FRAMEFOX_ORM = Path("config", "orm.yaml")

# alembic's `alembic init` placeholder: present in many alembic.ini files, never a real target
_PLACEHOLDER_URLS = {"driver://user:pass@localhost/dbname"}
_DRIVERS = {
    "postgresql": (("psycopg2", ""), ("psycopg", "psycopg"), ("pg8000", "pg8000")),
    "mysql": (("MySQLdb", ""), ("pymysql", "pymysql"), ("mysql.connector", "mysqlconnector")),
    "mariadb": (("MySQLdb", ""), ("pymysql", "pymysql"), ("mysql.connector", "mysqlconnector")),
}
_CREDENTIALS = re.compile(r"(?P<scheme>[\w+.-]+://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")
_ENV_REFERENCE = re.compile(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")


class SecretUrl(str):
    """A database URL that shows itself masked: in reprs, tracebacks' locals and `%config`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_url(str(self)))


def secret(url: str | None) -> SecretUrl | None:
    """The URL wrapped so that its repr hides the password (None stays None)."""
    return None if url is None else SecretUrl(url)


@dataclass(frozen=True)
class Target:
    """The resolved database URL and migrations folder, with where each came from."""

    url: str
    url_source: str
    migrations_dir: Path
    dir_source: str
    project_root: Path
    alembic_ini: Path | None = None
    pyproject: Path | None = None

    @property
    def masked_url(self) -> str:
        """The URL with its password hidden."""
        return mask_url(self.url)

    @property
    def versions_dir(self) -> Path:
        """The folder holding the revision files."""
        return self.migrations_dir / "versions"


def resolve(
    url: str | None = None,
    migrations_dir: str | os.PathLike[str] | None = None,
    project_root: str | os.PathLike[str] = ".",
) -> Target:
    """Resolve the target in the documented order; paths are read now, never cached."""
    root = Path(project_root).expanduser().resolve()
    ini = _existing(root / ALEMBIC_INI)
    pyproject = _existing(root / PYPROJECT)
    alembic_table = _pyproject_table(pyproject, "alembic") if pyproject else {}
    found_url, url_source = next(_url_candidates(url, root, ini, pyproject))
    folder, dir_source = _migrations_dir(migrations_dir, root, ini, alembic_table, pyproject)
    return Target(
        url=SecretUrl(_checked_url(found_url, url_source, root)),
        url_source=url_source,
        migrations_dir=folder,
        dir_source=dir_source,
        project_root=root,
        alembic_ini=ini,
        pyproject=pyproject if alembic_table else None,
    )


def tool_defaults(project_root: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """The `[tool.framefox_magic]` table of the project's pyproject.toml, if any."""
    pyproject = _existing(Path(project_root).expanduser().resolve() / PYPROJECT)
    return _pyproject_table(pyproject, "framefox_magic") if pyproject else {}


def _url_candidates(
    url: str | None, root: Path, ini: Path | None, pyproject: Path | None
) -> Iterator[tuple[str, str]]:
    if url:
        yield url, "argument"
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"], "DATABASE_URL"
    if pyproject and (tool_url := _pyproject_table(pyproject, "framefox_magic").get("url")):
        yield tool_url, "pyproject.toml [tool.framefox_magic]"
    if framefox_url := framefox_database_url(root):
        yield framefox_url, str(FRAMEFOX_ORM)
    if ini and (ini_url := _ini_options(ini).get("sqlalchemy.url")) not in (None, "", *_PLACEHOLDER_URLS):
        yield ini_url, ALEMBIC_INI
    yield f"sqlite:///{root / DEFAULT_SQLITE_FILE}", "default (SQLite in the project root)"


def _migrations_dir(
    given: str | os.PathLike[str] | None,
    root: Path,
    ini: Path | None,
    alembic_table: Mapping[str, Any],
    pyproject: Path | None,
) -> tuple[Path, str]:
    if given:
        return root / Path(given).expanduser(), "argument"
    if ini and (location := _ini_options(ini).get("script_location")):
        return root / location, ALEMBIC_INI
    if alembic_table.get("script_location") and pyproject:
        location = str(alembic_table["script_location"]).replace("%(here)s", str(pyproject.parent))
        return root / location, "pyproject.toml [tool.alembic]"
    tool_dir = tool_defaults(root).get("migrations_dir")
    if tool_dir:
        return root / tool_dir, "pyproject.toml [tool.framefox_magic]"
    return root / DEFAULT_MIGRATIONS_DIR, "default"


def framefox_database_url(project_root: Path) -> str | None:
    """The URL a Framefox project configures in config/orm.yaml (with its .env), if any."""
    orm_file = project_root / FRAMEFOX_ORM
    if not orm_file.is_file():
        return None
    import yaml
    from dotenv import dotenv_values

    variables = {**dotenv_values(project_root / ".env"), **os.environ}
    document = yaml.safe_load(orm_file.read_text(encoding="utf-8")) or {}
    database = document.get("database") or {}
    connections = database.get("connections") or {}
    for section in (database, connections.get("default") or {}):
        url = _substitute(str(section.get("url") or ""), variables)
        if url:
            return url
        if section.get("driver"):
            return _url_from_parts(section, variables, project_root)
    return None


def _url_from_parts(section: Mapping[str, Any], variables: Mapping[str, Any], root: Path) -> str:
    from sqlalchemy.engine import URL

    def part(name: str) -> str | None:
        value = _substitute(str(section.get(name) or ""), variables)
        return value or None

    driver = part("driver") or "sqlite"
    if driver == "sqlite":
        return f"sqlite:///{root / (part('database') or DEFAULT_SQLITE_FILE)}"
    port = part("port")
    url = URL.create(
        driver,
        username=part("username"),
        password=part("password"),
        host=part("host"),
        port=int(port) if port else None,
        database=part("database"),
    )
    return url.render_as_string(hide_password=False)


def _substitute(text: str, variables: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        return str(variables.get(match["name"]) or match["default"] or "")

    return _ENV_REFERENCE.sub(value, text).strip()


def _checked_url(url: str, source: str, root: Path) -> str:
    """The URL normalized; a malformed one is refused naming where it came from."""
    if (plain := plain_sqlite_url(url, root)) is not None:
        return plain
    from sqlalchemy.exc import ArgumentError

    try:
        return normalize_url(url, root)
    except ArgumentError:
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"The database URL from {source} is not a database URL (expected e.g. sqlite:///app.db)."
        ) from None


# a SQLite file named plainly (no query, credentials or escapes): read without SQLAlchemy
_PLAIN_SQLITE = re.compile(r"^sqlite(\+pysqlite)?:///([^?#%@\s][^?#%@]*)$")


def plain_sqlite_url(url: str, project_root: Path) -> str | None:
    """A plain SQLite file URL normalized as normalize_url does, without importing SQLAlchemy (the
    command line's `status` starts faster); None for any other URL."""
    match = _PLAIN_SQLITE.match(url.strip()) if url.isascii() else None  # SQLAlchemy escapes the rest
    if match is None or match.group(2) == ":memory:" or match.group(2).startswith("file:"):
        return None
    path = Path(match.group(2)).expanduser()
    database = match.group(2) if path.is_absolute() else str(project_root / path)
    return f"sqlite{match.group(1) or ''}:///{database}"


def normalize_url(url: str, project_root: Path) -> str:
    """Pick an installed driver for bare URLs and anchor relative SQLite files at the project."""
    from sqlalchemy.engine import make_url

    url = encode_credentials(url.strip())
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if not driver and backend in _DRIVERS:
        parsed = parsed.set(drivername=_installed_driver(backend))
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if not path.is_absolute() and not parsed.database.startswith("file:"):
            parsed = parsed.set(database=str(project_root / path))
    return parsed.render_as_string(hide_password=False)


def _installed_driver(backend: str) -> str:
    for module, name in _DRIVERS[backend]:
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            return f"{backend}+{name}" if name else backend
    return backend


def encode_credentials(url: str) -> str:
    """Percent-encode user and password when the password holds a bare `@` (the host follows the
    last `@`, as browsers read it), so that no part of the password is taken for the host."""
    from urllib.parse import quote, unquote

    scheme, separator, rest = url.partition("://")
    at = rest.rfind("@")
    if not separator or scheme.startswith("sqlite") or rest.count("@") < 2 or ":" not in rest[:at]:
        return url
    user, _, password = rest[:at].partition(":")
    return (f"{scheme}://{quote(unquote(user), safe='')}:{quote(unquote(password), safe='')}"
            f"@{rest[at + 1:]}")


def mask_url(url: str) -> str:
    """Show a URL with its password replaced by ***."""
    if url.isascii() and _PLAIN_SQLITE.match(url):  # no credentials: shown as it is
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(encode_credentials(str(url))).render_as_string(hide_password=True)
    except Exception:
        return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", url)


def redact(text: str, *urls: str | None) -> str:
    """Remove the passwords of the given URLs (and of any URL-shaped text) from a message."""
    for form in sorted(password_forms(*urls), key=len, reverse=True):
        text = text.replace(form, "***")
    return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(encode_credentials(str(url))).password
    except Exception:
        match = _CREDENTIALS.search(url)
        return match["password"] if match and match["password"] else None


def password_forms(*urls: str | None) -> set[str]:
    """Each given URL's password as typed, percent-encoded and decoded."""
    from urllib.parse import quote, unquote

    forms: set[str] = set()
    for url in urls:
        password = _password(url) if url else None
        if password:
            forms |= {password, quote(password, safe=""), unquote(password)}
    return forms - {""}


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


_parsed: dict[tuple[str, str], tuple[int, Any]] = {}


def _read_once(path: Path, kind: str, parse: Any) -> Any:
    """Parse a settings file, again only when its modification time changed."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    cached = _parsed.get((str(path), kind))
    if cached is None or cached[0] != mtime:
        cached = _parsed[(str(path), kind)] = (mtime, parse(path))
    return cached[1]


def _ini_options(ini: Path) -> dict[str, str]:
    return _read_once(ini, "ini", _parse_ini)


def _parse_ini(ini: Path) -> dict[str, str]:
    import configparser

    parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
    try:
        parser.read(ini, encoding="utf-8")
        return dict(parser["alembic"]) if parser.has_section("alembic") else {}
    except (configparser.Error, UnicodeDecodeError) as error:
        from .errors import ConfigurationError

        errors = getattr(error, "errors", None)
        line = getattr(error, "lineno", None) or (errors[0][0] if errors else None)
        where = f"{ini.name}, line {line}" if line else ini.name
        reason = type(error).__name__ if isinstance(error, UnicodeDecodeError) else \
            str(error).splitlines()[0].split(": '")[0]
        raise ConfigurationError(f"{where} cannot be read: {reason}.") from None


def _pyproject_table(pyproject: Path, name: str) -> dict[str, Any]:
    document = _read_once(pyproject, "toml", _parse_toml)
    return dict(document.get("tool", {}).get(name, {}))


def _parse_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        from .errors import ConfigurationError

        # its settings (the URL among them) would be silently replaced by the defaults otherwise
        raise ConfigurationError(
            f"{path.name} is not valid TOML ({error}); fix it, since the settings in it are not read."
        ) from None
