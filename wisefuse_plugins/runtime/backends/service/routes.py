"""The HTTP side: Lambda's REST paths, headers and error shapes mapped onto :class:`LambdaService`."""

from __future__ import annotations

import base64
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.backends.local import Invocation
from wisefuse_plugins.runtime.backends.service.functions import (
    LAYERS_PREFIX,
    PREFIX,
    ApiError,
    LambdaService,
    split_name,
)

LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of the log with LogType Tail


def log_tail(inv: Invocation, version: str = "$LATEST") -> str:
    """Base64 of the invocation's log ending with its REPORT line (Lambda's last 4 KB)."""
    text = (
        f"START RequestId: {inv.request_id} Version: {version}\n{inv.logs}"
        f"{'' if not inv.logs or inv.logs.endswith(chr(10)) else chr(10)}"
        f"END RequestId: {inv.request_id}\n{inv.report_line()}\n"
    )
    return base64.b64encode(text.encode()[-LOG_TAIL_BYTES:]).decode()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: a response is two writes (headers, body); with Nagle's algorithm the body
    # waited for the client's delayed ACK of the headers, 40 ms per call on a kept-alive
    # connection (benchmarks/local_backend.py: a warm no-op Invoke took 44 ms, 2.3 ms without)
    disable_nagle_algorithm = True

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
            if url.path.startswith(LAYERS_PREFIX + "/"):
                return self._layers(url.path, raw)
            if not url.path.startswith(PREFIX):
                raise ApiError(404, "UnrecognizedClientException", f"unknown path {url.path}")
            parts = [p for p in url.path[len(PREFIX) :].split("/") if p]
            method = self.command
            if method == "POST" and parts == []:
                return self._json(201, svc.create_function(_body(raw)))
            if method == "GET" and parts == []:
                return self._json(200, svc.list_functions())
            name, qualifier = split_name(parts[0], query.get("Qualifier"))
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

    def _layers(self, path: str, raw: bytes) -> None:
        """``/2018-10-31/layers/{name}/versions[/{number}]``: publish, list, get, delete."""
        svc = self.server.service
        parts = [unquote(p) for p in path[len(LAYERS_PREFIX) :].split("/") if p]
        method = self.command
        if len(parts) == 2 and parts[1] == "versions":
            if method == "POST":
                return self._json(201, svc.publish_layer_version(parts[0], _body(raw)))
            if method == "GET":
                return self._json(200, svc.list_layer_versions(parts[0]))
        if len(parts) == 3 and parts[1] == "versions" and parts[2].isdigit():
            if method == "GET":
                return self._json(200, svc.get_layer_version(parts[0], int(parts[2])))
            if method == "DELETE":
                svc.delete_layer_version(parts[0], int(parts[2]))
                return self._send(204, b"")
        raise ApiError(404, "UnrecognizedClientException", f"unsupported: {method} {path}")

    def _invoke(self, name: str, qualifier: str | None, raw: bytes) -> None:
        kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        _, version, outcome = self.server.service.invoke(name, qualifier, raw, kind)
        if kind == "Event":
            return self._send(202, b"", {"X-Amz-Executed-Version": version})
        inv: Invocation = outcome
        headers = {"X-Amz-Executed-Version": version}
        if self.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = log_tail(inv, version)
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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    service: LambdaService
