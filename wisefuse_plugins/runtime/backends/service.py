"""The local Lambda as a service: the Lambda REST API (the subset our AWS backend uses) on 127.0.0.1.

boto3's own Lambda client with ``endpoint_url=`` drives it, so the AWS backend can be the
one code path for AWS and for this machine (issue 21). Behind the API runs
:class:`~wisefuse_plugins.runtime.backends.local.LocalLambda`: each function's zip is
unpacked under ``<root>/functions/<name>/<code sha256>/`` and registered with that folder
as its code and only its configured environment. A published version keeps a snapshot
of the configuration; ``name:3`` and ``name:alias`` invoke that snapshot.

Preview: no layers, no tags API, state is in memory (a restart forgets the functions).
Run it with ``python -m wisefuse_plugins.runtime.backends.service --port 9001``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.backends.local import FunctionConfig, Invocation, LocalLambda
from wisefuse_plugins.runtime.store import wisefuse_home

PREFIX = "/2015-03-31/functions"
ACCOUNT = "000000000000"
LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of the log with LogType Tail
LOCK_NAME = "service.pid"


class ApiError(Exception):
    """An error in Lambda's shape: HTTP status, ``x-amzn-ErrorType`` and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(what: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", f"Function not found: {what}")


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameterValueException", message)


@dataclass
class _Function:
    """One function: its $LATEST configuration (Lambda's field names), versions and aliases."""

    config: dict[str, Any]
    code_dir: str
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # "1" -> config snapshot
    code_dirs: dict[str, str] = field(default_factory=dict)  # version -> code folder
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    registered: dict[str, str] = field(default_factory=dict)  # qualifier -> engine name


