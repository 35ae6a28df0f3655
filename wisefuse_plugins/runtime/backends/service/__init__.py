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

from wisefuse_plugins.runtime.backends.service.functions import ApiError, LambdaService
from wisefuse_plugins.runtime.backends.service.server import Handle, main, running, serve

__all__ = ["ApiError", "Handle", "LambdaService", "main", "running", "serve"]
