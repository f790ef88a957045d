"""One exception family, and the one place that turns alembic / SQLAlchemy errors into it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

from .settings import password_forms, redact


class MigrationError(Exception):
    """A failure the user can act on; its message is short and says what to do."""


class ConfigurationError(MigrationError):
    """The target (URL, migrations folder, metadata) is missing or malformed."""


class RenameQuestion(MigrationError):
    """Autogenerate saw a drop and an add that could be one rename; the user says which."""

    def __init__(self, message: str, candidates: tuple = ()) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)


class NotInitialized(ConfigurationError):
    """The migrations folder does not exist yet."""


class RevisionNotFound(MigrationError):
    """No revision matches the given identifier."""

    wanted: str | None = None  # the identifier, when it is known


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'Did you mean X?' for the choices that start with `word` or are spelled like it; else ''."""
    import difflib

    choices = list(choices)
    starting = [choice for choice in choices if word and choice.startswith(word)]
    close = starting[:3] or difflib.get_close_matches(word, choices, n=2, cutoff=0.7)
    if not close:
        return ""
    return f"Did you mean {' or '.join(repr(choice) for choice in close)}?"


def with_suggestion(error: RevisionNotFound, revisions: Iterable[str]) -> RevisionNotFound:
    """The error for a missing revision, with the ids it was probably meant to be: a typo is not
    a reason to `stamp`."""
    hint = did_you_mean(error.wanted or "", revisions) if error.wanted else ""
    if hint:
        error.args = (f"No revision '{error.wanted}' in the migrations folder. {hint}",)
    return error


class AmbiguousRevision(MigrationError):
    """A revision prefix matches more than one revision."""


class MultipleHeads(MigrationError):
    """The history has several heads where one is needed."""


class NotUpToDate(MigrationError):
    """The database is behind the migration scripts."""


class DatabaseUnreachable(MigrationError):
    """The database cannot be connected to."""


class RevisionProtected(MigrationError):
    """The revision is applied or needed by others; it takes force to remove it."""


class ChangesDetected(MigrationError):
    """The models and the database differ (the `check` command failed)."""

    def __init__(self, message: str, diff: object = None) -> None:
        super().__init__(message)
        self.diff = diff


