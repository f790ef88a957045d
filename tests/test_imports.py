"""Loading stays cheap: heavy libraries are imported on first use, not at import or %load_ext."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "alembic", "sqlalchemy", "ipywidgets", "sqlmodel", "IPython")


def imported_after(code: str) -> set[str]:
    """The heavy top-level modules present in a fresh interpreter after running `code`."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(filter(None, result.stdout.strip().split(",")))


def test_importing_the_manager_imports_no_ipython_widgets_pandas_or_alembic() -> None:
    assert imported_after("from framefox_magic import AlembicManager") == set()


def test_load_ext_imports_no_pandas_alembic_sqlalchemy_or_widgets() -> None:
    loaded = imported_after(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'framefox_magic')\n"
        "assert 'migrate' in shell.magics_manager.magics['line']"
    )
    assert loaded == {"IPython"}


def our_modules_after(code: str) -> set[str]:
    """The framefox_magic modules present in a fresh interpreter after running `code`."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in sys.modules if m.startswith('framefox_magic')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(filter(None, result.stdout.strip().split(",")))


LOAD_EXT = (
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "shell = InteractiveShell.instance()\n"
    "shell.run_line_magic('load_ext', 'framefox_magic')\n"
)
# what %load_ext may import of ours: the magics, the grammar table and what every error needs
LIGHT = {"framefox_magic", "framefox_magic.magics", "framefox_magic.commands", "framefox_magic.errors",
         "framefox_magic.settings"}


def test_load_ext_imports_none_of_the_manager_or_its_rooms() -> None:
    assert our_modules_after(LOAD_EXT) == LIGHT


def test_load_ext_with_a_configured_folder_stays_light_until_the_first_command() -> None:
    loaded = our_modules_after(
        "from traitlets.config import Config\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "config = Config()\n"
        "config.MigrateMagics.migrations_dir = 'somewhere'\n"
        "shell = InteractiveShell.instance(config=config)\n"
        "shell.run_line_magic('load_ext', 'framefox_magic')\n"
        "shell.run_line_magic('unload_ext', 'framefox_magic')\n"
    )
    assert loaded == LIGHT


def test_help_and_question_mark_list_the_sub_commands_from_the_manager_docstrings() -> None:
    loaded = our_modules_after(
        LOAD_EXT
        + "import contextlib, io\n"
        "from framefox_magic.manager import AlembicManager\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "    shell.run_line_magic('migrate', 'help')\n"
        "    shell.run_cell('%migrate?')\n"
        "text = shown.getvalue()\n"
        "assert text.count(AlembicManager.status.__doc__.splitlines()[0]) == 2, text\n"
        "assert text.count(AlembicManager.create_version_table.__doc__.splitlines()[0]) == 2, text\n"
    )
    assert "framefox_magic.manager" in loaded


def test_a_status_call_loads_alembic_but_not_pandas_or_widgets(tmp_path) -> None:
    loaded = imported_after(
        "from framefox_magic import AlembicManager\n"
        f"manager = AlembicManager(project_root={str(tmp_path)!r})\n"
        "manager.init()\n"
        "repr(manager.status())"
    )
    assert {"alembic", "sqlalchemy"} <= loaded
    assert not {"pandas", "ipywidgets", "IPython"} & loaded


def test_the_command_line_status_imports_no_pandas_ipython_or_widgets(tmp_path) -> None:
    loaded = imported_after(
        "import contextlib, io, os\n"
        f"os.chdir({str(tmp_path)!r})\n"
        "from framefox_magic import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "    codes = [cli.main(w) for w in (['init'], ['status'], ['history'], ['status', '--help'])]\n"
        "assert codes == [0, 0, 0, 0], codes\n"
        "assert 'up to date' in shown.getvalue() and 'usage: framefox-migrate status' in shown.getvalue()"
    )
    assert {"alembic", "sqlalchemy"} <= loaded
    assert not {"pandas", "ipywidgets", "IPython", "sqlmodel"} & loaded


def test_cells_defining_plain_classes_import_no_sqlalchemy() -> None:
    loaded = imported_after(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'framefox_magic')\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert shell.run_cell('class Foo:\\n    pass').success\n"
        "    assert not shell.run_cell('class Bar:\\n    pass\\n1 / 0').success"
    )
    assert loaded == {"IPython"}
