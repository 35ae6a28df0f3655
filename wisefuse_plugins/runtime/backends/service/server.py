"""Starting and stopping the service: one per root (a pid file), a clear error if the port is taken."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.service.functions import LambdaService
from wisefuse_plugins.runtime.backends.service.routes import Handler, Server
from wisefuse_plugins.runtime.store import wisefuse_home

LOCK_NAME = "service.pid"


@dataclass
class Handle:
    """A running service: its URL and port; ``stop()`` shuts it down and releases the root."""

    url: str
    port: int
    service: LambdaService
    _server: Server
    _thread: threading.Thread
    _lock: Path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self.service.engine.close()
        with contextlib.suppress(FileNotFoundError):
            self._lock.unlink()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _take_root(root: Path) -> Path:
    """Claim ``root`` with a pid file; a clear error if a live service already owns it."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _alive_owner(lock)
            if owner is not None:
                raise WiseFuseError(
                    f"another Lambda service (pid {owner['pid']}, {owner.get('url', '?')}) owns {root}",
                    hint="use that service's URL, stop it, or pass another --root",
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its process is gone
            continue
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        os.close(fd)
        return lock
    raise WiseFuseError(
        f"could not take the service lock {lock}", hint="remove it if no service runs"
    )


def _alive_owner(lock: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(lock.read_text() or "{}")
        os.kill(int(owner["pid"]), 0)
    except (ValueError, KeyError, OSError):
        return None
    return owner


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    root: str | Path | None = None,
    *,
    region: str = "us-east-1",
    engine: LocalLambda | None = None,
) -> Handle:
    """Start the service in a background thread; ``port=0`` picks a free port."""
    root = Path(root) if root is not None else wisefuse_home() / "lambda-service"
    lock = _take_root(root)
    try:
        server = Server((host, port), Handler)
    except OSError as err:
        lock.unlink()
        raise WiseFuseError(
            f"cannot listen on {host}:{port}: {err.strerror}",
            hint="another process uses the port: pick another --port, or 0 for a free one",
        ) from None
    server.service = LambdaService(root, region, engine)
    bound = server.server_address[1]
    url = f"http://{host}:{bound}"
    lock.write_text(json.dumps({"pid": os.getpid(), "url": url}))
    thread = threading.Thread(
        target=server.serve_forever, name="wisefuse-lambda-service", daemon=True
    )
    thread.start()
    return Handle(url, bound, server.service, server, thread, lock)


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[Handle]:
    handle = serve(**kwargs)
    try:
        yield handle
    finally:
        handle.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--root", default=None, help="default: $WISEFUSE_HOME/lambda-service")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        handle = serve(args.host, args.port, args.root, region=args.region)
    except WiseFuseError as err:
        hint = f"\nhint: {err.hint}" if err.hint else ""
        raise SystemExit(f"Error: {err}{hint}") from None
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop releases the root too
    print(f"Lambda API at {handle.url} (root {handle.service.root}); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
