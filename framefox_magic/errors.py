"""One exception family, and the one place that turns alembic / SQLAlchemy errors into it."""

from __future__ import annotations

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


class DropsEveryTable(ConfirmationRequired):
    """An autogenerate would drop every table of the database because no model was found."""

    def __init__(self, message: str, tables: list[str]) -> None:
        super().__init__(message)
        self.tables = tables


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def database_message(error: BaseException) -> str:
    """The database's (or the script's) own words for a failure, in one line."""
    return _first_line(error)


def translate(error: Exception) -> MigrationError:
    """The short, actionable form of an error raised by alembic, SQLAlchemy or a driver."""
    if isinstance(error, MigrationError):
        return error
    for link in _causes(error):
        if (short := _by_type(link, error)) is not None:
            return short
    for link in _causes(error):
        if (short := _by_alembic_wording(link)) is not None:
            return short
    return _untyped(error)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, then what it was raised from (or during), outermost first, as a traceback shows them."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _by_type(link: BaseException, error: Exception) -> MigrationError | None:
    """The translation of one error of the chain that its class (and attributes) identify."""
    from alembic.script import revision as rev
    from alembic.util import exc as alembic_exc
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(link, MigrationError):
        return link
    if isinstance(link, rev.MultipleHeads):
        return MultipleHeads(
            "The history has more than one head; name one (REV, branch@head), use 'heads', "
            "or join them with `merge heads -m MESSAGE`."
        )
    if isinstance(link, rev.ResolutionError):
        return _unresolved(link)
    if isinstance(link, rev.RangeNotAncestorError):
        words = _alembic_words(error, link).rstrip(".")
        return MigrationError(f"{words}: pick a target on the current branch.")
    if isinstance(link, rev.CycleDetected):
        return _cycle(link)
    if isinstance(link, alembic_exc.AutogenerateDiffsDetected):
        return _changes_detected(link)
    if isinstance(link, alembic_exc.DatabaseNotAtHead):
        return NotUpToDate("The database is behind the migration scripts: run `upgrade`.")
    if isinstance(link, SQLAlchemyError):
        return _translate_sqlalchemy(link)
    if isinstance(link, ModuleNotFoundError) and link.name in _DRIVER_PACKAGES:
        package = _DRIVER_PACKAGES[link.name]
        return ConfigurationError(f"The database driver is not installed: pip install {package}")
    if isinstance(link, AssertionError) and _raised_in_alembic(link):  # e.g. `assert resolved_id`
        return MigrationError("alembic could not make sense of that revision argument.")
    return None


def _alembic_words(error: Exception, link: BaseException) -> str:
    """The outermost alembic message of the chain: alembic words a re-raised error for its command."""
    from alembic.util import CommandError

    for outer in _causes(error):
        if isinstance(outer, CommandError) or outer is link:
            return _first_line(outer)
    return _first_line(link)


def _unresolved(error: BaseException) -> MigrationError:
    """A revision argument that names no revision, or several (alembic's ResolutionError)."""
    wanted = str(getattr(error, "argument", "") or "")
    # alembic raises one ResolutionError class for "none" and "several" matches; only its text
    # tells them apart (read from alembic 1.20.1 and 1.18.0, RevisionMap._revision_for_ident).
    if str(error).startswith("Multiple revisions start with"):
        return AmbiguousRevision(f"'{wanted}' matches several revisions; type more of its id.")
    shown = wanted if len(wanted) <= 80 else f"{wanted[:60]}...({len(wanted)} characters)"
    found = RevisionNotFound(
        f"No revision '{shown}' in the migrations folder (see `history`); if the "
        "database names it, the file was removed: `stamp` the database to a known revision."
    )
    found.wanted = wanted
    return found


def _changes_detected(error: BaseException) -> MigrationError:
    """alembic's `check` found differences between the models and the database."""
    from .render import counted

    found = counted(len(getattr(error, "diffs", ())), "operation")
    return ChangesDetected(f"The models and the database differ ({found}); create a revision for them.")


def _cycle(error: BaseException) -> MigrationError:
    """Revision files whose down_revision (or depends_on) lead back to themselves."""
    from alembic.script.revision import DependencyCycleDetected

    field = "depends_on" if isinstance(error, DependencyCycleDetected) else "down_revision"
    revisions = ", ".join(getattr(error, "revisions", ()))
    return MigrationError(
        f"The revision files form a cycle ({revisions}): fix the {field} of one of them."
    )


def _raised_in_alembic(error: BaseException) -> bool:
    """Whether the innermost frame of the error's traceback is alembic's own code."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("alembic.")


def _by_alembic_wording(link: BaseException) -> MigrationError | None:
    """alembic's bare CommandError / RevisionError, told apart by their text: no class or
    attribute distinguishes them."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    if not isinstance(link, CommandError | RevisionError):
        return None
    message = _first_line(link)
    # alembic 1.20.1 (and 1.18.0), autogenerate/api.py, RevisionContext._run_environment
    if message.startswith("Target database is not up to date"):
        return NotUpToDate(
            "The database is behind the migration scripts: run `upgrade` before autogenerating."
        )
    # alembic 1.20.1 (and 1.18.0), script/revision.py, RevisionMap._parse_{up,down}grade_target
    if message.startswith("Relative revision") and "didn't produce" in message:
        return MigrationError(f"{message.rstrip('.')}: there are not that many revisions to move.")
    # alembic 1.20.1 (and 1.18.0), script/revision.py, RevisionMap._collect_downgrade_revisions
    if message.startswith("Not a valid downgrade target"):
        return MigrationError(f"{message.rstrip('.')}: pick a target on the current branch.")
    # alembic 1.20.1 (and 1.18.0), script/base.py, ScriptDirectory.__init__ and ScriptDirectory.from_config
    if message.startswith(("Path doesn't exist", "No 'script_location'")):
        return NotInitialized("No migrations folder here yet: run `init` first.")
    return None


def _untyped(error: Exception) -> MigrationError:
    """An error nothing above recognises: its own first line (with its class unless alembic's)."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    if isinstance(error, CommandError | RevisionError):
        return MigrationError(_first_line(error))
    return MigrationError(f"{type(error).__name__}: {_first_line(error)}")


def _translate_sqlalchemy(error: Exception) -> MigrationError:
    """SQLAlchemy's errors by class; a driver's error is the `orig` of a DBAPIError."""
    from sqlalchemy import exc

    # make_url raises the general ArgumentError; only its text says the URL is at fault
    # (SQLAlchemy 2.1.9, engine/url.py: "Could not parse SQLAlchemy URL from given URL string").
    if isinstance(error, exc.ArgumentError) and "URL" in str(error):
        return ConfigurationError("That is not a database URL (expected e.g. sqlite:///app.db).")
    if isinstance(error, exc.NoSuchModuleError):
        # the name is only in the text (SQLAlchemy 2.1.9: "Can't load plugin: sqlalchemy.dialects:NAME")
        name = str(error).rsplit(":", 1)[-1]
        return ConfigurationError(f"Unknown database dialect or driver '{name}'.")
    if isinstance(error, exc.OperationalError | exc.InterfaceError) and error.statement is None:
        return DatabaseUnreachable(f"Cannot connect to the database: {_first_line(error)}")
    if isinstance(error, exc.DBAPIError):
        return MigrationError(f"The database refused a statement: {_first_line(error)}")
    return MigrationError(_first_line(error))


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
