"""Alembic migrations from a notebook: `%load_ext framefox_magic`, then `%migrate` and `%%revision`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AlembicManager", "MigrationError", "load_ipython_extension", "unload_ipython_extension"]

if TYPE_CHECKING:
    from .errors import MigrationError
    from .manager import AlembicManager


def __getattr__(name: str) -> Any:
    if name == "AlembicManager":
        from .manager import AlembicManager

        return AlembicManager
    if name == "MigrationError":
        from .errors import MigrationError

        return MigrationError
    raise AttributeError(f"module 'framefox_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """Register %migrate, %%revision, completion and the model-cell hook."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove everything load_ipython_extension added."""
    from .magics import unload

    unload(ipython)
