"""The local Lambda as a service: the Lambda REST API (the subset our AWS backend uses) on 127.0.0.1.

boto3's own Lambda client with ``endpoint_url=`` drives it, so the AWS backend is the one
code path for AWS and for this machine: the Airflow hook and the Prefect block use it
through :class:`~.client.ServiceUnits`, started on demand (:mod:`.ondemand`) or by hand
(``wisefuse lambda serve``). Behind the API runs
:class:`~wisefuse_plugins.runtime.backends.local.LocalLambda`: each function's zip is
unpacked under ``<root>/functions/<name>/<code sha256>/`` and registered with that folder
as its code and only its configured environment. A published version keeps a snapshot
of the configuration; ``name:3`` and ``name:alias`` invoke that snapshot.

State is in memory (a restart forgets the functions; callers deploy them again).
``python -m wisefuse_plugins.runtime.backends.service --port 9001`` runs one.

The names below are imported on first use: a task process that only calls the service
(:mod:`.client`, :mod:`.ondemand`) never imports the engine.
"""

from __future__ import annotations

from wisefuse_plugins.lazy import lazy_exports

_NAMES = {
    "ApiError": "functions",
    "LambdaService": "functions",
    "Handle": "server",
    "main": "server",
    "running": "server",
    "serve": "server",
}
__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_exports(__name__, {n: f".{m}" for n, m in _NAMES.items()})
