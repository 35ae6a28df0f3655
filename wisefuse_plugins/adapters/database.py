"""Opening a SQL database by its URL (SQLAlchemy), with errors that name the database,
the reason and the fix.

Two databases are opened this way: Airflow's metadata database (:mod:`.airflow_db`, read
by the Airflow adapter and the importers) and the profile archive
(:mod:`wisefuse_plugins.profiles.archive`, which adds SQLite's locking settings). It sits
with the adapters, the lower of the areas that read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from wisefuse_plugins.errors import WiseFuseError

DRIVER_HINT = "install the database driver (e.g. psycopg for PostgreSQL)"


def parse_url(url: str | URL, *, error: type[WiseFuseError], hint: str) -> URL:
    """``url`` parsed; ``error`` (with ``hint``: what to pass instead) when it is not one."""
    try:
        return make_url(url)
    except ArgumentError as err:
        raise error(f"not a database URL: {url!r}", hint=hint) from err


def shown(url: URL) -> str:
    """``url`` for messages: its password hidden."""
    return url.render_as_string(hide_password=True)


def is_sqlite_file(url: URL) -> bool:
    """Whether ``url`` is a SQLite database in a file (not in memory)."""
    return url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:")


def open_engine(
    url: URL,
    *,
    what: str,
    error: type[WiseFuseError],
    must_exist: str | None = None,
    **options: Any,
) -> Engine:
    """An engine for ``url`` (``options``: :func:`sqlalchemy.create_engine`'s).

    ``what`` names the database in errors. A missing driver raises ``error``. With
    ``must_exist`` (the hint: where the file should be), a SQLite file that does not exist
    raises ``error`` too, as SQLite would silently create an empty one.
    """
    if must_exist is not None and is_sqlite_file(url) and not Path(str(url.database)).is_file():
        raise error(f"cannot read {what} at {shown(url)}: the file does not exist", hint=must_exist)
    try:
        return create_engine(url, **options)
    except Exception as err:  # a missing driver module, an unknown dialect, bad options
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(f"cannot read {what} at {shown(url)}: {first}", hint=DRIVER_HINT) from err