class MigrationFailed(MigrationError):
    """A revision's upgrade or downgrade failed while running."""

    def __init__(self, message: str, revision: str | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class ConfirmationRequired(MigrationError):
    """A destructive command was asked for without confirmation."""


_NOT_FOUND = re.compile(r"Can't locate revision identified by '([^']*)'|No such revision or branch '([^']*)'")
_AMBIGUOUS = re.compile(r"Multiple revisions start with '([^']*)'")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def database_message(error: BaseException) -> str:
    """The database's (or the script's) own words for a failure, in one line."""
    return _first_line(error)


def _translate_alembic(error: Exception) -> MigrationError:
    from alembic.script import revision as rev

    message = str(error)
    cause = error.__cause__
    if isinstance(cause, rev.RevisionError) and _AMBIGUOUS.search(str(cause)):
        message = str(cause)  # alembic re-raises "several match" as "can't locate"
    if isinstance(error, rev.MultipleHeads) or "Multiple head" in message:
        return MultipleHeads(
            "The history has more than one head; name one (REV, branch@head), use 'heads', "
            "or join them with `merge heads -m MESSAGE`."
        )
    if match := _AMBIGUOUS.search(message):
        return AmbiguousRevision(f"'{match.group(1)}' matches several revisions; type more of its id.")
    if match := _NOT_FOUND.search(message):
        wanted = match.group(1) or match.group(2)
        error = RevisionNotFound(
            f"No revision '{wanted}' in the migrations folder (see `history`); if the "
            "database names it, the file was removed: `stamp` the database to a known revision."
        )
        error.wanted = wanted
        return error
    if "Target database is not up to date" in message:
        return NotUpToDate(
            "The database is behind the migration scripts: run `upgrade` before autogenerating."
        )
    if "is not an ancestor" in message or "not a valid downgrade target" in message:
        return MigrationError(f"{message.rstrip('.')}: pick a target on the current branch.")
    if "Relative revision" in message and "didn't produce" in message:
        return MigrationError(f"{message.rstrip('.')}: there are not that many revisions to move.")
    if "Path doesn't exist" in message or "No 'script_location'" in message:
        return NotInitialized("No migrations folder here yet: run `init` first.")
    return MigrationError(message.splitlines()[0] if message else type(error).__name__)


def _translate_sqlalchemy(error: Exception) -> MigrationError:
    from sqlalchemy import exc

    if isinstance(error, exc.ArgumentError) and "URL" in str(error):
        return ConfigurationError("That is not a database URL (expected e.g. sqlite:///app.db).")
    if isinstance(error, exc.NoSuchModuleError):
        name = str(error).rsplit(":", 1)[-1]
        return ConfigurationError(f"Unknown database dialect or driver '{name}'.")
    if isinstance(error, exc.OperationalError | exc.InterfaceError) and error.statement is None:
        return DatabaseUnreachable(f"Cannot connect to the database: {_first_line(error)}")
    if isinstance(error, exc.DBAPIError):
        return MigrationError(f"The database refused a statement: {_first_line(error)}")
    return MigrationError(_first_line(error))


def translate(error: Exception) -> MigrationError:
    """The short, actionable form of an error raised by alembic, SQLAlchemy or a driver."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(error, MigrationError):
        return error
    if isinstance(error, CommandError | RevisionError):
        return _translate_alembic(error)
    if isinstance(error, SQLAlchemyError):
        return _translate_sqlalchemy(error)
    if isinstance(error, ModuleNotFoundError) and error.name in _DRIVER_PACKAGES:
        package = _DRIVER_PACKAGES[error.name]
        return ConfigurationError(f"The database driver is not installed: pip install {package}")
    if isinstance(error, AssertionError) and not str(error):  # alembic asserting on a malformed id
        return MigrationError("alembic could not make sense of that revision argument.")
    return MigrationError(f"{type(error).__name__}: {_first_line(error)}")


_DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "'psycopg[binary]'",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
}


@contextmanager
def translated(*secrets: str | None) -> Iterator[None]:
    """Re-raise any failure inside as a MigrationError, with the given URLs' passwords removed."""
    try:
        yield
    except MigrationError as error:
        error.args = (redact(str(error), *secrets),)
        if isinstance(error.__cause__, Exception):  # e.g. the driver's error under MigrationFailed
            _scrubbed(error.__cause__, secrets)
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        short = translate(error)
        short.args = (redact(str(short), *secrets),)
        raise short from _scrubbed(error, secrets)


def _scrubbed(error: Exception, secrets: tuple[str | None, ...]) -> Exception:
    """The original error, kept for the full traceback, with passwords removed from its text and
    its traceback ending before the first frame holding a password (a driver's connect arguments)."""
    with suppress(AttributeError, TypeError):
        error.args = tuple(redact(a, *secrets) if isinstance(a, str) else a for a in error.args)
    forms = password_forms(*secrets)
    if forms:
        for link in _chain(error):
            _cut_before_secrets(link, forms)
    return error


class VersionTableUnreadable(MigrationError):
    """The version table exists (or may) but cannot be read: the state of the database is unknown."""


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOTADB = 5, 6, 26
_PG_NO_PRIVILEGE = "42501"
_MYSQL_NO_PRIVILEGE = (1142, 1044, 1045)


def version_table_error(error: BaseException, table: str) -> VersionTableUnreadable:
    """Why the version table could not be read, by the driver's error codes; never 'no revision'."""
    original = getattr(error, "orig", None) or error
    code = getattr(original, "sqlite_errorcode", None)
    args = getattr(original, "args", ())
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        cause = "the SQLite file is locked by another process (a migration running elsewhere?); try again"
    elif code == _SQLITE_NOTADB:
        cause = "the file is not a SQLite database"
    elif getattr(original, "sqlstate", None) == _PG_NO_PRIVILEGE or (args and args[0] in _MYSQL_NO_PRIVILEGE):
        cause = f"permission denied: this database user may not read {table} (GRANT SELECT on it)"
    elif getattr(error, "connection_invalidated", False):
        cause = "the connection to the database was lost"
    else:
        cause = _first_line(error)
    return VersionTableUnreadable(
        f"Cannot read the version table {table}: {cause}. The database's revision is unknown, "
        "so nothing that depends on it was done."
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every error it was raised from or during, each once."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__]


def _cut_before_secrets(error: BaseException, forms: set[str]) -> None:
    tb, previous = error.__traceback__, None
    while tb is not None:
        if _holds_secret(tb.tb_frame, forms):
            if previous is None:
                error.__traceback__ = None
            else:
                previous.tb_next = None
            return
        previous, tb = tb, tb.tb_next


def _holds_secret(frame: object, forms: set[str]) -> bool:
    """Whether a traceback would show a password among this frame's variables."""
    for value in getattr(frame, "f_locals", {}).values():
        try:
            shown = repr(value)
        except Exception:
            continue
        if any(form in shown for form in forms):
            return True
    return False
