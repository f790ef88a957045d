"""Where the database URL and the migrations folder come from, and how a URL is shown."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import sqlalchemy as sa

from framefox_magic import settings
from framefox_magic.errors import ConfigurationError
from framefox_magic.settings import mask_url, normalize_url, redact, resolve

PSYCOPG2_INSTALLED = importlib.util.find_spec("psycopg2") is not None
MYSQLDB_INSTALLED = importlib.util.find_spec("MySQLdb") is not None


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def pyproject(root: Path, text: str) -> Path:
    return write(root / "pyproject.toml", text)


def alembic_ini(root: Path, *lines: str) -> Path:
    return write(root / "alembic.ini", "\n".join(["[alembic]", *lines]) + "\n")


def orm_yaml(root: Path, text: str) -> Path:
    return write(root / "config" / "orm.yaml", text)


def dotenv(root: Path, text: str) -> Path:
    return write(root / ".env", text)


def url_parts(url: str) -> tuple[str, str | None, str | None, int | None, str | None, str | None]:
    parsed = sa.make_url(url)
    return parsed.drivername, parsed.username, parsed.password, parsed.port, parsed.host, parsed.database


# ---------------------------------------------------------------- the database URL, in order


def test_default_is_a_sqlite_file_in_the_project_root(project):
    target = resolve(project_root=project)

    assert target.url == f"sqlite:///{project / 'database.db'}"
    assert target.url_source.startswith("default")


def test_argument_wins_over_everything(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from_env.db")
    pyproject(project, '[tool.framefox_magic]\nurl = "sqlite:////tmp/from_pyproject.db"\n')
    alembic_ini(project, "sqlalchemy.url = sqlite:////tmp/from_ini.db")

    target = resolve("sqlite:////tmp/given.db", project_root=project)

    assert target.url == "sqlite:////tmp/given.db"
    assert target.url_source == "argument"


def test_database_url_variable_wins_over_project_files(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from_env.db")
    pyproject(project, '[tool.framefox_magic]\nurl = "sqlite:////tmp/from_pyproject.db"\n')
    orm_yaml(project, "database:\n  url: sqlite:////tmp/from_orm.db\n")
    alembic_ini(project, "sqlalchemy.url = sqlite:////tmp/from_ini.db")

    target = resolve(project_root=project)

    assert target.url == "sqlite:////tmp/from_env.db"
    assert target.url_source == "DATABASE_URL"


def test_empty_database_url_variable_is_ignored(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "")

    assert resolve(project_root=project).url == f"sqlite:///{project / 'database.db'}"


def test_pyproject_tool_table_wins_over_framefox_settings_and_alembic_ini(project):
    pyproject(project, '[tool.framefox_magic]\nurl = "sqlite:////tmp/from_pyproject.db"\n')
    orm_yaml(project, "database:\n  url: sqlite:////tmp/from_orm.db\n")
    alembic_ini(project, "sqlalchemy.url = sqlite:////tmp/from_ini.db")

    target = resolve(project_root=project)

    assert target.url == "sqlite:////tmp/from_pyproject.db"
    assert "pyproject.toml" in target.url_source


def test_framefox_orm_yaml_with_database_url_from_its_env_file(project):
    orm_yaml(project, 'database:\n  url: "${DATABASE_URL}"\n  echo: false\n')
    dotenv(project, "DATABASE_URL=postgresql://app:pw@db.example:5433/shop\n")

    target = resolve(project_root=project)

    assert url_parts(target.url) == ("postgresql+psycopg", "app", "pw", 5433, "db.example", "shop")
    assert "orm.yaml" in target.url_source


def test_framefox_orm_yaml_wins_over_alembic_ini(project):
    orm_yaml(project, 'database:\n  url: "${DATABASE_URL}"\n')
    dotenv(project, "DATABASE_URL=sqlite:////tmp/from_dotenv.db\n")
    alembic_ini(project, "sqlalchemy.url = sqlite:////tmp/from_ini.db")

    assert resolve(project_root=project).url == "sqlite:////tmp/from_dotenv.db"


def test_framefox_orm_yaml_detailed_form_uses_the_defaults(project):
    orm_yaml(
        project,
        "database:\n"
        '  url: "${DATABASE_URL}"\n'
        '  driver: "${DATABASE_DRIVER:-postgresql}"\n'
        '  host: "${DATABASE_HOST:-localhost}"\n'
        '  port: "${DATABASE_PORT:-5432}"\n'
        '  username: "${DATABASE_USER:-framefox}"\n'
        '  password: "${DATABASE_PASSWORD}"\n'
        '  database: "${DATABASE_NAME:-framefoxdb}"\n',
    )

    target = resolve(project_root=project)

    assert url_parts(target.url) == ("postgresql+psycopg", "framefox", None, 5432, "localhost", "framefoxdb")


def test_framefox_orm_yaml_detailed_form_takes_values_from_env_file(project):
    orm_yaml(
        project,
        "database:\n"
        '  driver: "${DATABASE_DRIVER:-postgresql}"\n'
        '  host: "${DATABASE_HOST:-localhost}"\n'
        '  port: "${DATABASE_PORT:-5432}"\n'
        '  username: "${DATABASE_USER:-framefox}"\n'
        '  password: "${DATABASE_PASSWORD}"\n'
        '  database: "${DATABASE_NAME:-framefoxdb}"\n',
    )
    dotenv(project, "DATABASE_DRIVER=mysql\nDATABASE_HOST=db\nDATABASE_PORT=3307\nDATABASE_PASSWORD=p@ss\n")

    target = resolve(project_root=project)

    assert url_parts(target.url) == ("mysql+pymysql", "framefox", "p@ss", 3307, "db", "framefoxdb")


def test_environment_variable_wins_over_the_env_file(project, monkeypatch):
    orm_yaml(project, 'database:\n  driver: postgresql\n  host: "${DATABASE_HOST:-localhost}"\n')
    dotenv(project, "DATABASE_HOST=from-dotenv\n")
    monkeypatch.setenv("DATABASE_HOST", "from-environment")

    assert sa.make_url(resolve(project_root=project).url).host == "from-environment"


def test_framefox_orm_yaml_detailed_sqlite_is_a_file_in_the_project(project):
    orm_yaml(project, "database:\n  driver: sqlite\n  database: app.db\n")

    assert resolve(project_root=project).url == f"sqlite:///{project / 'app.db'}"


def test_framefox_orm_yaml_without_a_url_falls_through(project):
    orm_yaml(project, 'database:\n  url: "${DATABASE_URL}"\n')

    target = resolve(project_root=project)

    assert target.url == f"sqlite:///{project / 'database.db'}"


def test_alembic_ini_url_is_used(project):
    alembic_ini(project, "script_location = migrations", "sqlalchemy.url = sqlite:////tmp/from_ini.db")

    target = resolve(project_root=project)

    assert target.url == "sqlite:////tmp/from_ini.db"
    assert target.url_source == "alembic.ini"


def test_alembic_ini_url_with_here_is_anchored_at_the_ini(project):
    alembic_ini(project, "sqlalchemy.url = sqlite:///%(here)s/app.db")

    assert resolve(project_root=project).url == f"sqlite:///{project / 'app.db'}"


def test_alembic_init_placeholder_url_is_ignored(project):
    alembic_ini(project, "script_location = migrations", "sqlalchemy.url = driver://user:pass@localhost/dbname")

    target = resolve(project_root=project)

    assert target.url == f"sqlite:///{project / 'database.db'}"
    assert target.url_source.startswith("default")


def test_alembic_ini_without_a_url_falls_through_to_the_default(project):
    alembic_ini(project, "script_location = migrations")

    assert resolve(project_root=project).url == f"sqlite:///{project / 'database.db'}"


# ---------------------------------------------------------------- drivers and SQLite paths


@pytest.mark.skipif(PSYCOPG2_INSTALLED, reason="psycopg2 is installed; it would be picked first")
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_bare_postgresql_url_gets_psycopg(project, scheme):
    url = normalize_url(f"{scheme}://user:pw@localhost:5432/app", project)

    assert url == "postgresql+psycopg://user:pw@localhost:5432/app"


@pytest.mark.skipif(MYSQLDB_INSTALLED, reason="mysqlclient is installed; it would be picked first")
@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
def test_bare_mysql_url_gets_pymysql(project, scheme):
    url = normalize_url(f"{scheme}://root:pw@localhost:3306/app", project)

    assert url == f"{scheme}+pymysql://root:pw@localhost:3306/app"


def test_bare_url_from_database_url_variable_gets_a_driver(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")

    url = resolve(project_root=project).url

    assert sa.make_url(url).drivername in {"postgresql+psycopg", "postgresql"}
    if not PSYCOPG2_INSTALLED:
        assert sa.make_url(url).drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://u@localhost/app",
        "postgresql+pg8000://u@localhost/app",
        "mysql+mysqlconnector://u@localhost/app",
    ],
)
def test_explicit_driver_is_kept(project, url):
    assert normalize_url(url, project) == url


def test_password_with_special_characters_survives_normalizing(project):
    url = normalize_url("postgresql://u:p%40ss%2Fw@localhost/app", project)

    assert sa.make_url(url).password == "p@ss/w"


def test_relative_sqlite_path_is_anchored_at_the_project_root(project):
    assert normalize_url("sqlite:///app.db", project) == f"sqlite:///{project / 'app.db'}"


def test_relative_sqlite_path_in_a_subfolder(project):
    assert normalize_url("sqlite:///data/app.db", project) == f"sqlite:///{project / 'data' / 'app.db'}"


def test_relative_sqlite_path_from_database_url_is_anchored_at_the_project_root(project, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///app.db")

    assert resolve(project_root=project).url == f"sqlite:///{project / 'app.db'}"


def test_relative_sqlite_path_from_alembic_ini_is_anchored_at_the_project_root(project):
    alembic_ini(project, "sqlalchemy.url = sqlite:///app.db")

    assert resolve(project_root=project).url == f"sqlite:///{project / 'app.db'}"


@pytest.mark.parametrize("url", ["sqlite:////var/data/app.db", "sqlite:///:memory:", "sqlite://"])
def test_absolute_and_memory_sqlite_urls_are_kept(project, url):
    assert sa.make_url(normalize_url(url, project)).database == sa.make_url(url).database


def test_project_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    target = resolve(project_root=".")

    assert target.project_root == tmp_path.resolve()
    assert target.url == f"sqlite:///{tmp_path.resolve() / 'database.db'}"


# ---------------------------------------------------------------- the migrations folder


def test_default_migrations_folder(project):
    target = resolve(project_root=project)

    assert target.migrations_dir == project / "migrations"
    assert target.versions_dir == project / "migrations" / "versions"
    assert target.dir_source == "default"


def test_migrations_folder_argument_wins(project):
    alembic_ini(project, "script_location = %(here)s/from_ini")

    target = resolve(migrations_dir="db/migrations", project_root=project)

    assert target.migrations_dir == project / "db" / "migrations"
    assert target.dir_source == "argument"


def test_script_location_from_alembic_ini(project):
    alembic_ini(project, "script_location = %(here)s/alembic")

    target = resolve(project_root=project)

    assert target.migrations_dir == project / "alembic"
    assert target.dir_source == "alembic.ini"
    assert target.alembic_ini == project / "alembic.ini"


def test_relative_script_location_from_alembic_ini(project):
    alembic_ini(project, "script_location = alembic")

    assert resolve(project_root=project).migrations_dir == project / "alembic"


@pytest.mark.parametrize("location", ["%(here)s/alembic", "alembic"])
def test_script_location_from_pyproject_tool_alembic(project, location):
    pyproject(project, f'[tool.alembic]\nscript_location = "{location}"\n')

    target = resolve(project_root=project)

    assert target.migrations_dir == project / "alembic"
    assert target.dir_source == "pyproject.toml [tool.alembic]"
    assert target.pyproject == project / "pyproject.toml"


def test_alembic_ini_wins_over_pyproject_tool_alembic(project):
    alembic_ini(project, "script_location = from_ini")
    pyproject(project, '[tool.alembic]\nscript_location = "from_pyproject"\n')

    assert resolve(project_root=project).migrations_dir == project / "from_ini"


def test_migrations_folder_from_pyproject_tool_table(project):
    pyproject(project, '[tool.framefox_magic]\nmigrations_dir = "db/versions_here"\n')

    assert resolve(project_root=project).migrations_dir == project / "db" / "versions_here"


def test_pyproject_without_tool_alembic_is_not_handed_to_alembic(project):
    pyproject(project, '[project]\nname = "app"\n')

    assert resolve(project_root=project).pyproject is None


def test_a_pyproject_that_is_not_toml_is_named_instead_of_ignored(project):
    """Its URL would otherwise silently become the default SQLite file."""
    pyproject(project, '[tool.framefox_magic]\nurl = "postgresql://me@db/app"\nthis is [not toml\n')

    with pytest.raises(ConfigurationError, match=r"pyproject.toml is not valid TOML \(.*line 3"):
        resolve(project_root=project)


def test_tool_defaults_reads_the_framefox_magic_table(project):
    pyproject(project, '[tool.framefox_magic]\nmetadata = "app.models:SQLModel"\n')

    assert settings.tool_defaults(project) == {"metadata": "app.models:SQLModel"}


# ---------------------------------------------------------------- masking


def test_mask_url_hides_the_password():
    masked = mask_url("postgresql+psycopg://app:s3cr3tpw@db:5432/shop")

    assert "s3cr3tpw" not in masked
    assert masked == "postgresql+psycopg://app:***@db:5432/shop"


def test_mask_url_hides_an_encoded_password():
    masked = mask_url("postgresql://app:p%40ss%2Fword@db/shop")

    assert "p%40ss" not in masked
    assert "p@ss" not in masked
    assert "***" in masked


@pytest.mark.parametrize("url", ["postgresql://app@db/shop", "sqlite:////tmp/app.db", "sqlite://"])
def test_mask_url_leaves_urls_without_password_alone(url):
    assert mask_url(url) == url


def test_mask_url_of_something_unparsable_still_hides_the_password():
    masked = mask_url("what is this://app:s3cr3tpw@db/shop")

    assert "s3cr3tpw" not in masked


def test_masked_url_of_a_target(project):
    target = resolve("postgresql://app:s3cr3tpw@db/shop", project_root=project)

    assert "s3cr3tpw" in target.url  # needed to connect
    assert "s3cr3tpw" not in target.masked_url


def test_redact_removes_the_password_of_a_given_url():
    url = "postgresql://app:s3cr3tpw@db/shop"

    text = redact("authentication failed with password s3cr3tpw for app", url)

    assert "s3cr3tpw" not in text
    assert "authentication failed" in text


def test_redact_removes_encoded_and_decoded_forms():
    url = "postgresql://app:p%40ss%2Fword@db/shop"

    text = redact("tried p@ss/word and p%40ss%2Fword", url)

    assert "p@ss/word" not in text
    assert "p%40ss%2Fword" not in text


def test_redact_masks_credentials_of_any_url_in_the_text():
    text = redact("could not connect to mysql+pymysql://root:hunter2@db:3306/app, giving up")

    assert "hunter2" not in text
    assert "mysql+pymysql://root:***@db:3306/app" in text


def test_redact_leaves_text_without_secrets_alone():
    assert redact("nothing to hide here", "sqlite:////tmp/app.db", None) == "nothing to hide here"
