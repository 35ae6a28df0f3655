"""Functions as the local Lambda knows them: their configuration, their environment, the
errors of a request (not of the function), as Lambda's API has them."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.plan import limits

#: The only variables a function gets from the caller's environment: what a process
#: needs to run at all on this host (Lambda sets its own PATH, LANG and TZ). Nothing else
#: of the caller's reaches a function: not its credentials, not Airflow's settings (a task
#: process's ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow-db-not-allowed:///`` broke every
#: unit that imported Airflow), not ``PYTHONPATH``. Give a function what it needs in its
#: configuration: ``FunctionConfig.env``, or ``LocalLambda(environment=...)`` for all.
HOST_VARS = ("PATH", "LANG", "LC_ALL", "TZ")
#: Set by the backend for every function, as Lambda sets them: a configuration may not.
RESERVED_VARS = frozenset(
    {
        "_HANDLER",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "HOME",
        "TMPDIR",
        "WISEFUSE_LOCAL_LAMBDA",
    }
)
#: The folder holding our package: the local runtime's /var/runtime, on every function's
#: PYTHONPATH so the handler imports however the caller found it.
RUNTIME_DIR = str(Path(__file__).resolve().parents[3])


class LocalLambdaError(WiseFuseError):
    """The backend could not run an invocation (not an error of the function itself)."""


class FunctionNotFound(LocalLambdaError):
    """Like Lambda's ResourceNotFoundException."""


class RequestTooLarge(LocalLambdaError):
    """Like Lambda's RequestEntityTooLargeException: the event is over the payload limit."""


class TooManyRequests(LocalLambdaError):
    """Like Lambda's TooManyRequestsException: the concurrency limit is reached."""


@dataclass(frozen=True)
class FunctionConfig:
    """A function as Lambda knows it. ``code_dir`` is prepended to sys.path (Lambda's /var/task).

    ``layer_dirs`` follow it on sys.path (a layer's ``python/`` folders, as Lambda's
    /opt/python, then the runtime's own packages, as /var/runtime). ``isolated``: the
    worker runs as ``python -I -S``, its sys.path exactly ``code_dir``, ``layer_dirs`` and
    the standard library: nothing of the host's site-packages, as on Lambda, where only
    the zip and its layers are there. ``timeout_s`` may be fractional here (Lambda takes
    whole seconds), which keeps tests fast.
    """

    name: str
    handler: str
    memory_mb: int = 128
    arch: str = "x86_64"
    timeout_s: float = 3.0
    env: Mapping[str, str] = field(default_factory=dict)
    code_dir: str | None = None
    layer_dirs: tuple[str, ...] = ()
    isolated: bool = False

    def __post_init__(self) -> None:
        if self.code_dir is not None:
            object.__setattr__(self, "code_dir", os.fspath(self.code_dir))
        object.__setattr__(self, "layer_dirs", tuple(os.fspath(d) for d in self.layer_dirs))
        if self.isolated and self.code_dir is None:
            raise ValueError(f"function {self.name!r}: an isolated function needs a code_dir")
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"function name must be letters, digits, '-' or '_': {self.name!r}")
        if "." not in self.handler and ":" not in self.handler:
            raise ValueError(
                f"handler must be 'module.function' or 'module:function': {self.handler!r}"
            )
        limits.check_memory(self.memory_mb)
        limits.check_arch(self.arch)
        limits.check_timeout(self.timeout_s)
        object.__setattr__(self, "env", check_environment(self.env, f"function {self.name!r}"))

    @property
    def vcpus(self) -> float:
        return limits.vcpus(self.memory_mb)


def check_environment(env: Mapping[str, str] | None, owner: str) -> dict[str, str]:
    """``env`` as a plain dict of strings, or a ValueError naming the bad variable."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise ValueError(f"{owner}: environment must be a mapping of names to strings, got {env!r}")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"{owner}: not an environment variable name: {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"{owner}: environment variable {key} must be a string, got {value!r}")
        if key in RESERVED_VARS:
            raise ValueError(
                f"{owner}: environment variable {key} is reserved: the backend sets it, as "
                "Lambda does (see docs/local-backend.md)"
            )
        out[key] = value
    return out


def base_env(
    home: Path, region: str, environment: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What every function's environment starts from (and the fork server's, whole).

    The host's :data:`HOST_VARS` when set, ``HOME`` and ``TMPDIR`` at ``home`` (a private
    writable folder, as Lambda's only writable place is /tmp: a library writing under ``~``
    does not touch the host's home), the region, the runtime on ``PYTHONPATH``
    (``environment``'s own ``PYTHONPATH`` comes first), unbuffered output, then
    ``environment`` (the variables common to every function).
    """
    env = {k: os.environ[k] for k in HOST_VARS if k in os.environ}
    env.setdefault("PATH", os.defpath)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(home),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{py}",
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            "PYTHONUNBUFFERED": "1",
            "WISEFUSE_LOCAL_LAMBDA": "1",
        }
    )
    return with_config(env, environment or {})


def with_config(env: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """``env`` updated with configured variables; a configured ``PYTHONPATH`` goes before the
    runtime's folder instead of replacing it (the handler must stay importable)."""
    out = {**env, **config}
    out["PYTHONPATH"] = os.pathsep.join(
        p for p in (config.get("PYTHONPATH"), env.get("PYTHONPATH") or RUNTIME_DIR) if p
    )
    return out
