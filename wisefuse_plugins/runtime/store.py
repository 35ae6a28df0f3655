"""Where outputs live between units: a local directory or an S3 prefix, one interface.

Layout (the same under a directory root or an S3 prefix)::

    runs/<run_id>/<stage>/out.pkl      output of an unmapped stage
    runs/<run_id>/<stage>/i<k>.pkl     output of instance k of a mapped stage
    runs/<run_id>/<stage>/e<k>.pkl     element k of an unmapped stage's list output, written
                                       when another unit maps over it (so each consumer
                                       downloads only its element)

Values are pickled (protocol 5): the data and the code stay in the user's own account.
Small values may skip the store and travel by value instead (:mod:`.passing`).
Writes are atomic and first-write-wins (``put`` returns False when the key already
exists), so a retried invocation never changes what a finished one wrote.
Keys are validated: no absolute paths, no ``..``, nothing outside the root (:mod:`.keys`).
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import threading
from pathlib import Path
from types import FunctionType
from typing import Any, Protocol
from urllib.parse import urlparse

# the key scheme is part of this module's interface (callers write st.output_key(...))
from wisefuse_plugins.runtime.keys import StoreError as StoreError
from wisefuse_plugins.runtime.keys import check_key as check_key
from wisefuse_plugins.runtime.keys import check_run_id as check_run_id
from wisefuse_plugins.runtime.keys import element_key as element_key
from wisefuse_plugins.runtime.keys import output_key as output_key

PICKLE_PROTOCOL = 5


class _Pickler(pickle.Pickler):
    """Pickles classes and functions of the user's files so that any process can load them.

    The loader imports user files under mangled module names (``wisefuse_user_...``) that
    other processes (the orchestrator, a unit of another file) do not have; a value of a
    type defined in a user file is pickled with the file's path instead (see
    :func:`wisefuse_plugins.runtime.loader.user_global`).
    """

    def reducer_override(self, obj: Any) -> Any:
        module = str(getattr(obj, "__module__", ""))
        if isinstance(obj, type | FunctionType) and module.startswith("wisefuse_user_"):
            from wisefuse_plugins.runtime.loader import user_global, user_reference

            ref = user_reference(obj)
            if ref is not None:
                return user_global, ref
        return NotImplemented


def dumps(value: Any, what: str) -> bytes:
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=PICKLE_PROTOCOL).dump(value)
        return buffer.getvalue()
    except (
        Exception
    ) as err:  # pickling raises many types (TypeError, PicklingError, AttributeError)
        raise StoreError(
            f"the output of {what} cannot be serialised: {type(err).__name__}: {err}",
            hint="return plain data (numbers, strings, lists, dicts, numpy arrays) from the task",
        ) from err


class Store(Protocol):
    """What the handler and the executor need from a store."""

    url: str

    def put_bytes(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` unless it exists; True when this call wrote it."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete_prefix(self, prefix: str) -> int: ...


def put(store: Store, key: str, value: Any, what: str) -> tuple[bool, int]:
    """Pickle and write ``value``; returns (written, size in bytes)."""
    data = dumps(value, what)
    return store.put_bytes(key, data), len(data)


def loads(data: bytes) -> Any:
    """The value of a pickle :func:`dumps` made (from the store, or passed by value)."""
    return pickle.loads(data)


def get(store: Store, key: str) -> Any:
    return loads(store.get_bytes(key))


class LocalStore:
    """A directory; atomic create-if-absent through a temp file and ``os.link``.

    Writes are not fsynced: a worker killed mid-write leaves only its ``.tmp-*`` file
    (swept at the end of the run) and what it linked is complete in the page cache, which
    outlives the process; only a crash of the machine itself could lose it, as it would
    the run. An fsync per output made a local PUT cost 0.2-6 ms of waiting for this
    machine's disk, changing with the disk's other load: the store's timings, which the
    profiles and the model rely on, followed the disk rather than the code (Prefect's
    ``LocalFileSystem`` and Airflow's local logs do not fsync either).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # belt and braces: check_key already forbids it
            raise StoreError(f"store key {key!r} escapes the store root {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, path)  # atomic, and fails if another writer got there first
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no value at {key!r} in store {self.url}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.strip("/")
        base = self._path(prefix) if prefix else self.root  # never a folder outside the root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(check_key(prefix))
        for k in keys:
            (self.root / k).unlink(missing_ok=True)
        self.sweep_temp(prefix)
        return len(keys)

    def sweep_temp(self, prefix: str) -> int:
        """Remove partial writes (``.tmp-*`` files) under ``prefix``; returns how many.

        A writer killed half-way (timeout, out of memory, SIGKILL) cannot remove its
        temporary file. Call this only when no writer is active under ``prefix``: the
        executor does at the end of a run, when every invocation of the run has returned.
        """
        base = self._path(prefix)
        if not base.is_dir():
            return 0
        removed = 0
        for p in base.rglob(".tmp-*"):
            try:
                p.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


def wisefuse_home() -> Path:
    """``$WISEFUSE_HOME``, default ``~/.wisefuse``: the local store, profiles, artefacts."""
    return Path(os.environ.get("WISEFUSE_HOME", "~/.wisefuse")).expanduser()


def open_store(url: str | None = None) -> Store:
    """A store from a URL: ``file:///dir``, a plain path, or ``s3://bucket/prefix``.

    Without a URL: ``$WISEFUSE_STORE``, else the directory ``$WISEFUSE_HOME/store``.
    """
    url = url or os.environ.get("WISEFUSE_STORE") or str(wisefuse_home() / "store")
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from wisefuse_plugins.runtime.s3store import S3Store

        return S3Store(parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme == "":
        return LocalStore(url)
    raise StoreError(
        f"unknown store URL {url!r}", hint="use a directory, file:///dir or s3://bucket/prefix"
    )


class CountingStore:
    """Wraps a store and counts its requests, as S3 bills them.

    GET and HEAD (``exists``) are billed as GETs; PUT and LIST as PUTs. The handler wraps
    its store in one per invocation, so every figure of cost covers the store too.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.gets = 0
        self.puts = 0
        self._lock = threading.Lock()

    def _count(self, gets: int = 0, puts: int = 0) -> None:
        with self._lock:
            self.gets += gets
            self.puts += puts

    def put_bytes(self, key: str, data: bytes) -> bool:
        self._count(puts=1)
        return self.inner.put_bytes(key, data)

    def get_bytes(self, key: str) -> bytes:
        self._count(gets=1)
        return self.inner.get_bytes(key)

    def exists(self, key: str) -> bool:
        self._count(gets=1)
        return self.inner.exists(key)

    def list(self, prefix: str) -> list[str]:
        self._count(puts=1)
        return self.inner.list(prefix)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)
