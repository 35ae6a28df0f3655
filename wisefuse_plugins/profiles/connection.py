"""Opening the profile archive's database, and retrying what a lock or a race interrupts.

The archive is any SQLAlchemy URL (``$WISEFUSE_DB_URL``, else a SQLite file under
``$WISEFUSE_HOME``). SQLite is opened in WAL mode with a busy timeout and every write
transaction starts with ``BEGIN IMMEDIATE``; :func:`retry` reruns a transaction that a
"database is locked" (or another process creating the same tables) interrupted, so several
profilers or importers writing at once lose nothing. The queries live in
:mod:`wisefuse_plugins.profiles.archive`.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from wisefuse_plugins.adapters.database import open_engine, parse_url, shown
from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.store import wisefuse_home

ENV_DB_URL = "WISEFUSE_DB_URL"
#: How long a writer keeps retrying a locked SQLite database before giving up.
LOCK_RETRY_S = 120.0
SQLITE_BUSY_TIMEOUT_MS = 30_000
URL_HINT = "use sqlite:///path/profiles.sqlite or postgresql://user@host/db"

T = TypeVar("T")


class ArchiveError(WiseFuseError):
    """The archive cannot be opened, read or written (bad URL, newer schema, locked too long)."""


def default_url() -> str:
    """``$WISEFUSE_DB_URL``, else ``sqlite:///$WISEFUSE_HOME/profiles.sqlite``."""
    url = os.environ.get(ENV_DB_URL)
    if url:
        return url
    return f"sqlite:///{(wisefuse_home() / 'profiles.sqlite').resolve()}"


def _is_locked(err: DBAPIError) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return "locked" in text or "busy" in text


def _is_race(err: DBAPIError) -> bool:
    """Another process created the same table or inserted the same ``ref`` first."""
    text = str(getattr(err, "orig", err)).lower()
    return isinstance(err, IntegrityError) or "already exists" in text


def shown_url(url: str) -> str:
    """``url`` for messages: its password hidden."""
    return shown(make_url(url))


def retry(fn: Callable[[], T], what: str, url: str) -> T:
    """Run ``fn`` (one transaction), again while the database is locked or raced.

    SQLite allows one writer at a time: the busy timeout waits inside the driver, and
    this loop covers what it does not (a lock held longer than the timeout, or a
    schema change racing with another process creating the same tables). ``what`` and
    ``url`` name the failed operation and the database in the :class:`ArchiveError`.
    """
    deadline = time.monotonic() + LOCK_RETRY_S
    delay = 0.005
    races = 0
    while True:
        try:
            return fn()
        except DBAPIError as err:
            locked = isinstance(err, OperationalError) and _is_locked(err)
            raced = _is_race(err) and races < 5
            if not (locked or raced) or time.monotonic() > deadline:
                raise ArchiveError(
                    f"profile archive {shown_url(url)}: cannot {what}: {err.orig}",
                    hint="check the database URL (WISEFUSE_DB_URL / --db) and that it is reachable",
                ) from err
            races += raced
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.25)


def open_archive_engine(url: str, echo: bool) -> Engine:
    """An engine; for SQLite: WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions.

    pysqlite's deferred transactions take the write lock late, and a reader upgrading to
    a writer can fail at once with "database is locked" whatever the timeout; taking the
    lock at BEGIN makes writers queue behind the busy timeout instead.
    """
    parsed = parse_url(url, error=ArchiveError, hint=URL_HINT)
    if not parsed.drivername.startswith("sqlite"):
        return open_engine(
            parsed, what="the profile archive", error=ArchiveError, echo=echo, pool_pre_ping=True
        )
    database = parsed.database
    in_memory = database in (None, "", ":memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = open_engine(
        parsed,
        what="the profile archive",
        error=ArchiveError,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # autocommit in the driver: we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            for _ in range(100):  # switching to WAL needs a moment without other writers
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    break
                except Exception as err:
                    if "locked" not in str(err).lower():
                        raise
                    time.sleep(0.05)
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
