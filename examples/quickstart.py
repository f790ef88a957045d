"""A first tour on SQLite: create, apply, list, change and revert migrations from Python.

The same operations are `%migrate ...` in a notebook after `%load_ext framefox_magic`.
Run it anywhere; it works in a fresh temporary folder and says where.
"""

import tempfile
from pathlib import Path

from sqlmodel import Field, SQLModel

from framefox_magic import AlembicManager
from framefox_magic.metadata import forget_models

project = Path(tempfile.mkdtemp(prefix="framefox-quickstart-"))
manager = AlembicManager(project_root=project)
print(manager.init(), end="\n\n")


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str


first = manager.revision("create hero")
print(first, end="\n\n")
print(manager.upgrade(), end="\n\n")

forget_models(lambda cls: cls is Hero)  # what re-running a notebook cell does for you


class Hero(SQLModel, table=True):  # noqa: F811 - the edited model
    id: int | None = Field(default=None, primary_key=True)
    name: str
    age: int | None = Field(default=None, index=True)


print(manager.diff(), end="\n\n")
second = manager.revision("add hero age")
print(manager.upgrade(), end="\n\n")
print(manager.history(), end="\n\n")
print(manager.downgrade("-1"), end="\n\n")
print(manager.status(), end="\n\n")
print(f"The project is in {project}; its database is {manager.config().url}")
