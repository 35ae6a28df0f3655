"""WiseFuse for Prefect users: ``from wisefuse_plugins.prefect import wisefuse, WiseFuseLambda``.

``@wisefuse(slo=..., plan=..., block=...)`` above ``@flow`` runs the flow's tasks as the
units of its WiseFuse plan on AWS Lambda (or the embedded local Lambda) when a plan fits,
and otherwise runs the flow as it is and records its trace for ``wisefuse optimize``.
``WiseFuseLambda`` is the Block that says where units run. See ``docs/prefect.md``.

Imported lazily (PEP 562), so ``import wisefuse_plugins.prefect`` stays light until a
name is used; the names need the ``prefect`` extra.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from wisefuse_plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from wisefuse_plugins.emitters.prefect import emit_flow
    from wisefuse_plugins.providers.prefect import PlanCheck, WiseFuseFlow, WiseFuseLambda, wisefuse

__all__ = ["PlanCheck", "WiseFuseFlow", "WiseFuseLambda", "emit_flow", "wisefuse"]

_WHERE = {
    "wisefuse": "wisefuse_plugins.providers.prefect",
    "WiseFuseLambda": "wisefuse_plugins.providers.prefect",
    "WiseFuseFlow": "wisefuse_plugins.providers.prefect",
    "PlanCheck": "wisefuse_plugins.providers.prefect",
    "emit_flow": "wisefuse_plugins.emitters.prefect",
}


def _require_prefect(name: str) -> None:
    if importlib.util.find_spec("prefect") is None:
        from wisefuse_plugins.errors import MissingExtraError

        raise MissingExtraError("prefect", "prefect", f"wisefuse_plugins.prefect.{name}")


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, before=_require_prefect)
