"""Lambda's functions, versions and aliases over a LocalLambda: one method per API operation."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import io
import json
import logging
import re
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from wisefuse_plugins.runtime.backends.local import FunctionConfig, LocalLambda

PREFIX = "/2015-03-31/functions"
LAYERS_PREFIX = "/2018-10-31/layers"
ACCOUNT = "000000000000"
MAX_LAYERS = 5  # per function, as on Lambda
log = logging.getLogger(__name__)
TASK_ROOT = "/var/task"  # where Lambda unpacks a function's zip


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


@dataclass
class _LayerVersion:
    """One published layer version: its answer (Lambda's field names) and unpacked folder."""

    info: dict[str, Any]
    folder: Path
    deleted: bool = False  # Lambda keeps a deleted version for the functions that use it


def layer_arn(region: str, name: str, version: int | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:layer:{name}"
    return f"{arn}:{version}" if version is not None else arn


def _arn(region: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def split_name(raw: str, qualifier: str | None) -> tuple[str, str | None]:
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

    def __init__(
        self,
        root: Path,
        region: str = "us-east-1",
        engine: LocalLambda | None = None,
        *,
        isolated: bool = False,
    ):
        """``isolated``: functions run from their zip and layers only (``python -I -S``, no
        host site-packages; the Lambda runtime's SDK, boto3 and its dependencies, from this
        host as /var/runtime has it), as on Lambda; off, they also see the host's packages."""
        self.root = root
        self.region = region
        self.engine = engine or LocalLambda()
        self.isolated = isolated
        self.functions: dict[str, _Function] = {}
        self.layers: dict[str, list[_LayerVersion]] = {}
        self.lock = threading.RLock()
        self._sdk_dir: str | None = None

    # --- code and configuration ---------------------------------------------------------

    def _unpack(self, name: str, zip_b64: str, kind: str = "functions") -> tuple[str, str, int]:
        try:
            data = base64.b64decode(zip_b64, validate=True)
        except ValueError:
            raise invalid("ZipFile is not base64") from None
        sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
        folder = self.root / kind / name / hashlib.sha256(data).hexdigest()
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
                env=task_paths((cfg.get("Environment") or {}).get("Variables") or {}, code_dir),
                code_dir=code_dir,
                layer_dirs=self._layer_dirs(cfg),
                isolated=self.isolated,
            )
        except (ValueError, KeyError, TypeError) as err:
            raise invalid(str(err)) from None

    def _layer_dirs(self, cfg: dict[str, Any]) -> tuple[str, ...]:
        """sys.path after the code: the layers' folders as Lambda's /opt has them (a later
        layer's files win), then, isolated, the runtime's SDK (Lambda's /var/runtime)."""
        dirs: list[str] = []
        for entry in reversed(cfg.get("Layers") or []):
            folder = self._layer_version(entry["Arn"], deleted_ok=True).folder
            py = f"python{sys.version_info.major}.{sys.version_info.minor}"
            for sub in (folder / "python" / "lib" / py / "site-packages", folder / "python"):
                if sub.is_dir():
                    dirs.append(str(sub))
        if self.isolated:
            dirs.append(self._runtime_sdk())
        return tuple(dirs)

    def _runtime_sdk(self) -> str:
        """A folder with the host's copy of what the Lambda runtime ships (boto3 and its
        dependencies), linked, not copied; made once per service."""
        if self._sdk_dir is None:
            from wisefuse_plugins.runtime.layers import runtime_sdk_links

            self._sdk_dir = str(runtime_sdk_links(self.root / "runtime"))
        return self._sdk_dir

    def _layers_of(self, arns: list[str]) -> list[dict[str, Any]]:
        if len(arns) > MAX_LAYERS:
            raise invalid(f"a function can use at most {MAX_LAYERS} layers, got {len(arns)}")
        out = []
        for arn in arns:
            layer = self._layer_version(arn)
            out.append({"Arn": arn, "CodeSize": layer.info["Content"]["CodeSize"]})
        return out

    def _layer_version(self, arn: str, *, deleted_ok: bool = False) -> _LayerVersion:
        parts = str(arn).split(":")
        if len(parts) != 8 or parts[5] != "layer" or not parts[7].isdigit():
            raise invalid(f"Layers: not a layer version ARN: {arn!r}")
        versions = self.layers.get(parts[6], [])
        number = int(parts[7])
        if not 1 <= number <= len(versions) or (versions[number - 1].deleted and not deleted_ok):
            raise invalid(f"Layer version {arn} does not exist.")
        return versions[number - 1]

    # --- layers -------------------------------------------------------------------------

    def publish_layer_version(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise invalid(f"LayerName must be 1-64 letters, digits, '-' or '_': {name!r}")
        zip_b64 = (body.get("Content") or {}).get("ZipFile")
        if not zip_b64:
            raise invalid("Content.ZipFile is required (layers from S3 are not supported)")
        with self.lock:
            folder, sha, size = self._unpack(name, zip_b64, kind="layers")
            versions = self.layers.setdefault(name, [])
            number = len(versions) + 1
            info = {
                "Content": {"Location": folder, "CodeSha256": sha, "CodeSize": size},
                "LayerArn": layer_arn(self.region, name),
                "LayerVersionArn": layer_arn(self.region, name, number),
                "Description": body.get("Description", ""),
                "CreatedDate": _now(),
                "Version": number,
                "CompatibleRuntimes": list(body.get("CompatibleRuntimes") or []),
                "CompatibleArchitectures": list(body.get("CompatibleArchitectures") or []),
            }
            if body.get("LicenseInfo"):
                info["LicenseInfo"] = body["LicenseInfo"]
            versions.append(_LayerVersion(info, Path(folder)))
            return copy.deepcopy(info)

    def get_layer_version(self, name: str, version: int) -> dict[str, Any]:
        with self.lock:
            versions = self.layers.get(name, [])
            if not 1 <= version <= len(versions) or versions[version - 1].deleted:
                raise ApiError(
                    404,
                    "ResourceNotFoundException",
                    f"Layer version {layer_arn(self.region, name, version)} does not exist.",
                )
            return copy.deepcopy(versions[version - 1].info)

    def list_layer_versions(self, name: str) -> dict[str, Any]:
        with self.lock:
            found = [v.info for v in reversed(self.layers.get(name, [])) if not v.deleted]
            listed = [{k: v for k, v in info.items() if k != "Content"} for info in found]
            return {"LayerVersions": copy.deepcopy(listed)}

    def delete_layer_version(self, name: str, version: int) -> None:
        """Lambda keeps a deleted version's content for the functions that use it: so here."""
        with self.lock:
            versions = self.layers.get(name, [])
            if 1 <= version <= len(versions):
                versions[version - 1].deleted = True

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
                "Layers": self._layers_of(list(body.get("Layers") or [])),
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
                cfg["Layers"] = self._layers_of(list(body["Layers"] or []))
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
            future = self.engine.invoke_async(engine_name, event)
            future.add_done_callback(lambda f: _log_async(f"{name}:{version}", f))
            return engine_name, version, future
        if kind == "RequestResponse":
            return engine_name, version, self.engine.invoke(engine_name, event)
        raise invalid(f"InvocationType must be RequestResponse or Event, got {kind!r}")


def _log_async(function: str, future: Any) -> None:
    """An Event invocation has no caller to answer: its failure goes to the service's log."""
    if future.cancelled():
        return
    err = future.exception()
    if err is not None:
        log.error("async invocation of %s failed: %s", function, err)
    elif future.result().error is not None:
        error = future.result().error
        log.warning(
            "async invocation of %s raised %s: %s",
            function,
            error.get("errorType"),
            error.get("errorMessage"),
        )


def task_paths(env: dict[str, str], code_dir: str) -> dict[str, str]:
    """``env`` with paths under Lambda's task root (``/var/task``) moved to the unpacked zip.

    The function's code is at ``code_dir`` here, not at ``/var/task`` (which the service
    cannot create), so a configured ``/var/task/x`` (the AWS backend's unit spec and code
    root) is given as ``<code_dir>/x``; GetFunctionConfiguration still shows what was set.
    """
    out = {}
    for key, value in env.items():
        if value == TASK_ROOT or value.startswith(TASK_ROOT + "/"):
            value = code_dir + value[len(TASK_ROOT) :]
        out[key] = value
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())