def _arn(region: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def _split_name(raw: str, qualifier: str | None) -> tuple[str, str | None]:
    """A FunctionName (name, ``name:qualifier`` or an ARN) as (name, qualifier)."""
    name = unquote(raw)
    if name.startswith("arn:"):
        parts = name.split(":")
        name = parts[6] if len(parts) > 6 else name
        qualifier = parts[7] if len(parts) > 7 else qualifier
    elif ":" in name:
        name, qualifier = name.split(":", 1)
    return name, qualifier or None


class LambdaService:
    """The functions and the engine behind the API; every method is one Lambda operation."""

    def __init__(self, root: Path, region: str = "us-east-1", engine: LocalLambda | None = None):
        self.root = root
        self.region = region
        self.engine = engine or LocalLambda()
        self.functions: dict[str, _Function] = {}
        self.lock = threading.RLock()

    # --- code and configuration ---------------------------------------------------------

    def _unpack(self, name: str, zip_b64: str) -> tuple[str, str, int]:
        try:
            data = base64.b64decode(zip_b64, validate=True)
        except ValueError:
            raise invalid("ZipFile is not base64") from None
        sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
        folder = self.root / "functions" / name / hashlib.sha256(data).hexdigest()
        if not folder.exists():
            tmp = folder.with_name(folder.name + f".tmp-{uuid.uuid4().hex[:8]}")
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for member in zf.namelist():
                        if member.startswith("/") or ".." in Path(member).parts:
                            raise invalid(f"ZipFile: unsafe path {member!r}")
                    zf.extractall(tmp)
            except zipfile.BadZipFile:
                raise invalid("Could not unzip uploaded file") from None
            with contextlib.suppress(OSError):  # another request unpacked the same zip
                tmp.rename(folder)
        return str(folder), sha, len(data)

    def _engine_config(self, name: str, cfg: dict[str, Any], code_dir: str) -> FunctionConfig:
        try:
            return FunctionConfig(
                name=name,
                handler=cfg["Handler"],
                memory_mb=int(cfg["MemorySize"]),
                arch=cfg["Architectures"][0],
                timeout_s=float(cfg["Timeout"]),
                env=(cfg.get("Environment") or {}).get("Variables") or {},
                code_dir=code_dir,
            )
        except (ValueError, KeyError, TypeError) as err:
            raise invalid(str(err)) from None

    def _view(self, fn: _Function, version: str = "$LATEST") -> dict[str, Any]:
        cfg = fn.config if version == "$LATEST" else fn.versions[version]
        return {**copy.deepcopy(cfg), "Version": version}

    def _get(self, name: str) -> _Function:
        fn = self.functions.get(name)
        if fn is None:
            raise not_found(_arn(self.region, name))
        return fn

    def _resolve(self, name: str, qualifier: str | None) -> tuple[_Function, str]:
        fn = self._get(name)
        q = qualifier or "$LATEST"
        if q in fn.aliases:
            q = fn.aliases[q]["FunctionVersion"]
        if q != "$LATEST" and q not in fn.versions:
            raise not_found(_arn(self.region, name, qualifier))
        return fn, q

    # --- operations ---------------------------------------------------------------------

    def create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("FunctionName", "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise invalid(f"FunctionName must be 1-64 letters, digits, '-' or '_': {name!r}")
        zip_b64 = (body.get("Code") or {}).get("ZipFile")
        if not zip_b64:
            raise invalid("Code.ZipFile is required (S3 code and images are not supported)")
        with self.lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            code_dir, sha, size = self._unpack(name, zip_b64)
            cfg = {
                "FunctionName": name,
                "FunctionArn": _arn(self.region, name),
                "Runtime": body.get("Runtime", "python3.12"),
                "Role": body.get("Role", ""),
                "Handler": body.get("Handler", "lambda_function.lambda_handler"),
                "Description": body.get("Description", ""),
                "MemorySize": body.get("MemorySize", 128),
                "Timeout": body.get("Timeout", 3),
                "Architectures": body.get("Architectures") or ["x86_64"],
                "Environment": {
                    "Variables": dict((body.get("Environment") or {}).get("Variables") or {})
                },
                "Layers": [{"Arn": arn, "CodeSize": 0} for arn in body.get("Layers") or []],
                "CodeSha256": sha,
                "CodeSize": size,
                "State": "Active",
                "LastUpdateStatus": "Successful",
                "PackageType": "Zip",
                "LastModified": _now(),
                "RevisionId": uuid.uuid4().hex,
            }
            self._engine_config(name, cfg, code_dir)  # validates memory, arch, timeout, env
            fn = _Function(cfg, code_dir, tags=dict(body.get("Tags") or {}))
            self.functions[name] = fn
            if body.get("Publish"):
                return self.publish_version(name, {})
            return self._view(fn)

    def update_function_code(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            fn = self._get(name)
            if not body.get("ZipFile"):
                raise invalid("ZipFile is required (S3 code and images are not supported)")
            code_dir, sha, size = self._unpack(name, body["ZipFile"])
            cfg = {**fn.config, "CodeSha256": sha, "CodeSize": size}
            if body.get("Architectures"):
                cfg["Architectures"] = list(body["Architectures"])
            self._engine_config(name, cfg, code_dir)
            fn.config, fn.code_dir = self._touch(cfg), code_dir
            fn.registered.pop("$LATEST", None)
            return self._view(fn)

    def update_function_configuration(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            fn = self._get(name)
            cfg = copy.deepcopy(fn.config)
            for key in ("Role", "Handler", "Runtime", "Description", "MemorySize", "Timeout"):
                if key in body:
                    cfg[key] = body[key]
            if "Environment" in body:
                cfg["Environment"] = {"Variables": dict(body["Environment"].get("Variables") or {})}
            if "Layers" in body:
                cfg["Layers"] = [{"Arn": arn, "CodeSize": 0} for arn in body["Layers"]]
            self._engine_config(name, cfg, fn.code_dir)
            fn.config = self._touch(cfg)
            fn.registered.pop("$LATEST", None)
            return self._view(fn)

    @staticmethod
    def _touch(cfg: dict[str, Any]) -> dict[str, Any]:
        return {**cfg, "LastModified": _now(), "RevisionId": uuid.uuid4().hex}

    def publish_version(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            fn = self._get(name)
            expected = body.get("CodeSha256")
            if expected and expected != fn.config["CodeSha256"]:
                raise invalid(
                    f"CodeSha256 ({expected}) does not match the function's code "
                    f"({fn.config['CodeSha256']})"
                )
            latest = fn.versions.get(str(len(fn.versions))) if fn.versions else None
            same = {k: v for k, v in fn.config.items() if k not in ("LastModified", "RevisionId")}
            if latest is not None and {
                k: v
                for k, v in latest.items()
                if k not in ("LastModified", "RevisionId", "FunctionArn", "Description")
            } == {k: v for k, v in same.items() if k not in ("FunctionArn", "Description")}:
                return self._view(fn, str(len(fn.versions)))  # Lambda: nothing changed
            version = str(len(fn.versions) + 1)
            snap = copy.deepcopy(fn.config)
            snap["FunctionArn"] = _arn(self.region, name, version)
            if "Description" in body:
                snap["Description"] = body["Description"]
            fn.versions[version] = snap
            fn.code_dirs[version] = fn.code_dir
            return self._view(fn, version)

    def get_function_configuration(self, name: str, qualifier: str | None) -> dict[str, Any]:
        with self.lock:
            fn, version = self._resolve(name, qualifier)
            return self._view(fn, version)

    def get_function(self, name: str, qualifier: str | None) -> dict[str, Any]:
        with self.lock:
            fn, version = self._resolve(name, qualifier)
            return {
                "Configuration": self._view(fn, version),
                "Code": {
                    "RepositoryType": "Local",
                    "Location": fn.code_dirs.get(version, fn.code_dir),
                },
                "Tags": dict(fn.tags),
            }

    def list_functions(self) -> dict[str, Any]:
        with self.lock:
            return {"Functions": [self._view(fn) for _, fn in sorted(self.functions.items())]}

    def delete_function(self, name: str, qualifier: str | None) -> None:
        with self.lock:
            fn = self._get(name)
            if qualifier and qualifier != "$LATEST":
                if fn.versions.pop(qualifier, None) is None:
                    raise not_found(_arn(self.region, name, qualifier))
                return
            del self.functions[name]

    def _alias(self, name: str, alias: str, fn: _Function) -> dict[str, Any]:
        return {"AliasArn": _arn(self.region, name, alias), "Name": alias, **fn.aliases[alias]}

    def get_alias(self, name: str, alias: str) -> dict[str, Any]:
        with self.lock:
            fn = self._get(name)
            if alias not in fn.aliases:
                raise ApiError(
                    404,
                    "ResourceNotFoundException",
                    f"Alias not found: {_arn(self.region, name, alias)}",
                )
            return self._alias(name, alias, fn)

    def put_alias(
        self, name: str, alias: str, body: dict[str, Any], create: bool
    ) -> dict[str, Any]:
        with self.lock:
            fn = self._get(name)
            if create and alias in fn.aliases:
                raise ApiError(409, "ResourceConflictException", f"Alias already exists: {alias}")
            if not create and alias not in fn.aliases:
                raise ApiError(404, "ResourceNotFoundException", f"Alias not found: {alias}")
            version = body.get("FunctionVersion") or fn.aliases.get(alias, {}).get(
                "FunctionVersion"
            )
            if version != "$LATEST" and version not in fn.versions:
                raise invalid(f"Version {version!r} of {name} does not exist")
            entry = {
                **fn.aliases.get(alias, {}),
                "FunctionVersion": version,
                "RevisionId": uuid.uuid4().hex,
            }
            if "Description" in body:
                entry["Description"] = body["Description"]
            fn.aliases[alias] = entry
            return self._alias(name, alias, fn)

    def _engine_name(self, name: str, fn: _Function, version: str) -> str:
        """Register the version's configuration with the engine once; its engine name."""
        if version not in fn.registered:
            engine_name = name if version == "$LATEST" else f"{name}--v{version}"
            cfg = fn.config if version == "$LATEST" else fn.versions[version]
            code_dir = fn.code_dir if version == "$LATEST" else fn.code_dirs[version]
            config = self._engine_config(engine_name, cfg, code_dir)
            self.engine.register(config)
            fn.registered[version] = engine_name
        return fn.registered[version]

    def invoke(
        self, name: str, qualifier: str | None, payload: bytes, kind: str
    ) -> tuple[str, str, Any]:
        """(engine name, executed version, Invocation or Future) of one invocation."""
        with self.lock:
            fn, version = self._resolve(name, qualifier)
            engine_name = self._engine_name(name, fn, version)
        try:
            event = json.loads(payload) if payload.strip() else None
        except ValueError:
            raise ApiError(
                400, "InvalidRequestContentException", "Could not parse request body into json"
            ) from None
        if kind == "Event":
            return engine_name, version, self.engine.invoke_async(engine_name, event)
        if kind == "RequestResponse":
            return engine_name, version, self.engine.invoke(engine_name, event)
        raise invalid(f"InvocationType must be RequestResponse or Event, got {kind!r}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())


def log_tail(inv: Invocation) -> str:
    """Base64 of the invocation's log ending with its REPORT line (Lambda's last 4 KB)."""
    text = (
        f"START RequestId: {inv.request_id} Version: $LATEST\n{inv.logs}"
        f"{'' if not inv.logs or inv.logs.endswith(chr(10)) else chr(10)}"
        f"END RequestId: {inv.request_id}\n{inv.report_line()}\n"
    )
    return base64.b64encode(text.encode()[-LOG_TAIL_BYTES:]).decode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log on stderr
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        svc = self.server.service
        try:
            if not url.path.startswith(PREFIX):
                raise ApiError(404, "UnrecognizedClientException", f"unknown path {url.path}")
            parts = [p for p in url.path[len(PREFIX) :].split("/") if p]
            method = self.command
            if method == "POST" and parts == []:
                return self._json(201, svc.create_function(_body(raw)))
            if method == "GET" and parts == []:
                return self._json(200, svc.list_functions())
            name, qualifier = _split_name(parts[0], query.get("Qualifier"))
            rest = parts[1:]
            if rest == ["invocations"] and method == "POST":
                return self._invoke(name, qualifier, raw)
            if rest == [] and method == "GET":
                return self._json(200, svc.get_function(name, qualifier))
            if rest == [] and method == "DELETE":
                svc.delete_function(name, qualifier)
                return self._send(204, b"")
            if rest == ["configuration"] and method == "GET":
                return self._json(200, svc.get_function_configuration(name, qualifier))
            if rest == ["configuration"] and method == "PUT":
                return self._json(200, svc.update_function_configuration(name, _body(raw)))
            if rest == ["code"] and method == "PUT":
                return self._json(200, svc.update_function_code(name, _body(raw)))
            if rest == ["versions"] and method == "POST":
                return self._json(201, svc.publish_version(name, _body(raw)))
            if rest == ["aliases"] and method == "POST":
                body = _body(raw)
                return self._json(201, svc.put_alias(name, body.get("Name", ""), body, create=True))
            if len(rest) == 2 and rest[0] == "aliases" and method == "GET":
                return self._json(200, svc.get_alias(name, unquote(rest[1])))
            if len(rest) == 2 and rest[0] == "aliases" and method == "PUT":
                return self._json(
                    200, svc.put_alias(name, unquote(rest[1]), _body(raw), create=False)
                )
            raise ApiError(404, "UnrecognizedClientException", f"unsupported: {method} {url.path}")
        except ApiError as err:
            self._send(
                err.status,
                json.dumps({"Type": "User", "message": err.message}).encode(),
                {"x-amzn-ErrorType": err.code},
            )
        except WiseFuseError as err:  # the engine refused (throttled, too large, closed)
            code = {
                "TooManyRequests": "TooManyRequestsException",
                "RequestTooLarge": "RequestTooLargeException",
            }
            kind = code.get(type(err).__name__, "ServiceException")
            status = {"TooManyRequestsException": 429, "RequestTooLargeException": 413}.get(
                kind, 500
            )
            self._send(
                status, json.dumps({"message": str(err)}).encode(), {"x-amzn-ErrorType": kind}
            )

    def _invoke(self, name: str, qualifier: str | None, raw: bytes) -> None:
        kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        _, version, outcome = self.server.service.invoke(name, qualifier, raw, kind)
        if kind == "Event":
            return self._send(202, b"", {"X-Amz-Executed-Version": version})
        inv: Invocation = outcome
        headers = {"X-Amz-Executed-Version": version}
        if self.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = log_tail(inv)
        if inv.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = {k: inv.error.get(k) for k in ("errorMessage", "errorType", "stackTrace")}
            return self._send(200, json.dumps(body).encode(), headers)
        self._send(200, json.dumps(inv.payload).encode(), headers)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(
            400, "InvalidRequestContentException", "the request body is not JSON"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestContentException", "the request body is not an object")
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: LambdaService


@dataclass
class Handle:
    """A running service: its URL and port; ``stop()`` shuts it down and releases the root."""

    url: str
    port: int
    service: LambdaService
    _server: _Server
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
        server = _Server((host, port), _Handler)
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
    handle = serve(args.host, args.port, args.root, region=args.region)
    print(f"Lambda API at {handle.url} (root {handle.service.root}); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
