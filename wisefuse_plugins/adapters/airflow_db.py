"""Reading Airflow's metadata database with SQLAlchemy Core (no Airflow import).

Two readers: the Airflow adapter (how many instances each mapped task had in the latest
successful run) and the importer (task-instance durations). Both go through
:func:`connect`, which refuses a SQLite file that does not exist (SQLite would create an
empty one, and the reader would find no history instead of saying the path is wrong).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from wisefuse_plugins.adapters.database import open_engine, parse_url, shown
from wisefuse_plugins.errors import WiseFuseError

HINT = (
    "pass Airflow's [database] sql_alchemy_conn of the Airflow that ran the DAG,"
    " e.g. sqlite:///$AIRFLOW_HOME/airflow.db (`airflow db migrate` creates its tables)"
)


class HistoryError(WiseFuseError):
    """History that cannot be read (bad URL, missing file, no such table, framework missing)."""


def readable(history: object) -> bool:
    """Whether :func:`connect` takes ``history``: a URL, an Engine, a Connection or a Session."""
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.orm import Session

    return isinstance(history, str | URL | Engine | Connection | Session)


@contextlib.contextmanager
def connect(history: Any, *, what: str) -> Iterator[Any]:
    """A connection to an Airflow metadata database, for reading ``what`` (named in errors).

    ``history``: a database URL (an engine is made and disposed of), an ``Engine`` (a
    connection is taken), or a ``Connection`` or ``Session`` (used as is). A bad URL, a
    missing SQLite file, a missing driver, and SQL errors while reading (no such table)
    raise :class:`HistoryError` naming the database, the reason and the fix.
    """
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    own: Engine | None = None
    if isinstance(history, str | URL):
        url = parse_url(history, error=HistoryError, hint=HINT)
        own = open_engine(url, what=what, error=HistoryError, must_exist=HINT)
        where, opened = shown(url), own.connect
    elif isinstance(history, Engine):
        where, opened = shown(history.url), history.connect
    elif isinstance(history, Connection | Session):
        where, opened = type(history).__name__, lambda: contextlib.nullcontext(history)
    else:
        raise HistoryError(
            f"cannot read {what} from a {type(history).__name__}",
            hint="pass a database URL, an Engine, a Connection or a Session",
        )
    try:
        with opened() as conn:
            yield conn
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err)
        first = reason.splitlines()[0] if reason else type(err).__name__
        raise HistoryError(f"cannot read {what} at {where}: {first}", hint=HINT) from err
    finally:
        if own is not None:
            own.dispose()
