"""A Lambda-like interpreter for tests/runtime/test_shim.py: JSON requests in, JSON out.

``python -I -S shim_worker.py LAYER REPO`` is a unit's environment on AWS: no
site-packages (so no Airflow, no Prefect), only ``LAYER`` (the packages the handler and the
user's code import) and the code. ``python shim_worker.py "" ""`` runs in this venv.
One request per stdin line, one response per line on the original stdout; what the user's
code prints goes to stderr.

Requests: ``{"op": "probe"}`` (can Airflow / Prefect be imported?), ``{"op": "functions",
"files": [[root, rel], ...]}`` (what the loader can unwrap in each file: name ->
[qualname, code hash], or the import error), ``{"op": "invoke", "env": {...}, "event":
{...}}`` (the unit handler, as Lambda calls it), ``{"op": "status"}`` (the shim and the
framework modules loaded).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def probe(req: dict[str, Any]) -> dict[str, Any]:
    import importlib
    import importlib.util

    out: dict[str, Any] = {}
    for name in ("airflow.sdk", "prefect.flows"):
        try:
            importlib.import_module(name)
            out[name] = "imported"
        except ImportError as err:
            out[name] = f"{type(err).__name__}: {err}"
    for top in ("airflow", "prefect"):
        spec = importlib.util.find_spec(top)
        out[top] = None if spec is None else spec.origin
        sys.modules.pop(top, None)  # a namespace package found here must not stay imported
    return out


def functions(req: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from wisefuse_plugins.ir import code_hash
    from wisefuse_plugins.runtime import loader

    loader.use_framework_shim()
    out: dict[str, Any] = {}
    for root, rel in req["files"]:
        try:
            module = loader.load_module(rel, root)
        except Exception as err:
            out[rel] = {"error": type(err).__name__, "message": str(err)}
            continue
        found = {}
        path = (Path(root) / rel).resolve()
        for name, obj in vars(module).items():
            try:
                fn = loader.unwrap(obj)
                if loader._defined_in(fn, path):
                    found[name] = [fn.__qualname__, code_hash(fn)]
            except Exception:  # a stand-in, a class, a constant
                continue
        out[rel] = {"functions": found}
    return out


def invoke(req: dict[str, Any]) -> Any:
    os.environ.update(req["env"])
    from wisefuse_plugins.runtime.handler import handler

    return handler(req["event"], None)


def status(req: dict[str, Any]) -> dict[str, Any]:
    from wisefuse_plugins.runtime import shim

    framework = {
        name: repr(mod)
        for name, mod in sys.modules.items()
        if name.split(".")[0] in ("airflow", "prefect") and mod is not None
    }
    return {
        "finder": repr(shim.active()),
        "real": sorted(n for n, m in framework.items() if not m.startswith("<stand-in")),
        "stand_ins": sorted(n for n, m in framework.items() if m.startswith("<stand-in")),
    }


OPS = {"probe": probe, "functions": functions, "invoke": invoke, "status": status}


def main() -> None:
    layer, repo = sys.argv[1], sys.argv[2]
    sys.path[:0] = [p for p in (layer, repo) if p]
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        req = json.loads(line)
        try:
            resp = {"ok": True, "result": OPS[req["op"]](req)}
        except BaseException as err:  # reported to the test, which fails with it
            resp = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        proto.write(json.dumps(resp, default=repr) + "\n")


if __name__ == "__main__":
    main()
